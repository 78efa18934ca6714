"""Node labels -> label images of the sections (Schiffer, PhD thesis, Sect. 6.1.1): the computing
core of ``cortexgraph project`` (the stage: :mod:`cortexgraph.mapping.project`).

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

Inputs are arrays (node arrays, tissue classes, points in section mm); outputs are arrays and GeoJSON
dicts. Nothing here reads or writes a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from cortexgraph.data.manifest import AreaTable
from cortexgraph.errors import DataFormatError
from cortexgraph.mapping.nodes import mapped_mask, nodes_by_section

GRAY = 2
DEFAULT_MAX_DISTANCE_MM = 3.0

__all__ = [
    "DEFAULT_MAX_DISTANCE_MM",
    "project_points_to_image",
    "smooth_node_labels",
    "classes_to_area_ids",
    "label_contours",
    "SectionPoints",
    "section_points",
    "merge_section_points",
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
    keep = mapped_mask(section, point_mm, valid)
    ids = np.asarray(area_ids)
    return {
        s: SectionPoints(point_mm[idx], ids[idx])
        for s, idx in nodes_by_section(section, keep).items()
    }


def merge_section_points(groups: Sequence[dict[int, SectionPoints]]) -> dict[int, SectionPoints]:
    """The points of several graphs (hemispheres) together, section by section."""
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
