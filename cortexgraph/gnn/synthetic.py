"""Synthetic mesh-like graphs for tests and benchmarks: a triangulated grid on a torus or a plane.

Every interior vertex of the triangulated grid has degree 6, like the vertices of the isotropically
remeshed midsurfaces (Schiffer, PhD thesis, Sect. 7.1.2: mean degree 6, ~760k nodes and ~4.5M directed
edges per hemisphere).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["triangulated_grid_edges", "synthetic_mesh_graph"]


def triangulated_grid_edges(rows: int, cols: int, periodic: bool = True) -> torch.Tensor:
    """Directed edges (both directions) of a ``rows x cols`` grid split into triangles.

    Vertex ``(r, c)`` has id ``r * cols + c`` and is joined to ``(r, c+1)``, ``(r+1, c)`` and
    ``(r+1, c+1)``. With ``periodic=True`` indices wrap around (a torus: every vertex has degree 6,
    ``E = 6 * rows * cols``); otherwise the grid has a boundary.

    Returns
    -------
    LongTensor (2, E)
    """
    if rows < 2 or cols < 2:
        raise ValueError("rows and cols must be >= 2")
    if periodic and (rows < 3 or cols < 3):
        raise ValueError("a periodic grid needs rows, cols >= 3 (no duplicate edges)")
    r_grid, c_grid = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    r, c = r_grid.ravel(), c_grid.ravel()
    src_parts, dst_parts = [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1)):
        r2, c2 = r + dr, c + dc
        if periodic:
            keep = np.ones(r.size, bool)
            r2, c2 = r2 % rows, c2 % cols
        else:
            keep = (r2 < rows) & (c2 < cols)
        src_parts.append(r[keep] * cols + c[keep])
        dst_parts.append(r2[keep] * cols + c2[keep])
    src = np.concatenate(src_parts)
    dst = np.concatenate(dst_parts)
    edges = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])
    return torch.from_numpy(edges.astype(np.int64))


def synthetic_mesh_graph(
    rows: int,
    cols: int,
    feature_dims: dict[str, int] | None = None,
    num_classes: int = 8,
    labelled_fraction: float = 0.1,
    test_fraction: float = 0.2,
    feature_dtype: torch.dtype = torch.float32,
    seed: int = 0,
    periodic: bool = True,
    informative: bool = False,
):
    """A ``torch_geometric.data.Data`` graph on a triangulated torus grid with random features.

    Classes are vertical stripes of the grid (contiguous "areas"). A random ``labelled_fraction`` of
    nodes carries its class in ``y`` (others -1); of those, ``test_fraction`` go to ``test_mask``
    and the rest to ``train_mask``. Features are standard normal noise (CO: grid coordinates scaled
    to [-1, 1]); with ``informative=True`` three times the class id is added to the first CY channel so a model
    can learn it (classes 3 standard deviations apart). ``pos`` is the grid point in mm (0.3 mm spacing).
    """
    from torch_geometric.data import Data

    if feature_dims is None:
        feature_dims = {"cy": 2048, "pm": 152, "co": 3}
    n = rows * cols
    gen = torch.Generator().manual_seed(seed)
    rr = torch.arange(rows).repeat_interleave(cols)
    cc = torch.arange(cols).repeat(rows)
    area = (cc * num_classes) // cols
    data = Data(edge_index=triangulated_grid_edges(rows, cols, periodic), num_nodes=n)
    data.pos = torch.stack([cc * 0.3, rr * 0.3, torch.zeros(n)], 1).float()
    for name, dim in feature_dims.items():
        if name == "co" and dim == 3:
            x = torch.stack(
                [2 * cc / (cols - 1) - 1, 2 * rr / (rows - 1) - 1, torch.zeros(n)], 1
            ).to(feature_dtype)
        else:
            x = torch.empty((n, dim), dtype=feature_dtype)
            chunk = 65536
            for start in range(0, n, chunk):  # chunked so float16 storage never holds float32
                stop = min(start + chunk, n)
                x[start:stop] = torch.randn((stop - start, dim), generator=gen).to(feature_dtype)
            if informative and name == "cy":
                x[:, 0] += 3.0 * area.to(feature_dtype)
        setattr(data, f"x_{name}", x)
    labelled = torch.rand(n, generator=gen) < labelled_fraction
    data.y = torch.where(labelled, area, torch.full_like(area, -1))
    is_test = torch.rand(n, generator=gen) < test_fraction
    data.train_mask = labelled & ~is_test
    data.test_mask = labelled & is_test
    return data


def triangulated_grid_faces(rows: int, cols: int) -> np.ndarray:
    """Triangles of the non-periodic ``rows x cols`` grid of :func:`triangulated_grid_edges`.

    Each cell ``(r, c)`` is split along its ``(r, c) - (r+1, c+1)`` diagonal into
    ``[(r, c), (r, c+1), (r+1, c+1)]`` and ``[(r, c), (r+1, c+1), (r+1, c)]`` (counter-clockwise in
    the x = column, y = row plane). The edges of these faces are exactly the non-periodic grid edges.

    Returns
    -------
    numpy.ndarray, int64, shape (2 (rows-1) (cols-1), 3)
    """
    if rows < 2 or cols < 2:
        raise ValueError("rows and cols must be >= 2")
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    v00 = (r * cols + c).ravel()
    v01, v10, v11 = v00 + 1, v00 + cols, v00 + cols + 1
    upper = np.stack([v00, v01, v11], 1)
    lower = np.stack([v00, v11, v10], 1)
    return np.concatenate([upper, lower]).astype(np.int64)


def _smooth_field(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, terms: int = 4):
    """A smooth random function on the unit square: a few low-frequency sinusoids, r.m.s. ~1."""
    out = np.zeros_like(u)
    for _ in range(terms):
        fu, fv = rng.uniform(0.5, 2.0, 2)
        phase = rng.uniform(0, 2 * np.pi)
        out += np.sin(2 * np.pi * (fu * u + fv * v) + phase)
    return out * np.sqrt(2.0 / terms)


def synthetic_brain_graph_arrays(
    brain_index: int,
    hemi: str,
    *,
    rows: int = 170,
    cols: int = 176,
    num_areas: int = 40,
    cy_dim: int = 256,
    pm_dim: int | None = None,
    edge_mm: float = 0.5,
    section_every: int = 2,
    annotate_every: int = 2,
    annotated_area_fraction: float = 0.6,
    cy_signal: float = 0.12,
    cy_brain_shift: float = 0.3,
    border_shift: float = 0.03,
    pm_blur: float = 0.04,
    digitization_step: int = 30,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One hemisphere graph of a synthetic brain with area-dependent node features.

    The midsurface is a flat sheet: a triangulated ``rows x cols`` grid with ``edge_mm`` spacing
    (x = column, y = row = posterior -> anterior, z = 0). Areas are the Voronoi cells of
    ``num_areas`` template centres in the unit square (shared by all brains); each brain sees them
    through a smooth warp of r.m.s. ``border_shift`` (unit-square units), so borders move between
    brains as in the phantom. Section planes are grid rows: every ``section_every``-th row is a
    digitized section (numbers ``1 + k * digitization_step``), every ``annotate_every``-th digitized
    section is annotated, each for a random ``annotated_area_fraction`` of the areas it cuts, and every
    fifth annotated section (sorted by number) is a test section.

    Node features (node arrays of docs/derivatives.md):

    * ``cy`` = ``cy_signal * prototype[area] + brain_offset + N(0, 1)`` per channel: prototypes are
      standard normal vectors shared by all brains, ``brain_offset`` a brain-specific standard normal
      vector times ``cy_brain_shift`` (a domain shift). One node alone is ambiguous; averaging over
      graph neighbours (what a GNN does) makes it clearer.
    * ``pm`` (``pm_dim`` = ``num_areas`` maps): a soft assignment of the node's *template* position to
      the template areas, ``exp(-(d_k^2 - d_min^2) / pm_blur^2)`` clipped to [0, 1] (not normalised):
      informative but blind to the brain's warp.
    * ``co``: canonical coordinates in [-1, 1]: x = hemisphere side (lh < 0) + template u, y = template
      v, z = 0.2.

    Parameters
    ----------
    brain_index : int
        Index of the brain in the cohort (selects its warp, offset and annotations).
    hemi : {"lh", "rh"}
    seed : int
        Seeds the template (areas, prototypes) and, with ``brain_index`` and ``hemi``, everything
        brain-specific.

    Returns
    -------
    pos_mm : float32 (N, 3)
    faces : int64 (F, 3)
    node_arrays : dict of numpy arrays
        ``section`` int64, ``point_mm`` float32 (N, 2), ``valid`` bool, ``cy`` float32 (N, cy_dim),
        ``cy_measured`` bool, ``co`` float32 (N, 3), ``pm`` float32 (N, pm_dim), ``y`` int64 (class
        index, -1 unknown), ``train_mask`` bool, ``test_mask`` bool.
    """
    if hemi not in ("lh", "rh"):
        raise ValueError(f"hemi must be 'lh' or 'rh', got {hemi!r}")
    pm_dim = num_areas if pm_dim is None else int(pm_dim)
    if pm_dim < num_areas:
        raise ValueError("pm_dim must be >= num_areas")
    template = np.random.default_rng([seed, 0])
    centres = template.uniform(0.0, 1.0, (num_areas, 2))
    prototypes = template.standard_normal((num_areas, cy_dim))
    rng = np.random.default_rng([seed, 1 + brain_index, 0 if hemi == "lh" else 1])

    n = rows * cols
    r = np.repeat(np.arange(rows), cols)
    c = np.tile(np.arange(cols), rows)
    u = c / (cols - 1)
    v = r / (rows - 1)
    pos = np.stack([c * edge_mm, r * edge_mm, np.zeros(n)], 1).astype(np.float32)
    faces = triangulated_grid_faces(rows, cols)

    def nearest(pu, pv):
        d2 = (pu[:, None] - centres[None, :, 0]) ** 2 + (pv[:, None] - centres[None, :, 1]) ** 2
        return d2

    wu = u + border_shift * _smooth_field(rng, u, v)
    wv = v + border_shift * _smooth_field(rng, u, v)
    area = np.argmin(nearest(wu, wv), axis=1)

    d2 = nearest(u, v)
    pm = np.zeros((n, pm_dim), np.float32)
    pm[:, :num_areas] = np.exp(-(d2 - d2.min(1, keepdims=True)) / pm_blur**2)
    side = -1.0 if hemi == "lh" else 1.0
    co = np.stack([side * (0.1 + 0.8 * u), 2 * v - 1, np.full(n, 0.2)], 1).astype(np.float32)

    offset = cy_brain_shift * np.random.default_rng([seed, 1 + brain_index]).standard_normal(cy_dim)
    cy = (cy_signal * prototypes[area] + offset).astype(np.float32)
    cy += rng.standard_normal((n, cy_dim), dtype=np.float32)

    on_section = r % section_every == 0
    digitized = r // section_every  # k-th digitized section for nodes on a plane
    section = np.where(on_section, 1 + digitized * digitization_step, -1).astype(np.int64)
    annotated_rows = [
        row for row in range(0, rows, section_every) if (row // section_every) % annotate_every == 0
    ]
    y = np.full(n, -1, np.int64)
    train = np.zeros(n, bool)
    test = np.zeros(n, bool)
    for k, row in enumerate(annotated_rows):
        nodes = np.arange(row * cols, (row + 1) * cols)
        present = np.unique(area[nodes])
        chosen = present[rng.random(present.size) < annotated_area_fraction]
        keep = nodes[np.isin(area[nodes], chosen)]
        y[keep] = area[keep]
        (test if k % 5 == 4 else train)[keep] = True
    point = np.full((n, 2), np.nan, np.float32)
    point[on_section] = pos[on_section][:, [0, 2]] + np.float32(1.0)
    arrays = {
        "section": section,
        "point_mm": point,
        "valid": on_section.copy(),
        "cy": cy,
        "cy_measured": on_section.copy(),
        "co": co,
        "pm": pm,
        "y": y,
        "train_mask": train,
        "test_mask": test,
    }
    return pos, faces, arrays


SYNTHETIC_ENCODER = "synthetic"


def write_synthetic_cohort(
    root,
    brains: tuple[str, ...] = ("B01", "B03", "B05", "B07"),
    hemis: tuple[str, ...] = ("lh", "rh"),
    *,
    seed: int = 0,
    **kwargs,
):
    """Write synthetic graphs and node features in a cohort layout (tests, benchmarks, timing).

    For every brain and hemisphere (:func:`synthetic_brain_graph_arrays`, keyword arguments passed
    on) it writes the graph file and the node-array files of ``node-priors``, ``node-labels`` and
    ``features@synthetic`` in the layout of :mod:`cortexgraph.derivatives.layout`, each recorded as an
    external stage output (:func:`cortexgraph.derivatives.external.record_external`), plus
    ``<root>/cohort.toml`` and ``<root>/areas.tsv`` (areas ``A01..``, ids 1..K) when they do not
    exist yet. Train with ``encoder="synthetic"``.

    Returns
    -------
    pathlib.Path
        ``root``.
    """
    from pathlib import Path

    from cortexgraph.data.manifest import Area, AreaTable, Cohort
    from cortexgraph.derivatives import Derivatives, StageId
    from cortexgraph.derivatives.external import record_external
    from cortexgraph.derivatives.layout import (
        cy_path,
        graph_path,
        node_labels_path,
        priors_path,
        write_node_arrays,
    )
    from cortexgraph.meshes.graph import save_graph_h5

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    num_areas = int(kwargs.get("num_areas", 40))
    if not (root / "areas.tsv").is_file():
        colours = np.random.default_rng([seed, 99]).integers(0, 256, (num_areas, 3))
        AreaTable(
            [
                Area(k + 1, f"A{k + 1:02d}", "#{:02x}{:02x}{:02x}".format(*colours[k]))
                for k in range(num_areas)
            ]
        ).write(root / "areas.tsv")
    if not (root / "cohort.toml").is_file():
        Cohort(root, "synthetic-graphs", 20.0, list(brains)).write_manifest()
    store = Derivatives(root)
    source = {"source": "cortexgraph.gnn.synthetic", "seed": seed, **kwargs}
    for b, brain in enumerate(brains):
        arrays = {
            hemi: synthetic_brain_graph_arrays(b, hemi, seed=seed, **kwargs) for hemi in hemis
        }
        graphs = []
        for hemi, (pos, faces, nodes) in arrays.items():
            geometry = {k: nodes[k] for k in ("section", "point_mm", "valid") if k in nodes}
            graphs.append(save_graph_h5(graph_path(store.root, brain, hemi), pos, faces, **geometry))
        graph = StageId("build-graph", brain)
        key = record_external(store, graph, graphs, source).key
        parts = {
            StageId("node-priors", brain): (priors_path, ("co", "pm")),
            StageId("node-labels", brain): (node_labels_path, ("y", "train_mask", "test_mask")),
            StageId("features", brain, (SYNTHETIC_ENCODER,)): (
                lambda d, br, h: cy_path(d, br, SYNTHETIC_ENCODER, h),
                ("cy",),
            ),
        }
        for sid, (where, names) in parts.items():
            files = []
            for hemi, (pos, _, nodes) in arrays.items():
                files.append(
                    write_node_arrays(
                        where(store.root, brain, hemi),
                        key,
                        len(pos),
                        **{n: nodes[n] for n in names if n in nodes},
                        **({"cy_measured": np.ones(len(pos), bool)} if "cy" in names else {}),
                    )
                )
            record_external(store, sid, files, source, upstream=[graph])
    return root
