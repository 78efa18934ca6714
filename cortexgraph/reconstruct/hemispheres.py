"""Where the two hemispheres of a reconstructed tissue volume meet, and whether there are two.

Both functions take the tissue volume (uint8 classes, :mod:`cortexgraph.reconstruct.clean`) and its
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


def interhemispheric_x_mm(tissue: np.ndarray, affine: np.ndarray, search_mm: float = 25.0) -> float:
    """World x of the interhemispheric fissure: the sagittal plane near the tissue's centre that cuts
    the least cortex (the medial cortex lies parallel to the fissure, the fissure itself is empty).

    The profile of gray voxels per sagittal plane is smoothed over ~2 mm and its minimum is searched
    within ``search_mm`` of the centre of mass of the tissue.
    """
    voxel_mm = float(affine[0, 0])
    gray_per_x = (tissue == GRAY).sum(axis=(1, 2)).astype(np.float64)
    tissue_per_x = (tissue > 0).sum(axis=(1, 2)).astype(np.float64)
    centre = float(np.sum(np.arange(len(tissue_per_x)) * tissue_per_x) / tissue_per_x.sum())
    profile = ndimage.gaussian_filter1d(gray_per_x, sigma=max(1.0 / voxel_mm, 0.5))
    half = int(round(search_mm / voxel_mm))
    lo = max(int(round(centre)) - half, 0)
    hi = min(int(round(centre)) + half + 1, len(profile))
    x_index = lo + int(np.argmin(profile[lo:hi]))
    return float(affine[0, 0] * x_index + affine[0, 3])


def find_hemispheres(
    tissue: np.ndarray,
    affine: np.ndarray,
    min_hemisphere_fraction: float = 0.2,
    max_fissure_tissue_ratio: float = 0.35,
) -> tuple[tuple[str, ...], float, dict]:
    """Whether a reconstructed brain holds both hemispheres, and where they meet.

    The candidate plane is :func:`interhemispheric_x_mm`. It is the fissure between two hemispheres
    when (1) each side holds at least ``min_hemisphere_fraction`` of the cortex and (2) the plane
    crosses a gap in the tissue: within two voxels of it a sagittal plane holds at most
    ``max_fissure_tissue_ratio`` of the median tissue of the planes through the brain (the fissure
    is nearly empty; a plane through one hemisphere cuts its white and gray matter). Otherwise the
    brain holds one hemisphere: ``rh`` when (nearly) all its cortex lies right of the plane (the
    search stopped at the medial face of a right hemisphere, world x being RAS), else ``lh``; the
    tissue alone cannot always tell, so declare ``hemispheres`` in brain.toml. Measured on the tiny phantom (1.2 mm voxels): the
    fissure planes hold 0-9 % of the median tissue, with 53-55 % of the cortex on the left; with
    one hemisphere removed, the best plane lies outside the tissue (0 % of the cortex on one side).

    Returns ``(hemispheres, plane x mm, measures)``; measures: ``cortex_left_fraction`` and
    ``fissure_tissue_ratio``.
    """
    midline = interhemispheric_x_mm(tissue, affine)
    gray_per_x = (tissue == GRAY).sum(axis=(1, 2)).astype(np.float64)
    tissue_per_x = (tissue > 0).sum(axis=(1, 2)).astype(np.float64)
    x_mm = affine[0, 0] * np.arange(len(gray_per_x)) + affine[0, 3]
    total = gray_per_x.sum()
    left = float(gray_per_x[x_mm < midline].sum() / total) if total else 0.0
    index = int(np.argmin(np.abs(x_mm - midline)))
    window = tissue_per_x[max(index - 2, 0) : index + 3].min()
    median = float(np.median(tissue_per_x[tissue_per_x > 0])) if tissue_per_x.any() else 0.0
    ratio = float(window / median) if median else 1.0
    both = min(left, 1.0 - left) >= min_hemisphere_fraction and ratio <= max_fissure_tissue_ratio
    measures = {"cortex_left_fraction": left, "fissure_tissue_ratio": ratio}
    if both:
        return ("lh", "rh"), midline, measures
    return (("rh",) if left < min_hemisphere_fraction else ("lh",)), midline, measures
