"""``cortexgraph project``: node labels back onto sections (label images, contours, overlays, F1).

Every graph node that was mapped to a point of a section (node arrays ``section``, ``point_mm``,
``valid`` written by build-graph) carries a class label (``pred`` from predict, ``y`` from
features). For every available section, each **gray-matter pixel** (tissue mask == 2) takes the
label of the **nearest valid mapped point of the same section** if that point lies within
``max_distance_mm`` (Euclidean, in the section plane; pixel centres as in docs/conventions.md),
otherwise it stays 0 (unlabelled). This is the "colour each cortex pixel by its closest predicted
point" of the source (Schiffer, PhD thesis, Sect. 6.1.1). Points whose label is unknown (-1) take part in the
nearest-point search: pixels closest to them stay unlabelled. Both hemispheres' graphs are searched
together. The search uses one KD-tree per section (``scipy.spatial.cKDTree``).

**Smoothing along the cortex** (optional, ``smooth_hops > 0``), before projecting: every labelled
node takes the majority label of the labelled nodes of its ``smooth_hops``-ring on the midsurface
graph, each vote weighted by the number of graph walks of length ``smooth_hops`` (with self-loops)
that reach the node, so nearer nodes weigh more; ties keep the node's own label. The graph is the
midsurface, so the neighbourhood follows the cortex (``smooth_hops`` edges at most) and does not
jump across a sulcus to the opposite bank, as a neighbourhood in the section plane could. Unknown
nodes (-1) neither vote nor change.

**Pixel F1** (:func:`pixel_counts`, :class:`PixelCounts`): against a full label image (the phantom's
``ground_truth/<brain>/labels/sNNNN.h5``), scored on the pixels whose true label is an area (> 0). A
pixel left unlabelled (0) is a miss of its true area. Per area ``F1 = 2 TP / (n_true + n_pred)``;
macro F1 = mean over the areas present in the truth or predicted on scored pixels (the convention of
:mod:`cortexgraph.training.metrics`); counts are summed over all sections of the brain first. Also
reported: accuracy, coverage (share of true-area pixels that got any label) and the pixels labelled
where the truth has no area (non-cortical gray matter; not in the F1).

Outputs of :func:`project_brain` (``<cohort>/derivatives/cortexgraph/<brain>/labels/<source>/``)::

    sNNNN.h5              uint16 area ids (0 unlabelled), label raster, raw section frame
    sNNNN.geojson         the same as polygon contours (section mm)
    overlays/sNNNN.png    section image with the labels (and the ground truth, when present)
    pixel_f1.tsv          per area: area_id name n_true n_pred tp f1   (only with ground truth)
    project.json          per-section counts, scores, seconds

``<source>``: ``gnn-<run>`` for the predictions of a model run, ``nodes-y`` for the annotated node
labels; the stage record is ``<brain>/records/project@<source>.json``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from cortexgraph.data.manifest import AreaTable, Brain, find_brain
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.gnn.stage import run_settings
from cortexgraph.outputs import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

HEMISPHERES = ("lh", "rh")
GRAY = 2
DEFAULT_MAX_DISTANCE_MM = 3.0

__all__ = [
    "DEFAULT_MAX_DISTANCE_MM",
    "project_points_to_image",
    "smooth_node_labels",
    "classes_to_area_ids",
    "PixelCounts",
    "pixel_counts",
    "pixel_f1",
    "label_contours",
    "SectionPoints",
    "section_points",
    "ground_truth_graphs",
    "project_graphs",
    "project_brain",
    "source_name",
    "upper_bound",
]


# -- one section -----------------------------------------------------------------------------------
def project_points_to_image(
    tissue: np.ndarray,
    points_mm: np.ndarray,
    point_labels: np.ndarray,
    spacing_um: float,
    *,
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
    tissue_class: int = GRAY,
) -> np.ndarray:
    """Label image of one section from labelled points of that section.

    Parameters
    ----------
    tissue : (rows, cols) tissue classes at ``spacing_um`` (0 background, 1 white, 2 gray).
    points_mm : (P, 2) points ``(x_mm, y_mm)`` in the section frame (x right, y down, origin
        top-left); rows with NaN are ignored.
    point_labels : (P,) area ids >= 0 of the points (0 = unlabelled point).
    spacing_um : pixel spacing ``s`` (µm); pixel ``(i, j)`` is centred at ``(j + .5, i + .5) s``.
    max_distance_mm : a pixel farther than this from every point stays 0 (inclusive bound).
    tissue_class : the tissue class that is labelled (gray matter).

    Returns
    -------
    uint16 (rows, cols): the label of the nearest point for every ``tissue_class`` pixel within
    ``max_distance_mm`` of a point, 0 elsewhere.
    """
    tissue = np.asarray(tissue)
    points = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(point_labels).reshape(-1)
    if len(points) != len(labels):
        raise ValueError(f"{len(points)} points but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
        raise ValueError("point labels must be area ids in 0..65535 (0 = unlabelled)")
    out = np.zeros(tissue.shape, dtype=np.uint16)
    keep = np.isfinite(points).all(axis=1)
    points, labels = points[keep], labels[keep].astype(np.uint16)
    rows, cols = np.nonzero(tissue == tissue_class)
    if not len(points) or not len(rows):
        return out
    scale = spacing_um / 1000.0
    centres = np.column_stack([(cols + 0.5) * scale, (rows + 0.5) * scale])
    tree = cKDTree(points)
    # cKDTree keeps neighbours strictly closer than the bound: nudge it up to make it inclusive
    bound = np.nextafter(float(max_distance_mm), np.inf)
    _, nearest = tree.query(centres, k=1, distance_upper_bound=bound)
    hit = nearest < len(points)
    out[rows[hit], cols[hit]] = labels[nearest[hit]]
    return out


# -- node labels -----------------------------------------------------------------------------------
def smooth_node_labels(labels: np.ndarray, edge_index: np.ndarray, hops: int = 2) -> np.ndarray:
    """Majority vote of node labels over the ``hops``-ring of a graph (smoothing along the cortex).

    Parameters
    ----------
    labels : (N,) int class indices, -1 = unknown (does not vote, is not changed).
    edge_index : (2, E) int edges (both directions, as in the graph file).
    hops : ring size; 0 returns a copy.

    Returns
    -------
    (N,) int64 labels: for every labelled node, the label with most votes, a vote of node ``j`` for
    node ``i`` weighing the number of walks of length ``hops`` from ``j`` to ``i`` in the graph with
    self-loops; ties keep the node's own label (then the smaller class index).
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    out = labels.copy()
    labelled = np.nonzero(labels >= 0)[0]
    if hops <= 0 or not len(labelled):
        return out
    n = len(labels)
    n_classes = int(labels.max()) + 1
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    adjacency = sparse.csr_matrix(
        (np.ones(edge_index.shape[1]), (edge_index[1], edge_index[0])), shape=(n, n)
    )
    adjacency.sum_duplicates()
    adjacency.data[:] = 1.0
    adjacency = adjacency + sparse.identity(n, format="csr")
    own = sparse.csr_matrix(
        (np.ones(len(labelled)), (labelled, labels[labelled])), shape=(n, n_classes)
    )
    votes = own
    for _ in range(int(hops)):
        votes = adjacency @ votes
    votes = (votes + 0.5 * own)[labelled]
    out[labelled] = np.asarray(votes.argmax(axis=1)).reshape(-1)
    return out


def classes_to_area_ids(classes: np.ndarray, areas: AreaTable) -> np.ndarray:
    """Class indices (0..K-1, -1 unknown) -> area ids (0 unlabelled), int64."""
    classes = np.asarray(classes, dtype=np.int64)
    if classes.size and classes.max(initial=-1) >= len(areas):
        raise DataFormatError(
            f"class index {int(classes.max())} but the area table has {len(areas)} areas",
            fix="the labels were made with another area table; predict again",
        )
    return np.where(classes >= 0, areas.ids[np.clip(classes, 0, None)], 0).astype(np.int64)


# -- scores ----------------------------------------------------------------------------------------
@dataclass
class PixelCounts:
    """Pixel counts per area id (arrays indexed by id; index 0 unused), summable over sections."""

    tp: np.ndarray
    n_true: np.ndarray
    n_pred: np.ndarray
    unlabelled: int = 0  # scored pixels left with label 0
    outside: int = 0  # pixels labelled where the truth has no area (not scored)

    def __add__(self, other: PixelCounts) -> PixelCounts:
        size = max(len(self.tp), len(other.tp))

        def pad(a: np.ndarray) -> np.ndarray:
            return np.pad(a, (0, size - len(a)))

        return PixelCounts(
            pad(self.tp) + pad(other.tp),
            pad(self.n_true) + pad(other.n_true),
            pad(self.n_pred) + pad(other.n_pred),
            self.unlabelled + other.unlabelled,
            self.outside + other.outside,
        )

    @classmethod
    def empty(cls) -> PixelCounts:
        return cls(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64))

    @property
    def scored(self) -> int:
        """Pixels scored (true label > 0)."""
        return int(self.n_true.sum())

    def per_area_f1(self) -> tuple[np.ndarray, np.ndarray]:
        """(area ids present in truth or prediction, their F1 = 2 TP / (n_true + n_pred))."""
        denom = self.n_true + self.n_pred
        ids = np.nonzero(denom > 0)[0]
        ids = ids[ids > 0]
        return ids, 2.0 * self.tp[ids] / denom[ids]

    def macro_f1(self) -> float:
        """Mean F1 over the areas present in truth or prediction; NaN when nothing was scored."""
        _, f1 = self.per_area_f1()
        return float(f1.mean()) if len(f1) else float("nan")

    def summary(self) -> dict:
        scored = self.scored
        return {
            "macro_f1": self.macro_f1(),
            "accuracy": float(self.tp.sum() / scored) if scored else float("nan"),
            "coverage": float((scored - self.unlabelled) / scored) if scored else float("nan"),
            "pixels_scored": scored,
            "pixels_unlabelled": int(self.unlabelled),
            "pixels_outside_truth": int(self.outside),
            "areas": int(len(self.per_area_f1()[0])),
        }


def pixel_counts(pred: np.ndarray, truth: np.ndarray) -> PixelCounts:
    """Per-area pixel counts of a predicted label image against a true one (area ids, 0 = none).

    Scored pixels: ``truth > 0``. ``tp[a]``: scored pixels with ``pred == truth == a``;
    ``n_true[a]``: scored pixels of true area ``a``; ``n_pred[a]``: scored pixels predicted ``a``
    (``a > 0``).
    """
    pred = np.asarray(pred).astype(np.int64)
    truth = np.asarray(truth).astype(np.int64)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    scored = truth > 0
    t, p = truth[scored], pred[scored]
    size = int(max(t.max(initial=0), p.max(initial=0))) + 1
    predicted = p[p > 0]
    return PixelCounts(
        tp=np.bincount(t[t == p], minlength=size),
        n_true=np.bincount(t, minlength=size),
        n_pred=np.bincount(predicted, minlength=size),
        unlabelled=int((p == 0).sum()),
        outside=int(((pred > 0) & ~scored).sum()),
    )


def pixel_f1(pred: np.ndarray, truth: np.ndarray) -> tuple[float, dict[int, float]]:
    """Macro F1 and per-area F1 ``{area_id: f1}`` of one predicted label image (see module doc)."""
    counts = pixel_counts(pred, truth)
    ids, f1 = counts.per_area_f1()
    return counts.macro_f1(), {int(i): float(v) for i, v in zip(ids, f1, strict=True)}


def label_contours(
    labels: np.ndarray, spacing_um: float, names: dict[int, str] | None = None
) -> dict:
    """GeoJSON contours of a label image, as
    :func:`cortexgraph.data.annotations.label_image_to_contours` but traced area by area inside each
    area's bounding box (same polygons, far less work on large sections with many small areas)."""
    from scipy import ndimage

    from cortexgraph.data.annotations import label_image_to_contours

    labels = np.asarray(labels)
    features = []
    scale = spacing_um / 1000.0
    for area_id, box in enumerate(ndimage.find_objects(labels.astype(np.int64)), start=1):
        if box is None:
            continue
        crop = np.where(labels[box] == area_id, labels[box], 0)
        dx, dy = box[1].start * scale, box[0].start * scale
        for feature in label_image_to_contours(crop, spacing_um, names)["features"]:
            feature["geometry"]["coordinates"] = [
                [[round(x + dx, 6), round(y + dy, 6)] for x, y in ring]
                for ring in feature["geometry"]["coordinates"]
            ]
            features.append(feature)
    return {"type": "FeatureCollection", "features": features}


# -- graphs -> points per section ------------------------------------------------------------------
@dataclass
class SectionPoints:
    """Labelled points of one section (from all hemispheres): mm coordinates and area ids."""

    points_mm: np.ndarray  # (P, 2)
    area_ids: np.ndarray  # (P,) 0 = unlabelled


def section_points(
    section: np.ndarray,
    point_mm: np.ndarray,
    valid: np.ndarray,
    area_ids: np.ndarray,
) -> dict[int, SectionPoints]:
    """Group the valid mapped nodes by section: ``{section: SectionPoints}``.

    Inputs are node arrays (N,) / (N, 2) as in the graph file; nodes with section -1, ``valid``
    False or a NaN point are left out.
    """
    section = np.asarray(section, dtype=np.int64)
    point_mm = np.asarray(point_mm, dtype=np.float64).reshape(-1, 2)
    keep = (section >= 0) & np.asarray(valid, dtype=bool) & np.isfinite(point_mm).all(axis=1)
    section, points, ids = section[keep], point_mm[keep], np.asarray(area_ids)[keep]
    order = np.argsort(section, kind="stable")
    section, points, ids = section[order], points[order], ids[order]
    numbers, starts = np.unique(section, return_index=True)
    ends = np.append(starts[1:], len(section))
    return {
        int(s): SectionPoints(points[a:b], ids[a:b])
        for s, a, b in zip(numbers, starts, ends, strict=True)
    }


def _merge(groups: Sequence[dict[int, SectionPoints]]) -> dict[int, SectionPoints]:
    merged: dict[int, list[SectionPoints]] = {}
    for group in groups:
        for s, pts in group.items():
            merged.setdefault(s, []).append(pts)
    return {
        s: SectionPoints(
            np.concatenate([p.points_mm for p in parts]),
            np.concatenate([p.area_ids for p in parts]),
        )
        for s, parts in merged.items()
    }


def _graph_file_points(path: Path) -> dict[str, np.ndarray]:
    """``section``, ``point_mm``, ``valid``, ``y`` and ``edge_index`` of a graph file written by
    :func:`ground_truth_graphs` (the upper-bound experiment)."""
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
    hemis: Sequence[str] = HEMISPHERES,
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
    from cortexgraph.data.stack import SectionStack
    from cortexgraph.mapping.nodes import map_nodes_to_sections, node_arrays_from_table
    from cortexgraph.meshes.graph import save_graph_h5
    from cortexgraph.meshes.io import read_gifti_surface, read_gifti_vertex_labels

    if brain.cohort is None:
        raise CortexgraphError("the brain is not inside a cohort", file=brain.root)
    truth = brain.cohort.root / "ground_truth" / brain.id
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


# -- the whole brain ------------------------------------------------------------------------------
def source_name(run: str | None = None, labels: str = "pred") -> str:
    """The label source a projection writes: ``gnn-<run>`` for a run's predictions, ``nodes-y``
    for the annotated node labels."""
    if labels == "pred":
        if not run:
            raise CortexgraphError(
                "projecting predictions needs the model run", fix="pass --run RUN"
            )
        return f"gnn-{run}"
    if labels == "y":
        return "nodes-y"
    raise CortexgraphError(
        f"unknown node labels {labels!r}", fix="project pred (with --run) or y (the annotations)"
    )


def _pick_overlays(sections: Sequence[int], labelled: dict[int, int], count: int) -> list[int]:
    if count == 0:
        return []
    candidates = [s for s in sections if labelled.get(s, 0) > 0] or list(sections)
    if count < 0 or count >= len(candidates):
        return list(candidates)
    picks = np.linspace(0, len(candidates) - 1, count + 2)[1:-1]
    return sorted({candidates[int(round(p))] for p in picks})


def truth_labels_folder(brain: Brain) -> Path | None:
    """The phantom's full true label images ``ground_truth/<brain>/labels`` (None elsewhere)."""
    if brain.cohort is None:
        return None
    candidate = brain.cohort.root / "ground_truth" / brain.id / "labels"
    return candidate if candidate.is_dir() else None


def project_graphs(
    brain: Brain,
    graphs: Sequence[dict[str, np.ndarray]],
    out_dir: Path,
    *,
    source: str,
    spacing_um: float,
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
    smooth_hops: int = 0,
    contours: bool = True,
    overlays: int = 6,
    truth_dir: Path | None = None,
    title: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    run: str | None = None,
) -> tuple[dict, list[Path]]:
    """Project class labels of graph nodes onto every available section of ``brain`` (no record).

    Parameters
    ----------
    graphs : per hemisphere, node arrays ``section``, ``point_mm``, ``valid``, ``labels`` (class
        index, -1 unknown) and ``edge_index``.
    out_dir : where the label images, contours, overlays and tables go (module docstring).
    source : the label source's name (in the files' attributes and picture titles).
    truth_dir : full true label images to score against (or None).
    title : what the overlay pictures name as their labels (default ``source``).
    run : the model run whose labels these are: the overlays name each section's role for it
        (:func:`cortexgraph.render.sections.section_roles`).

    Returns
    -------
    (report, files written).
    """
    from cortexgraph.data.stack import SectionStack

    start = time.perf_counter()
    areas = brain.cohort.areas
    groups, node_counts = [], {}
    for k, graph in enumerate(graphs):
        classes = smooth_node_labels(graph["labels"], graph["edge_index"], smooth_hops)
        ids = classes_to_area_ids(classes, areas)
        groups.append(section_points(graph["section"], graph["point_mm"], graph["valid"], ids))
        node_counts[graph.get("name", str(k))] = {
            "nodes": int(len(classes)),
            "labelled": int((classes >= 0).sum()),
            "changed_by_smoothing": int((classes != graph["labels"]).sum()),
        }
    points = _merge(groups)
    stack = SectionStack(brain)
    sections = list(stack.sections)
    per_section, labelled_pixels, total = [], {}, PixelCounts.empty()
    names = {a.id: a.name for a in areas.areas}
    written: list[Path] = []
    for k, s in enumerate(sections):
        path = out_dir / f"s{s:04d}.h5"
        pts = points.get(s, SectionPoints(np.zeros((0, 2)), np.zeros(0, np.int64)))
        tissue = stack.tissue_mask(s, spacing_um)
        image = project_points_to_image(
            tissue, pts.points_mm, pts.area_ids, spacing_um, max_distance_mm=max_distance_mm
        )
        write_raster(path, image, spacing_um, kind="labels", attrs={"section": s, "source": source})
        written.append(path)
        if contours:
            from cortexgraph.data.annotations import write_contours

            write_contours(path.with_suffix(".geojson"), label_contours(image, spacing_um, names))
            written.append(path.with_suffix(".geojson"))
        record = {
            "section": s,
            "points": int(len(pts.area_ids)),
            "pixels_labelled": int((image > 0).sum()),
        }
        labelled_pixels[s] = record["pixels_labelled"]
        truth_path = truth_dir / f"s{s:04d}.h5" if truth_dir else None
        if truth_path is not None and truth_path.is_file():
            with Raster(truth_path) as raster:
                truth = raster.read_at_spacing(spacing_um)
            if truth.shape != image.shape:
                raise DataFormatError(
                    f"true labels {truth.shape} and projected labels {image.shape} differ in shape",
                    file=truth_path,
                    section=s,
                    fix="true and section rasters must cover the same extent",
                )
            counts = pixel_counts(image, truth)
            total = total + counts
            record["macro_f1"] = counts.macro_f1()
            record["pixels_scored"] = counts.scored
        per_section.append(record)
        if progress is not None:
            progress(k + 1, len(sections))

    scores = None
    if total.scored:
        scores = total.summary()
        ids, f1 = total.per_area_f1()
        scores["per_area"] = {int(i): float(v) for i, v in zip(ids, f1, strict=True)}
        rows = [
            "\t".join(
                [str(i), names.get(int(i), ""), str(total.n_true[i]), str(total.n_pred[i])]
                + [str(total.tp[i]), f"{v:.6f}"]
            )
            for i, v in zip(ids, f1, strict=True)
        ]
        header = "area_id\tname\tn_true\tn_pred\ttp\tf1\n"
        write_text_atomic(out_dir / "pixel_f1.tsv", header + "\n".join(rows) + "\n")
        written.append(out_dir / "pixel_f1.tsv")

    picks = _pick_overlays(sections, labelled_pixels, overlays)
    if picks:
        from cortexgraph.render.sections import section_roles

        roles = section_roles(brain, stack, run_settings(brain.cohort.root, run))
    for s in picks:
        written.append(
            _overlay(stack, s, out_dir, spacing_um, areas, truth_dir, title or source, roles[s])
        )
    stack.close()
    report = {
        "source": source,
        "out_dir": str(out_dir),
        "graphs": node_counts,
        "sections": per_section,
        "pixel_f1": scores,
        "truth_dir": str(truth_dir) if truth_dir else None,
        "seconds": time.perf_counter() - start,
    }
    write_json_atomic(out_dir / "project.json", report)
    written.append(out_dir / "project.json")
    return report, written


def project_brain(
    brain: Brain | str,
    run: str | None = None,
    *,
    labels: str = "pred",
    root: str | os.PathLike | None = None,
    spacing_um: float | None = None,
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
    smooth_hops: int = 0,
    contours: bool = True,
    overlays: int = 6,
    overwrite: bool = False,
    wait_s: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Stage ``project@<source>``: one model run's node predictions (or the annotated node labels)
    painted onto all sections of a brain; scored against the phantom's truth when it exists.

    Parameters
    ----------
    brain : a Brain, or a brain id / folder resolved with ``find_brain(brain, root)``.
    run : the model run whose ``pred`` to project (label source ``gnn-<run>``).
    labels : ``pred`` (needs ``run``) or ``y`` (the annotated node labels, source ``nodes-y``).
    spacing_um : pixel spacing of the label images (default: the brain's annotation spacing).
    max_distance_mm : pixels farther than this from every point of their section stay unlabelled.
    smooth_hops : majority vote along the cortex first (:func:`smooth_node_labels`); 0 = off.
    contours : also write ``sNNNN.geojson``.
    overlays : number of overlay PNGs (spread evenly over the labelled sections); -1 all, 0 none.
    overwrite, wait_s : see :class:`~cortexgraph.derivatives.StageRun`.
    progress : optional callable ``(done, total)`` over sections.

    Returns
    -------
    The content of ``project.json`` (per-section counts, ``pixel_f1`` or None, seconds) with
    ``reused`` and ``why``. Files: ``<brain>/labels/<source>/`` (module docstring).
    """
    from cortexgraph.derivatives import Derivatives, StageId, StageRun
    from cortexgraph.derivatives.graphs import graph_hemispheres, load_brain_graph, node_stages
    from cortexgraph.derivatives.inputs import brain_inputs
    from cortexgraph.derivatives.layout import label_source_dir

    if not isinstance(brain, Brain):
        brain = find_brain(brain, root)
    if brain.cohort is None:
        raise CortexgraphError(
            "the brain is not inside a cohort (no area table)",
            file=brain.root,
            fix="keep the brain folder inside its cohort folder (cohort.toml, areas.tsv)",
        )
    source = source_name(run, labels)
    store = Derivatives.of(brain)
    out_dir = label_source_dir(store.root, brain.id, source)
    truth_dir = truth_labels_folder(brain)
    # labels at the annotation spacing; a brain without annotations: at the mask spacing
    spacing_um = float(spacing_um or brain.annotation_spacing_um or brain.mask_spacing_um)
    values, files = brain_inputs(brain, ("mask",), transforms=False)
    if truth_dir is not None:
        files += sorted(truth_dir.glob("s*.h5"))
    parameters = {
        **values,
        "labels": labels,
        "run": run if labels == "pred" else None,
        "spacing_um": spacing_um,
        "max_distance_mm": float(max_distance_mm),
        "smooth_hops": int(smooth_hops),
        "contours": bool(contours),
        "overlays": int(overlays),
        "scored_against_truth": truth_dir is not None,
    }
    upstream = node_stages(
        brain.id, labels=labels == "y", run=run if labels == "pred" else None
    )
    with StageRun(
        store,
        StageId("project", brain.id, (source,)),
        parameters=parameters,
        inputs=files,
        upstream=upstream,
        overwrite=overwrite,
        wait_s=wait_s,
    ) as stage:
        if stage.reuse:
            return stage.summary()
        graphs = []
        for hemi in graph_hemispheres(store, brain.id):
            data = load_brain_graph(
                store,
                brain.id,
                hemi,
                labels=labels == "y",
                run=run if labels == "pred" else None,
            )
            values_ = data.y if labels == "y" else data.pred
            graphs.append(
                {
                    "name": hemi,
                    "section": data.section.numpy(),
                    "point_mm": data.point_mm.numpy(),
                    "valid": data.valid.numpy(),
                    "labels": values_.numpy().astype(np.int64),
                    "edge_index": data.edge_index.numpy(),
                }
            )
        report, written = project_graphs(
            brain,
            graphs,
            out_dir,
            source=source,
            spacing_um=spacing_um,
            max_distance_mm=max_distance_mm,
            smooth_hops=smooth_hops,
            contours=contours,
            overlays=overlays,
            truth_dir=truth_dir,
            title=f"run {run}" if labels == "pred" else "annotated nodes",
            progress=progress,
            run=run if labels == "pred" else None,
        )
        report["parameters"] = parameters
        measured = {k: v for k, v in report.items() if k != "sections"}
        stage.commit(written, measured)
    return stage.summary(report)


def _overlay(stack, s, out_dir, spacing_um, areas, truth_dir, what, role) -> Path:
    from cortexgraph.render.sections import section_context, section_overlay_figure

    path = out_dir / "overlays" / f"s{s:04d}.png"
    labels = Raster(out_dir / f"s{s:04d}.h5").read_level(0)
    image = stack.raster(s, "image").read_at_spacing(spacing_um)
    panels = [(f"projected: {what}", labels)]
    truth_path = truth_dir / f"s{s:04d}.h5" if truth_dir else None
    if truth_path is not None and truth_path.is_file():
        with Raster(truth_path) as raster:
            panels.append(("ground truth (phantom)", raster.read_at_spacing(spacing_um)))
    return section_overlay_figure(
        path,
        image,
        panels,
        areas,
        spacing_um=spacing_um,
        title=f"{stack.brain.id}, section {s}: labels projected from {what}",
        context=section_context(stack, s, role),
    )


def upper_bound(
    cohort_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    brains: Sequence[str] | None = None,
    distances_mm: Sequence[float] = (DEFAULT_MAX_DISTANCE_MM,),
    smooth_hops: Sequence[int] = (0,),
) -> list[dict]:
    """Pixel scores of the phantom's **true** vertex labels projected onto its sections.

    For every brain: :func:`ground_truth_graphs` into ``out_dir/<brain>/graph``, then
    :func:`project_brain` of ``y`` for every (distance, smoothing) pair into
    ``out_dir/<brain>/labels/truth-y-d<distance>-s<hops>`` (contours and overlays only for the first
    pair). Returns one row per brain and pair (also written to ``out_dir/upper_bound.tsv``): brain,
    max_distance_mm, smooth_hops, macro_f1, accuracy, coverage, pixels_scored, pixels_outside_truth,
    seconds_mapping, seconds_project.
    """
    from cortexgraph.data.manifest import Cohort

    cohort = Cohort.read(cohort_root)
    rows = []
    for brain_id in brains or cohort.brain_ids:
        brain = cohort.brain(brain_id)
        graph_dir = Path(out_dir) / brain_id / "graph"
        start = time.perf_counter()
        ground_truth_graphs(brain, graph_dir)
        mapped = time.perf_counter() - start
        graphs = [
            {"name": path.stem, **_graph_file_points(path)}
            for path in sorted(graph_dir.glob("*.h5"))
        ]
        first = True
        for distance in distances_mm:
            for hops in smooth_hops:
                source = f"truth-y-d{distance:g}-s{hops}"
                report, _ = project_graphs(
                    brain,
                    graphs,
                    Path(out_dir) / brain_id / "labels" / source,
                    source=source,
                    spacing_um=brain.annotation_spacing_um or brain.mask_spacing_um,
                    max_distance_mm=distance,
                    smooth_hops=hops,
                    contours=first,
                    overlays=6 if first else 0,
                    truth_dir=truth_labels_folder(brain),
                    title="true vertex labels",
                )
                first = False
                scores = report["pixel_f1"] or {}
                rows.append(
                    {
                        "brain": brain_id,
                        "max_distance_mm": float(distance),
                        "smooth_hops": int(hops),
                        **{
                            k: scores.get(k, float("nan"))
                            for k in (
                                "macro_f1",
                                "accuracy",
                                "coverage",
                                "pixels_scored",
                                "pixels_outside_truth",
                            )
                        },
                        "seconds_mapping": round(mapped, 1),
                        "seconds_project": round(report["seconds"], 1),
                    }
                )
                log.info("%s", rows[-1])
    columns = list(rows[0]) if rows else []
    lines = ["\t".join(columns)] + [
        "\t".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns)
        for r in rows
    ]
    write_text_atomic(Path(out_dir) / "upper_bound.tsv", "\n".join(lines) + "\n")
    return rows


def main(argv: list[str] | None = None) -> None:
    """``python -m cortexgraph.mapping.project COHORT OUT [--brains B01,B03] [--max-distance-mm 2,3]
    [--smooth 0,2]``: the projection's upper bound on a phantom (:func:`upper_bound`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cortexgraph.mapping.project")
    parser.add_argument("cohort", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--brains", default="")
    parser.add_argument("--max-distance-mm", default=str(DEFAULT_MAX_DISTANCE_MM))
    parser.add_argument("--smooth", default="0")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rows = upper_bound(
        args.cohort,
        args.out,
        brains=[b for b in args.brains.split(",") if b] or None,
        distances_mm=[float(v) for v in args.max_distance_mm.split(",")],
        smooth_hops=[int(v) for v in args.smooth.split(",")],
    )
    print("| brain | max distance (mm) | smoothing (hops) | pixel macro F1 | accuracy | coverage |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['brain']} | {r['max_distance_mm']:g} | {r['smooth_hops']} | "
            f"{r['macro_f1']:.3f} | {r['accuracy']:.3f} | {r['coverage']:.3f} |"
        )


if __name__ == "__main__":
    main()
