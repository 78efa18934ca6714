"""Graph nodes <-> points in the 2D sections (Schiffer, PhD thesis, Sect. 7.1.1 and
Fig. 7.4; Schiffer et al. 2021, MICCAI).

For every available section, the section's plane (``y = (s - s_base) * thickness_mm`` in world mm) cuts the
midsurface mesh ("virtual cutting"); each intersection point belongs to the nearer vertex of the cut
edge, i.e. to a graph node. The points are transformed back onto the raw section by inverting the
reconstruction (``SectionStack.world_to_section``), refined towards the cortical midline
(:mod:`cortexgraph.mapping.midline`), and dropped (``valid = False``) when the patch around them holds
less than 50% tissue. A node cut by several sections keeps the point of the section plane closest to it.

Output table (TSV, one row per mapped node): ``node section x_mm y_mm valid moved_mm``.

:func:`ground_truth_graphs` maps a phantom's **true** midsurfaces the same way and writes them as
graph files with the true class of every vertex as ``y`` (projecting those labels measures the
projection step alone, ``benchmarks/bench_project_upper_bound.py``); :func:`graph_file_arrays`
reads such a file back as the node arrays :func:`cortexgraph.mapping.project.project_graphs` takes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import Brain, format_tsv
from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.mapping.midline import midline_field, refine_points, tissue_share
from cortexgraph.meshes.cut import cut_mesh_with_plane
from cortexgraph.outputs import write_text_atomic

NODE_TABLE_COLUMNS = ("node", "section", "x_mm", "y_mm", "valid", "moved_mm")


@dataclass
class NodeSectionTable:
    """Node -> section point mapping; arrays of equal length, one entry per mapped node."""

    node: np.ndarray
    section: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    valid: np.ndarray
    moved_mm: np.ndarray

    def __len__(self) -> int:
        return len(self.node)

    def write(self, path) -> None:
        rows = zip(
            self.node.tolist(),
            self.section.tolist(),
            np.round(self.x_mm, 5).tolist(),
            np.round(self.y_mm, 5).tolist(),
            self.valid.astype(int).tolist(),
            np.round(self.moved_mm, 5).tolist(),
            strict=True,
        )
        write_text_atomic(path, format_tsv(NODE_TABLE_COLUMNS, rows))

    @classmethod
    def read(cls, path) -> NodeSectionTable:
        data = np.loadtxt(path, delimiter="\t", skiprows=1, ndmin=2)
        if data.size == 0:
            data = np.zeros((0, 6))
        return cls(
            node=data[:, 0].astype(np.int64),
            section=data[:, 1].astype(np.int64),
            x_mm=data[:, 2],
            y_mm=data[:, 3],
            valid=data[:, 4].astype(bool),
            moved_mm=data[:, 5],
        )


def mapped_mask(
    section: np.ndarray, point_mm: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """bool (N,): nodes mapped to a section (``section >= 0``) at a finite point, and ``valid``
    when given (node arrays as in the graph file)."""
    section = np.asarray(section).reshape(-1)
    point_mm = np.asarray(point_mm, dtype=np.float64).reshape(len(section), -1)
    mask = (section >= 0) & np.isfinite(point_mm).all(axis=1)
    return mask if valid is None else mask & np.asarray(valid, dtype=bool)


def nodes_by_section(section: np.ndarray, mask: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Node indices grouped by section: ``{section: indices}`` (each ascending), over the nodes
    where ``mask`` is True (default: every node with ``section >= 0``); sections ascending."""
    section = np.asarray(section, dtype=np.int64).reshape(-1)
    mask = section >= 0 if mask is None else np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(mask)
    order = idx[np.argsort(section[idx], kind="stable")]
    numbers, starts = np.unique(section[order], return_index=True)
    ends = np.append(starts[1:], len(order)).astype(np.int64)
    return {int(s): order[a:e] for s, a, e in zip(numbers, starts, ends, strict=True)}


def node_arrays_from_table(table, num_nodes: int) -> dict[str, np.ndarray]:
    """``section``, ``point_mm``, ``valid`` node arrays from a node -> section point table.

    Parameters
    ----------
    table : a :class:`cortexgraph.mapping.nodes.NodeSectionTable` (or anything with arrays ``node``,
        ``section``, ``x_mm``, ``y_mm``, ``valid``), one row per mapped node.
    num_nodes : N, the number of graph nodes.

    Returns
    -------
    ``{"section": int64 (N,) (-1 = no point), "point_mm": float32 (N, 2) (NaN = none),
    "valid": bool (N,)}`` as in docs/derivatives.md.
    """
    node = np.asarray(table.node, dtype=np.int64)
    if node.size and (node.min() < 0 or node.max() >= num_nodes):
        raise DataFormatError(f"node table refers to nodes outside 0..{num_nodes - 1}")
    section = np.full(num_nodes, -1, dtype=np.int64)
    point = np.full((num_nodes, 2), np.nan, dtype=np.float32)
    valid = np.zeros(num_nodes, dtype=bool)
    section[node] = np.asarray(table.section, dtype=np.int64)
    point[node, 0] = np.asarray(table.x_mm, dtype=np.float32)
    point[node, 1] = np.asarray(table.y_mm, dtype=np.float32)
    valid[node] = np.asarray(table.valid, dtype=bool)
    return {"section": section, "point_mm": point, "valid": valid}


def map_nodes_to_sections(
    vertices_mm: np.ndarray,
    faces: np.ndarray,
    stack: SectionStack,
    *,
    sections: list[int] | None = None,
    refine: bool = True,
    max_move_mm: float = 2.0,
    min_tissue_share: float = 0.5,
    patch_mm: float = 4.0,
    progress=None,
    workers: int = 1,
) -> tuple[NodeSectionTable, dict]:
    """Map the nodes of a midsurface mesh (world mm) to points of the brain's sections.

    Parameters
    ----------
    vertices_mm, faces : the mesh (one hemisphere), world mm.
    stack : the brain's sections (geometry and tissue masks).
    sections : sections to cut (default: all available, not excluded).
    refine : move points to the cortical midline (at most ``max_move_mm``).
    min_tissue_share : points whose ``patch_mm`` square holds less tissue are marked invalid.
    progress : optional callable ``(done, total)``.
    workers : sections mapped at once (threads; the result does not depend on it).

    Returns
    -------
    table : one row per node that some section cuts.
    info : points cut, dropped for low tissue share, mean/max movement, SOR iterations, seconds.
    """
    start = time.perf_counter()
    sections = list(stack.sections if sections is None else sections)
    rows: list[tuple[np.ndarray, ...]] = []
    sor_iterations = []

    def one(s: int) -> tuple[tuple[np.ndarray, ...] | None, int | None]:
        plane_y = stack.plane_y_mm(s)
        points, node = cut_mesh_with_plane(vertices_mm, faces, axis=1, offset_mm=plane_y)
        if not len(points):
            return None, None
        xy = stack.world_to_section(s, points)
        raster = stack.raster(s, "mask")
        tissue = raster.read_level(0)
        spacing_um = raster.spacing_um
        moved = np.zeros(len(xy))
        iterations = None
        if refine:
            field, _, info = midline_field(tissue == 2, spacing_um)
            iterations = info["iterations"]
            xy, moved = refine_points(xy, field, spacing_um, max_move_mm=max_move_mm)
        share = tissue_share(tissue, xy, spacing_um, patch_mm)
        distance = np.abs(vertices_mm[node, 1] - plane_y)
        row = (node, np.full(len(node), s), xy[:, 0], xy[:, 1], share >= min_tissue_share, moved)
        return (*row, distance), iterations

    if sections:  # the stack's cached geometry, computed once before any thread reads it
        stack.plane_y_mm(sections[0])
        stack.world_to_section(sections[0], np.zeros((1, 3)))
    # sections are independent and the midline kernel releases the GIL: ``workers`` threads cut
    # and refine sections at once; results are taken in section order, so they do not depend on it
    pool = ThreadPoolExecutor(workers) if workers > 1 and len(sections) > 1 else None
    try:
        results = pool.map(one, sections) if pool is not None else map(one, sections)
        for k, (row, iterations) in enumerate(results):
            if row is not None:
                rows.append(row)
            if iterations is not None:
                sor_iterations.append(iterations)
            if progress is not None:
                progress(k + 1, len(sections))
    except BaseException:
        if pool is not None:  # Ctrl-C, SIGTERM, an error: do not wait for the sections in work
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    if pool is not None:
        pool.shutdown()
    if rows:
        node, section, x, y, valid, moved, distance = (
            np.concatenate(c) for c in zip(*rows, strict=True)
        )
    else:
        node = section = np.zeros(0, np.int64)
        x = y = moved = distance = np.zeros(0)
        valid = np.zeros(0, bool)
    # one point per node: the one on the plane closest to the node (ties: valid first, then section)
    order = np.lexsort((section, ~valid, distance, node))
    first = np.ones(len(order), dtype=bool)
    first[1:] = node[order][1:] != node[order][:-1]
    keep = order[first]
    table = NodeSectionTable(
        node=node[keep].astype(np.int64),
        section=section[keep].astype(np.int64),
        x_mm=x[keep],
        y_mm=y[keep],
        valid=valid[keep],
        moved_mm=moved[keep],
    )
    info = {
        "sections_cut": len(sections),
        "points_cut": int(len(node)),
        "nodes_mapped": int(len(table)),
        "nodes_valid": int(table.valid.sum()),
        "nodes_dropped_low_tissue": int((~table.valid).sum()),
        "nodes_total": int(len(vertices_mm)),
        "moved_mm_mean": float(table.moved_mm.mean()) if len(table) else 0.0,
        "moved_mm_max": float(table.moved_mm.max()) if len(table) else 0.0,
        "sor_iterations_mean": float(np.mean(sor_iterations)) if sor_iterations else 0.0,
        "seconds": time.perf_counter() - start,
    }
    return table, info


# -- the phantom's true midsurfaces as graphs -------------------------------------------------------
def graph_file_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The node arrays :func:`cortexgraph.mapping.project.project_graphs` takes, from a graph file
    with labels ``y`` (as :func:`ground_truth_graphs` writes): ``section``, ``point_mm``, ``valid``,
    ``labels`` (``y``, int64 class indices) and ``edge_index``."""
    from cortexgraph.meshes.graph import load_graph

    data = load_graph(path)
    return {
        "section": data["section"].numpy(),
        "point_mm": data["point_mm"].numpy(),
        "valid": data["valid"].numpy(),
        "labels": data["y"].numpy().astype(np.int64),
        "edge_index": data.edge_index.numpy(),
    }


def ground_truth_graphs(
    brain: Brain,
    out_dir: str | os.PathLike,
    *,
    hemis: Sequence[str] = ("lh", "rh"),
    refine: bool = True,
) -> list[Path]:
    """Graph files of a phantom brain's **true** midsurfaces, with the true class of every vertex as
    ``y``.

    The true midsurface (``ground_truth/<brain>/midsurface_<hemi>.gii``, world mm, with an area id
    per vertex) is mapped to the brain's sections exactly as build-graph maps its own midsurface
    (:func:`cortexgraph.mapping.nodes.map_nodes_to_sections`); node arrays ``section``,
    ``point_mm``, ``valid`` and ``y`` (class index) are written to ``out_dir/<hemi>.h5``. Projecting
    ``y`` of these graphs measures the projection step alone (its upper bound on the phantom).
    """
    from cortexgraph.meshes.graph import save_graph_h5
    from cortexgraph.meshes.io import read_gifti_surface, read_gifti_vertex_labels

    if brain.cohort is None:
        raise CortexgraphError("the brain is not inside a cohort", file=brain.root)
    truth = brain.ground_truth
    written = []
    stack = SectionStack(brain)
    for hemi in hemis:
        surface = truth / f"midsurface_{hemi}.gii"
        if not surface.is_file():
            continue
        vertices, faces = read_gifti_surface(surface)
        area_ids = read_gifti_vertex_labels(surface)
        table, _ = map_nodes_to_sections(vertices, faces, stack, refine=refine)
        arrays = node_arrays_from_table(table, len(vertices))
        arrays["y"] = brain.cohort.areas.class_index(area_ids)
        written.append(save_graph_h5(Path(out_dir) / f"{hemi}.h5", vertices, faces, **arrays))
    if not written:
        raise CortexgraphError(
            "no true midsurface found",
            file=truth,
            fix="ground truth exists only for phantom cohorts (cortexgraph synth)",
        )
    return written
