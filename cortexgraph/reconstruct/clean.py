"""Cleaning of the stacked tissue volume (Schiffer, PhD thesis, Sect. 7.1.1).

* :func:`fill_defects` — median of size 3 along the posterior-anterior axis (y, axis 1); the voxels where
  it differs from the input mark defects; connected components of that difference larger than
  ``min_defect_mm3`` (tears, missing pieces, missing sections) are replaced by the median result, small
  ones (ordinary boundary wiggle) are left alone.
* :func:`remove_detached_tissue` — tissue components smaller than 1% of the largest are set to background.
* :func:`exclude_noncortical` — gray matter that is not cortex (deep nuclei, cerebellum) is removed, with a
  user's exclusion mask or automatically (:func:`automatic_noncortical_mask`).

Excluded voxels become background; background pockets enclosed by tissue afterwards (the place of a deep
nucleus inside the white matter) become white matter, so that the Laplace problem sees no false pial
boundary inside the brain.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKGROUND, WHITE, GRAY = 0, 1, 2
_FULL = ndimage.generate_binary_structure(3, 3)


def fill_empty_planes(volume: np.ndarray, max_gap_planes: int = 3) -> tuple[np.ndarray, dict]:
    """Fill runs of empty y planes (missing sections) from the nearest non-empty plane.

    A run of at most ``max_gap_planes`` planes without any tissue, with tissue on both sides, takes the
    nearer neighbour plane (ties: the posterior one). The size-3 median of :func:`fill_defects` fills
    one missing plane but not two or more consecutive ones. Longer gaps stay empty.

    Returns the filled volume and ``{"empty_planes", "planes_filled", "open_runs"}``; ``open_runs``
    lists the ``[first, last]`` planes of the runs left empty between planes with tissue (the
    surface is cut there).
    """
    has_tissue = (volume != BACKGROUND).any(axis=(0, 2))
    out = volume.copy()
    empty = np.flatnonzero(~has_tissue)
    filled = 0
    open_runs = []
    runs = np.split(empty, np.flatnonzero(np.diff(empty) > 1) + 1) if len(empty) else []
    for run in runs:
        lo, hi = int(run[0]) - 1, int(run[-1]) + 1
        if lo < 0 or hi >= volume.shape[1]:
            continue
        if len(run) > max_gap_planes:
            open_runs.append([int(run[0]), int(run[-1])])
            continue
        for j in run:
            source = lo if (j - lo) <= (hi - j) else hi
            out[:, j, :] = volume[:, source, :]
            filled += 1
    return out, {"empty_planes": int(len(empty)), "planes_filled": filled, "open_runs": open_runs}


def fill_defects(
    volume: np.ndarray, voxel_size_mm: float, min_defect_mm3: float = 1.0
) -> tuple[np.ndarray, dict]:
    """Fill large defects with the size-3 median along y (axis 1).

    Returns the filled volume and ``{"defect_components", "voxels_replaced"}``.
    """
    median = ndimage.median_filter(volume, size=(1, 3, 1), mode="nearest")
    differs = median != volume
    labels, count = ndimage.label(differs, structure=_FULL)
    if count == 0:
        return volume.copy(), {"defect_components": 0, "voxels_replaced": 0}
    sizes = np.bincount(labels.ravel())
    min_voxels = min_defect_mm3 / voxel_size_mm**3
    keep = sizes >= min_voxels
    keep[0] = False
    large = np.flatnonzero(keep)
    replace = keep[labels]  # a look-up per voxel (np.isin would sort the whole label volume)
    out = volume.copy()
    out[replace] = median[replace]
    return out, {"defect_components": int(len(large)), "voxels_replaced": int(replace.sum())}


def small_components(mask: np.ndarray, min_fraction: float) -> tuple[np.ndarray, int, int]:
    """The 26-connected components of ``mask`` smaller than ``min_fraction`` of the largest.

    Returns (bool mask of those components, number of components, number of small ones).
    """
    labels, count = ndimage.label(mask, structure=_FULL)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool), int(count), 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    is_small = (sizes > 0) & (sizes < min_fraction * sizes.max())
    return is_small[labels], int(count), int(is_small.sum())


def remove_detached_tissue(
    volume: np.ndarray, min_fraction: float = 0.01
) -> tuple[np.ndarray, dict]:
    """Set tissue components smaller than ``min_fraction`` of the largest to background."""
    drop, count, removed = small_components(volume > 0, min_fraction)
    out = volume.copy()
    out[drop] = BACKGROUND
    return out, {
        "components": count,
        "components_removed": removed,
        "voxels_removed": int(drop.sum()),
    }


def automatic_noncortical_mask(
    volume: np.ndarray,
    voxel_size_mm: float,
    max_cortex_thickness_mm: float = 5.0,
    grow_mm: float = 2.0,
) -> np.ndarray:
    """Gray matter that cannot be cortex because it is too thick.

    Cortex is a sheet at most ~4.5 mm thick in a fresh brain (less after histological shrinkage) between
    the pial surface (background) and the white matter, so for a cortical voxel ``d_background +
    d_white`` (Euclidean distances in mm) is at most about its thickness.
    Gray voxels where this sum exceeds ``max_cortex_thickness_mm`` are seed voxels (deep nuclei far from the
    surface, cerebellar gray matter far from white matter); the seed voxels are grown by at most ``grow_mm`` (whole voxels) inside the
    gray matter (geodesic dilation) to take the rims of those structures. The defaults (5 mm, 2 mm) were
    chosen on the demo phantom (docs/build-graph.md: >= 95% of the non-cortical gray matter removed,
    about 1% of the cortex beyond one mask voxel of the true border).

    Returns a bool mask of the voxels judged non-cortical.
    """
    gray = volume == GRAY
    sampling = (voxel_size_mm,) * 3
    d_background = ndimage.distance_transform_edt(volume != BACKGROUND, sampling=sampling)
    d_white = ndimage.distance_transform_edt(volume != WHITE, sampling=sampling)
    seeds = gray & (d_background + d_white > max_cortex_thickness_mm)
    steps = int(np.floor(grow_mm / voxel_size_mm + 1e-9))  # whole voxels, at most grow_mm
    if steps > 0 and seeds.any():
        seeds = ndimage.binary_dilation(
            seeds, structure=ndimage.generate_binary_structure(3, 1), iterations=steps, mask=gray
        )
    return seeds


def exclude_noncortical(volume: np.ndarray, exclusion: np.ndarray) -> tuple[np.ndarray, dict]:
    """Remove excluded gray matter; enclosed background pockets become white matter.

    Parameters
    ----------
    volume : tissue classes.
    exclusion : bool mask on the same grid (user mask resampled, or :func:`automatic_noncortical_mask`).
    """
    out = volume.copy()
    remove = exclusion & (volume == GRAY)
    out[remove] = BACKGROUND
    background = out == BACKGROUND
    labels, count = ndimage.label(background, structure=ndimage.generate_binary_structure(3, 1))
    border = np.unique(
        np.concatenate(
            [
                labels[0].ravel(),
                labels[-1].ravel(),
                labels[:, 0].ravel(),
                labels[:, -1].ravel(),
                labels[:, :, 0].ravel(),
                labels[:, :, -1].ravel(),
            ]
        )
    )
    touches_border = np.zeros(count + 1, dtype=bool)
    touches_border[border] = True
    enclosed = background & ~touches_border[labels]
    out[enclosed] = WHITE
    return out, {
        "voxels_excluded": int(remove.sum()),
        "voxels_enclosed_to_white": int(enclosed.sum()),
    }


def resample_mask_to_grid(
    mask: np.ndarray, mask_affine: np.ndarray, shape: tuple[int, int, int], affine: np.ndarray
) -> np.ndarray:
    """Nearest-neighbour resampling of a mask (any grid, world mm affine) onto ``(shape, affine)``.

    Works one y plane at a time, so the temporary index arrays stay the size of one plane.
    """
    to_mask = np.linalg.inv(mask_affine) @ affine  # target voxel -> mask voxel
    ii, kk = np.meshgrid(np.arange(shape[0]), np.arange(shape[2]), indexing="ij")
    plane = np.column_stack([ii.ravel(), np.zeros(ii.size), kk.ravel()]).astype(np.float64)
    base = plane @ to_mask[:3, :3].T + to_mask[:3, 3]
    step = to_mask[:3, 1]
    bounds = np.array(mask.shape)
    out = np.zeros(shape, dtype=bool)
    for j in range(shape[1]):
        source = np.rint(base + j * step).astype(np.int64)
        inside = np.all((source >= 0) & (source < bounds), axis=1)
        values = np.zeros(len(source), dtype=bool)
        values[inside] = mask[source[inside, 0], source[inside, 1], source[inside, 2]] > 0
        out[:, j, :] = values.reshape(shape[0], shape[2])
    return out
