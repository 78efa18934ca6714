"""Where the two hemispheres of a reconstructed tissue volume meet, and whether there are two.

The functions take the tissue volume (uint8 classes, :mod:`cortexgraph.reconstruct.clean`) and its
4x4 voxel -> world mm affine (RAS); world x is left-right.
"""


from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from cortexgraph.reconstruct.clean import (
    GRAY,
)

log = logging.getLogger(__name__)

#: how far from the tissue's centre of mass (mm) the fissure is searched
SEARCH_MM = 25.0


def _per_plane(tissue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tissue voxels and gray-matter voxels in each sagittal plane (axis 0 of ``tissue``)."""
    counts = (tissue > 0).sum(axis=(1, 2)).astype(np.float64)
    return counts, (tissue == GRAY).sum(axis=(1, 2)).astype(np.float64)


def tissue_per_plane(counts: np.ndarray, voxel_mm: float, smooth_mm: float = 2.0) -> np.ndarray:
    """Tissue voxels per sagittal plane (``counts``), Gaussian-smoothed over ``smooth_mm`` (sigma)
    so that a single folded gyrus does not make a dip of its own."""
    return ndimage.gaussian_filter1d(counts, sigma=max(smooth_mm / voxel_mm, 0.5))


def fissure_dip(profile: np.ndarray) -> np.ndarray:
    """Per plane, the tissue of the plane relative to the smaller of the largest planes on its two
    sides (``profile[i] / min(max(profile[:i+1]), max(profile[i:]))``; 1 where one side holds no
    tissue). A plane between two hemispheres lies in a valley of the profile (below 0.6 on a whole
    phantom brain, where the midline cuts the corpus callosum and brainstem; near 0 between the
    separated poles of a slab); a profile with one peak, as one hemisphere gives, is 1 everywhere.
    """
    left_max = np.maximum.accumulate(profile)
    right_max = np.maximum.accumulate(profile[::-1])[::-1]
    lesser = np.minimum(left_max, right_max)
    return np.where(lesser > 0, profile / np.where(lesser > 0, lesser, 1.0), 1.0)


def fissure_plane(
    tissue: np.ndarray, affine: np.ndarray, search_mm: float = SEARCH_MM
) -> tuple[float, float]:
    """World x (mm) of the interhemispheric fissure and its dip ratio (:func:`fissure_dip`).

    The fissure is the deepest valley of the tissue-per-plane profile (:func:`tissue_per_plane`)
    within ``search_mm`` of the tissue's centre of mass. The valley, not the plane with the least
    gray matter: at the resolution of a reconstruction (0.3-1.2 mm) the medial cortices of the two
    hemispheres touch, so the fissure plane can hold more gray matter than its neighbours, and on a
    whole brain the plane with the least gray lies inside a hemisphere. Without a valley (ratio 1,
    one hemisphere), the plane near the centre that cuts the least gray matter is returned (the
    search then stops at, or outside, the medial face of the hemisphere).
    """
    counts, gray = _per_plane(tissue)
    index, ratio = _fissure_index(counts, gray, float(affine[0, 0]), search_mm)
    return float(affine[0, 0] * index + affine[0, 3]), ratio


def _fissure_index(
    counts: np.ndarray, gray: np.ndarray, voxel_mm: float, search_mm: float
) -> tuple[int, float]:
    """:func:`fissure_plane` on the per-plane counts: (plane index, dip ratio)."""
    profile = tissue_per_plane(counts, voxel_mm)
    if not profile.any():
        return 0, 1.0
    centre = float(np.sum(np.arange(len(profile)) * profile) / profile.sum())
    half = int(round(search_mm / voxel_mm))
    lo = max(int(round(centre)) - half, 0)
    hi = min(int(round(centre)) + half + 1, len(profile))
    dip = fissure_dip(profile)[lo:hi]
    if dip.min() < 1.0 - 1e-6:
        return lo + int(np.argmin(dip)), float(dip.min())
    least_gray = ndimage.gaussian_filter1d(gray, sigma=max(1.0 / voxel_mm, 0.5))
    return lo + int(np.argmin(least_gray[lo:hi])), 1.0


def interhemispheric_x_mm(tissue: np.ndarray, affine: np.ndarray, search_mm: float = SEARCH_MM) -> float:
    """World x of the interhemispheric fissure (:func:`fissure_plane`)."""
    return fissure_plane(tissue, affine, search_mm)[0]


def find_hemispheres(
    tissue: np.ndarray,
    affine: np.ndarray,
    min_hemisphere_fraction: float = 0.2,
    max_fissure_tissue_ratio: float = 0.8,
) -> tuple[tuple[str, ...], float, dict]:
    """Whether a reconstructed brain holds both hemispheres, and where they meet.

    The candidate plane is :func:`fissure_plane`. It is the fissure between two hemispheres when
    (1) each side holds at least ``min_hemisphere_fraction`` of the cortex and (2) the plane lies in
    a valley of the tissue-per-plane profile: it holds at most ``max_fissure_tissue_ratio`` of the
    tissue of the larger planes on either side (:func:`fissure_dip`). Otherwise the brain holds one
    hemisphere, and the plane returned is its medial face: the end of the tissue nearer the widest
    sagittal plane (``rh`` when that end lies left, world x being RAS, else ``lh``). The tissue
    alone cannot always tell which hemisphere it is, so declare ``hemispheres`` in brain.toml.

    Measured on the phantom (``benchmarks/bench_hemispheres.py``; 2 mm smoothing): dip ratios
    0.16-0.23 between the hemispheres of the tiny preset's posterior slabs (1.2 mm voxels), 0.32-0.59
    on whole brains (1.2 mm voxels, four seeds; 0.57 on the full preset at 0.3 mm: the plane cuts the
    corpus callosum and brainstem); a single hemisphere has one peak, 1.0 (analytic brains in the
    tests); hence the default 0.8.

    Returns ``(hemispheres, plane x mm, measures)``; measures: ``cortex_left_fraction``,
    ``fissure_tissue_ratio`` (the dip ratio) and, for one hemisphere, ``medial_face_x_mm``.
    """
    counts, gray_per_x = _per_plane(tissue)
    voxel_mm = float(affine[0, 0])
    index, ratio = _fissure_index(counts, gray_per_x, voxel_mm, SEARCH_MM)
    midline = float(affine[0, 0] * index + affine[0, 3])
    x_mm = affine[0, 0] * np.arange(len(gray_per_x)) + affine[0, 3]
    total = gray_per_x.sum()
    left = float(gray_per_x[x_mm < midline].sum() / total) if total else 0.0
    both = min(left, 1.0 - left) >= min_hemisphere_fraction and ratio <= max_fissure_tissue_ratio
    measures = {"cortex_left_fraction": left, "fissure_tissue_ratio": ratio}
    if both:
        return ("lh", "rh"), midline, measures
    hemisphere, medial_x = _one_hemisphere(counts, tissue_per_plane(counts, voxel_mm), affine)
    measures["medial_face_x_mm"] = medial_x
    return (hemisphere,), medial_x, measures


def _one_hemisphere(
    counts: np.ndarray, profile: np.ndarray, affine: np.ndarray
) -> tuple[str, float]:
    """Which hemisphere a brain of one is, and the world x of its medial face: the flat medial face
    is the end of the tissue (``counts`` per plane) nearer the widest plane of the smoothed
    ``profile`` (a hemisphere narrows slowly towards its lateral convexity), ``rh`` when that end
    lies left (world x being RAS)."""
    planes = np.flatnonzero(counts)
    if len(planes) == 0:
        return "lh", float(affine[0, 3])
    first, last = int(planes[0]), int(planes[-1])
    widest = first + int(np.argmax(profile[first : last + 1]))
    medial_index, hemisphere = (first, "rh") if widest - first < last - widest else (last, "lh")
    return hemisphere, float(affine[0, 0] * medial_index + affine[0, 3])
