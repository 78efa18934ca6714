"""Where patches come from: centres along annotation midlines, the section split, class balancing.

Method (Schiffer, PhD thesis, Univ. Düsseldorf, Sect. 6.1.2 "Dataset preparation"; cited as
"the thesis"):

* "The midline of an annotation is computed from its morphological skeleton. We uniformly sample
  points with a distance of 1 mm along the midline of each annotation" (thesis Sect. 6.1.2, Fig. 6.1);
* annotated sections are sorted by number and "every fifth section" is a test section, an 80/20
  split (thesis Sect. 6.1.2);
* the training set is resampled with replacement to a constant number of patches per area, chosen
  so that the median sampling ratio ``r_A = n_s / n_A`` is about one (thesis Sect. 6.1.2).

Choices where the thesis is silent (ours):

* each 8-connected region is skeletonised on its own (``skimage.morphology.skeletonize``) at the
  resolution of the label image given;
* skeleton spurs are pruned: a terminal branch shorter than ``spur_factor`` times the inscribed
  radius (distance transform) at its junction is an artefact of the region's outline, not a
  midline (the default factor 2 is the local band thickness);
* branches are walked depth-first from an end of the skeleton; the arc length since the last
  centre is carried through junctions, so along every walked path consecutive centres are
  ``step_mm`` apart; a closed midline (ring) is cut at one point;
* arc length is measured on the pixel chain smoothed with a Gaussian of ``smooth_px`` pixels along
  the chain (odd reflection at the ends), which removes the up-to-8% staircase overestimate of
  digital curves; centres are interpolated on that polyline and lie within a pixel of the skeleton;
* "every fifth" is the fifth, tenth, ... section (``offset = every - 1``); apply the split per brain.

Coordinates: pixel ``(row i, col j)`` of a label image with spacing ``s`` µm has its centre at
``(x_mm, y_mm) = ((j + 0.5) s / 1000, (i + 0.5) s / 1000)`` (as :mod:`cortexgraph.data.raster`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from cortexgraph.data.roles import split_sections
from cortexgraph.errors import CortexgraphError

__all__ = [
    "skeleton_centres",
    "centres_from_annotation",
    "prune_skeleton",
    "split_sections",
    "balanced_resample",
    "sampling_ratios",
    "median_class_count",
    "pixels_to_mm",
]

_EIGHT = np.ones((3, 3), dtype=bool)
_OFFSETS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def pixels_to_mm(rc_px: np.ndarray, spacing_um: float) -> np.ndarray:
    """(K, 2) continuous (row, col) pixel indices -> (K, 2) (x_mm, y_mm) section coordinates."""
    rc = np.asarray(rc_px, dtype=np.float64).reshape(-1, 2)
    return np.stack([(rc[:, 1] + 0.5), (rc[:, 0] + 0.5)], axis=1) * (spacing_um / 1000.0)


# ----------------------------------------------------------------------------------------------
# skeleton graph
# ----------------------------------------------------------------------------------------------
@dataclass
class _Branch:
    start: int  # node id (or -1 for a closed loop without nodes)
    end: int
    pixels: np.ndarray  # (n, 2) int (row, col), ordered start -> end
    closed: bool = False


def _neighbours(skel: np.ndarray) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """8-neighbours of every skeleton pixel, without redundant diagonals.

    A diagonal link is dropped when the two pixels also touch through a common 4-neighbour on the
    skeleton (a staircase corner), so a one-pixel-wide line has exactly two neighbours per pixel.
    """
    rows, cols = skel.shape
    pts = list(zip(*np.nonzero(skel), strict=True))
    graph: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def on(r: int, c: int) -> bool:
        return 0 <= r < rows and 0 <= c < cols and bool(skel[r, c])

    for r, c in pts:
        r, c = int(r), int(c)
        nbrs = []
        for dr, dc in _OFFSETS:
            if not on(r + dr, c + dc):
                continue
            if dr != 0 and dc != 0 and (on(r + dr, c) or on(r, c + dc)):
                continue
            nbrs.append((r + dr, c + dc))
        graph[(r, c)] = nbrs
    return graph


def _decompose(skel: np.ndarray) -> tuple[list[list[tuple[int, int]]], list[_Branch]]:
    """Split a skeleton into nodes (end points, junction clusters) and the branches between them.

    Returns
    -------
    nodes : list of pixel lists (a junction cluster may hold several pixels; isolated pixels and
        end points one).
    branches : ordered pixel chains from one node pixel to another (both node pixels included),
        plus closed loops without nodes (``closed=True``, first pixel not repeated).
    """
    graph = _neighbours(skel)
    degree = {p: len(n) for p, n in graph.items()}
    node_of: dict[tuple[int, int], int] = {}
    nodes: list[list[tuple[int, int]]] = []
    for p in sorted(graph):
        if degree[p] == 2 or p in node_of:
            continue
        # flood the cluster of adjacent non-degree-2 pixels (junction clusters) into one node
        cluster, stack = [], [p]
        node_of[p] = len(nodes)
        while stack:
            q = stack.pop()
            cluster.append(q)
            if degree[q] < 3:
                continue
            for n in graph[q]:
                if n not in node_of and degree[n] >= 3:
                    node_of[n] = len(nodes)
                    stack.append(n)
        nodes.append(sorted(cluster))

    branches: list[_Branch] = []
    prev: tuple[int, int] | None
    used: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    for node_id, cluster in enumerate(nodes):
        for p in cluster:
            for q in graph[p]:
                if (p, q) in used or node_of.get(q) == node_id:
                    continue
                chain = [p, q]
                used.add((p, q))
                prev, cur = p, q
                while cur not in node_of:
                    nxt = [n for n in graph[cur] if n != prev]
                    if not nxt:  # cannot happen for degree 2, kept for safety
                        break
                    prev, cur = cur, nxt[0]
                    chain.append(cur)
                used.add((chain[-1], chain[-2]))
                end = node_of.get(chain[-1], node_id)
                branches.append(_Branch(node_id, end, np.asarray(chain, dtype=np.int64)))
    # closed loops made only of degree-2 pixels
    seen = {tuple(px) for b in branches for px in b.pixels.tolist()}
    seen.update(node_of)
    for p in sorted(graph):
        if p in seen:
            continue
        chain, prev, cur = [p], None, p
        seen.add(p)
        while True:
            nxt = [n for n in graph[cur] if n != prev and n not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            seen.add(cur)
            chain.append(cur)
        branches.append(_Branch(-1, -1, np.asarray(chain, dtype=np.int64), closed=True))
    return nodes, branches


def _chain_length_px(pixels: np.ndarray) -> float:
    if len(pixels) < 2:
        return 0.0
    return float(np.sum(np.hypot(*np.diff(pixels.astype(np.float64), axis=0).T)))


def prune_skeleton(
    skeleton: np.ndarray, distance_px: np.ndarray, spur_factor: float = 2.0, max_rounds: int = 20
) -> np.ndarray:
    """Remove spurs: terminal branches shorter than ``spur_factor * distance_px[junction]``.

    Parameters
    ----------
    skeleton : (H, W) bool skeleton of one region.
    distance_px : (H, W) Euclidean distance transform of the region, px.
    spur_factor : spur length threshold in units of the inscribed radius at the junction.
    max_rounds : pruning is repeated until nothing changes (at most this many rounds).

    Returns
    -------
    The pruned (and re-thinned) skeleton.  A junction keeps its two longest branches when all of
    its branches would be pruned, so a region never loses its whole midline.
    """
    skel = np.asarray(skeleton, dtype=bool).copy()
    if spur_factor <= 0:
        return skel
    for _ in range(max_rounds):
        nodes, branches = _decompose(skel)
        by_node: dict[int, list[int]] = {}
        for k, b in enumerate(branches):
            if b.closed:
                continue
            by_node.setdefault(b.start, []).append(k)
            if b.end != b.start:
                by_node.setdefault(b.end, []).append(k)
        remove: list[tuple[int, int]] = []  # (branch, junction node)
        for node_id, ks in by_node.items():
            if len(ks) < 2:
                continue  # an end point
            radius = max(float(distance_px[p]) for p in nodes[node_id])
            candidates, keep = [], 0
            for k in ks:
                b = branches[k]
                other = b.end if b.start == node_id else b.start
                is_spur = (
                    other != node_id
                    and len(by_node.get(other, [])) == 1
                    and _chain_length_px(b.pixels) < spur_factor * radius
                )
                if is_spur:
                    candidates.append(k)
                else:
                    keep += 1
            if not candidates:
                continue
            if keep == 0:  # everything at this junction is short: keep the two longest branches
                candidates.sort(key=lambda k: _chain_length_px(branches[k].pixels))
                candidates = candidates[:-2]
            remove.extend((k, node_id) for k in candidates)
        if not remove:
            break
        for k, node_id in remove:
            junction = set(nodes[node_id])
            for r, c in branches[k].pixels.tolist():
                if (r, c) not in junction:
                    skel[r, c] = False
        skel = skeletonize(skel)
    return skel


def _smooth_chain(pixels: np.ndarray, sigma_px: float, closed: bool) -> np.ndarray:
    """Gaussian smoothing of an ordered pixel chain along its length (float64 (n, 2))."""
    pts = pixels.astype(np.float64)
    if sigma_px <= 0 or len(pts) < 3:
        return pts
    if closed:
        return ndimage.gaussian_filter1d(pts, sigma_px, axis=0, mode="wrap")
    pad = int(math.ceil(4 * sigma_px))
    padded = np.pad(pts, ((pad, pad), (0, 0)), mode="reflect", reflect_type="odd")
    smooth = ndimage.gaussian_filter1d(padded, sigma_px, axis=0, mode="nearest")
    return smooth[pad:-pad]


def _place(
    polyline: np.ndarray, first_at: float, step: float, stop_before: float = 0.0
) -> tuple[list[np.ndarray], float]:
    """Points every ``step`` along a polyline, the first at arc length ``first_at``.

    Returns the points and the arc length still to go to the next point after the end.
    """
    seg = np.hypot(*np.diff(polyline, axis=0).T) if len(polyline) > 1 else np.zeros(0)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    length = float(cum[-1])
    out = []
    s = first_at
    while s <= length + 1e-9:
        if s <= length - stop_before + 1e-9:
            k = int(np.searchsorted(cum, s, side="right") - 1)
            k = min(max(k, 0), len(seg) - 1) if len(seg) else 0
            if len(seg) == 0 or seg[k] == 0:
                out.append(polyline[k].copy())
            else:
                t = (s - cum[k]) / seg[k]
                out.append(polyline[k] + t * (polyline[k + 1] - polyline[k]))
        s += step
    return out, s - length


def _component_centres_px(
    mask: np.ndarray, step_px: float, spur_factor: float, smooth_px: float
) -> list[np.ndarray]:
    """Centres (continuous row, col) along the midline of one connected region."""
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    skel = skeletonize(mask)
    if not skel.any():
        return []
    skel = prune_skeleton(skel, distance, spur_factor)
    nodes, branches = _decompose(skel)
    if not branches:
        # single pixel (or a lone junction cluster): one centre at its mean
        return [np.mean(np.asarray(nodes[0], dtype=np.float64), axis=0)] if nodes else []

    centres: list[np.ndarray] = []
    loops = [b for b in branches if b.closed]
    for loop in loops:  # rings without junctions: cut at the first pixel, walk once around
        closed = np.vstack([loop.pixels, loop.pixels[:1]]).astype(np.float64)
        poly = _smooth_chain(loop.pixels, smooth_px, closed=True)
        poly = np.vstack([poly, poly[:1]]) if len(loop.pixels) >= 3 else closed
        pts, _ = _place(poly, 0.0, step_px, stop_before=0.5 * step_px)
        centres.extend(pts)

    open_branches = [b for b in branches if not b.closed]
    if not open_branches:
        return centres
    by_node: dict[int, list[int]] = {}
    for k, b in enumerate(open_branches):
        by_node.setdefault(b.start, []).append(k)
        if b.end != b.start:
            by_node.setdefault(b.end, []).append(k)
    polylines = [_smooth_chain(b.pixels, smooth_px, closed=False) for b in open_branches]
    visited_nodes: set[int] = set()
    visited_branches: set[int] = set()
    ends = sorted(n for n, ks in by_node.items() if len(ks) == 1 and len(nodes[n]) == 1)
    roots = ends + sorted(by_node)  # every branch-graph component gets a root
    for root in roots:
        if root in visited_nodes:
            continue
        first_at = 0.0
        if len(open_branches) == 1 and open_branches[0].start != open_branches[0].end:
            # a simple path: centre the samples so the leftovers at both ends are equal
            length = float(np.sum(np.hypot(*np.diff(polylines[0], axis=0).T)))
            first_at = 0.5 * (length % step_px)
        visited_nodes.add(root)
        stack: list[tuple[int, float]] = [(root, first_at)]
        while stack:
            node, next_at = stack.pop()
            first_branch = True
            for k in sorted(by_node.get(node, [])):
                if k in visited_branches:
                    continue
                visited_branches.add(k)
                b = open_branches[k]
                forward = b.start == node
                poly = polylines[k] if forward else polylines[k][::-1]
                other = b.end if forward else b.start
                start_at = next_at
                if node == root and not first_branch:
                    # the root's centre was placed on its first branch, first_at away
                    start_at = step_px - first_at if first_at > 0 else step_px
                first_branch = False
                closing = other in visited_nodes
                pts, carry = _place(poly, start_at, step_px, 0.5 * step_px if closing else 0.0)
                centres.extend(pts)
                if not closing:
                    visited_nodes.add(other)
                    stack.append((other, carry))
    return centres


def skeleton_centres(
    region_mask: np.ndarray,
    spacing_um: float,
    step_mm: float = 1.0,
    *,
    spur_factor: float = 2.0,
    smooth_px: float = 2.0,
    min_region_px: int = 1,
) -> np.ndarray:
    """Patch centres every ``step_mm`` of arc length along the midline of each region.

    Parameters
    ----------
    region_mask : (H, W) bool mask of one area's annotation in one section.
    spacing_um : pixel spacing of the mask, µm.
    step_mm : distance between consecutive centres along the midline, mm (1 mm, thesis Sect. 6.1.2).
    spur_factor : skeleton spur pruning threshold (see :func:`prune_skeleton`); 0 disables it.
    smooth_px : Gaussian sigma (px) of the chain smoothing used to measure arc length.
    min_region_px : regions (8-connected) with fewer pixels are ignored.

    Returns
    -------
    (K, 2) float64 centres ``(x_mm, y_mm)`` (x along columns, y along rows, ``(index + 0.5) *
    spacing_um / 1000``), region by region in raster order of their first pixel.
    """
    mask = np.asarray(region_mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"region_mask must be 2D, got shape {mask.shape}")
    if spacing_um <= 0 or step_mm <= 0:
        raise ValueError("spacing_um and step_mm must be positive")
    step_px = step_mm * 1000.0 / spacing_um
    labels, count = ndimage.label(mask, structure=_EIGHT)
    centres: list[np.ndarray] = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        component = labels[box] == index
        if int(component.sum()) < min_region_px:
            continue
        padded = np.pad(component, 1)
        offset = np.array([box[0].start - 1, box[1].start - 1], dtype=np.float64)
        for rc in _component_centres_px(padded, step_px, spur_factor, smooth_px):
            centres.append(rc + offset)
    if not centres:
        return np.zeros((0, 2), dtype=np.float64)
    return pixels_to_mm(np.asarray(centres), spacing_um)


def centres_from_annotation(
    label_image: np.ndarray,
    spacing_um: float,
    step_mm: float = 1.0,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Patch centres and their area labels for every annotated area of a section.

    Parameters
    ----------
    label_image : (H, W) integer area ids, 0 = unlabelled.
    spacing_um : pixel spacing of ``label_image``, µm.
    step_mm : centre spacing along each midline, mm.
    **kwargs : passed to :func:`skeleton_centres` (``spur_factor``, ``smooth_px``,
        ``min_region_px``).

    Returns
    -------
    centres_mm : (K, 2) float64 ``(x_mm, y_mm)``.
    labels : (K,) int64 area id of each centre, areas in increasing id order.
    """
    image = np.asarray(label_image)
    if image.ndim != 2:
        raise ValueError(f"label_image must be 2D, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.integer):
        raise CortexgraphError(
            f"label image has dtype {image.dtype}, expected integer area ids",
            fix="rasterise annotations to an integer label image (0 = unlabelled)",
        )
    if image.size and image.min() < 0:
        raise CortexgraphError(
            "label image holds negative area ids", fix="use 0 for unlabelled, positive area ids"
        )
    all_centres, all_labels = [], []
    ids = np.unique(image)
    ids = ids[ids > 0]
    boxes = ndimage.find_objects(image) if ids.size and int(ids.max()) < 10_000_000 else None
    for area in ids.tolist():
        if boxes is not None:
            box = boxes[area - 1]
            r0, r1 = max(box[0].start - 1, 0), min(box[0].stop + 1, image.shape[0])
            c0, c1 = max(box[1].start - 1, 0), min(box[1].stop + 1, image.shape[1])
        else:
            rr, cc = np.nonzero(image == area)
            r0, r1, c0, c1 = rr.min(), rr.max() + 1, cc.min(), cc.max() + 1
        mask = image[r0:r1, c0:c1] == area
        centres = skeleton_centres(mask, spacing_um, step_mm, **kwargs)
        if len(centres):
            centres = centres + np.array([c0, r0]) * (spacing_um / 1000.0)
            all_centres.append(centres)
            all_labels.append(np.full(len(centres), area, dtype=np.int64))
    if not all_centres:
        return np.zeros((0, 2), dtype=np.float64), np.zeros(0, dtype=np.int64)
    return np.concatenate(all_centres), np.concatenate(all_labels)


# ----------------------------------------------------------------------------------------------
# split and class balancing
# ----------------------------------------------------------------------------------------------
def balanced_resample(
    labels,
    per_class: int,
    rng: np.random.Generator,
    *,
    classes=None,
    shuffle: bool = True,
) -> np.ndarray:
    """Class-balanced resampling with replacement: exactly ``per_class`` indices per class.

    Parameters
    ----------
    labels : (N,) class label of each available patch.
    per_class : patches drawn per class (n_s; 1200 in the thesis, Sect. 6.1.2).
    rng : numpy random generator.
    classes : classes to draw (default: every label present); a class without patches is an error.
    shuffle : shuffle the result (otherwise grouped by class in increasing order).

    Returns
    -------
    (n_classes * per_class,) int64 indices into ``labels``.
    """
    labels = np.asarray(labels).ravel()
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    wanted = np.unique(labels) if classes is None else np.unique(np.asarray(classes))
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    out = []
    for cls in wanted.tolist():
        lo = np.searchsorted(sorted_labels, cls, side="left")
        hi = np.searchsorted(sorted_labels, cls, side="right")
        if hi <= lo:
            raise CortexgraphError(
                f"class {cls} has no patches to resample from",
                fix="drop it from `classes` or add annotated sections of this area",
            )
        out.append(order[lo + rng.integers(0, hi - lo, size=per_class)])
    indices = np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)
    if shuffle:
        rng.shuffle(indices)
    return indices


def sampling_ratios(labels, per_class: int) -> dict[int, float]:
    """Sampling ratio ``r_A = n_s / n_A`` of every class (thesis Sect. 6.1.2)."""
    values, counts = np.unique(np.asarray(labels).ravel(), return_counts=True)
    return {v: per_class / float(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}


def median_class_count(labels) -> int:
    """The ``n_s`` that makes the median sampling ratio one: the median patches per class.

    The thesis picks n_s "such that the median sampling ratio ... is close to one" (Sect. 6.1.2).
    """
    _, counts = np.unique(np.asarray(labels).ravel(), return_counts=True)
    if counts.size == 0:
        raise ValueError("no labels")
    return max(1, int(round(float(np.median(counts)))))
