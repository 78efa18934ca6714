"""Patch centres, orientation normalisation, patch extraction and augmentation for LSM training.

* Class-balanced sampling (Schiffer, PhD thesis, Sect. 5.1.2 and Fig. 5.3): a pixel of the training ROIs is drawn as a
  patch centre with probability inversely proportional to the frequency of its class in the ROIs, so
  each class present is drawn equally often (25 % each with 4 classes). We draw *exactly* ``n // K``
  centres per present class (the remainder goes to randomly chosen classes), uniformly within the
  class, pooled over the training sections.
* Orientation normalisation (Schiffer et al. 2021, NeuroImage, Sect. 2.5; thesis Sect. 5.1.3): patches are rotated so that
  their upper border points to the superior part of the brain, at training and prediction time. This
  is a property of the section (where "superior" lies in the image), not of the local cortex; we follow
  the paper and snap the rotation to a multiple of 90 degrees (so prediction can rotate whole sections
  exactly, :func:`superior_rot90`); the remaining deviation is covered by the random rotation.
* Augmentation (NeuroImage paper Sect. 2.5, "Data augmentation"; thesis Sect. 5.1.3): rotation theta ~ U[-45, 45] degrees (the thesis prints
  U[-pi/4, -pi/4], a typo); intensities x in [0, 1] -> alpha x^gamma + beta with alpha ~ U[0.9, 1.1],
  beta ~ U[-0.2, 0.2], gamma ~ U[0.8, 1.214], one draw per patch. Clipping is not stated: we clip the
  result to [0, 1].

Angle convention (same as ``cortexgraph.data.raster.Raster.read_patch``): a patch rotated by ``a``
(radians, counter-clockwise in the image) has its "up" direction along image vector
``(dx, dy) = (-sin a, -cos a)`` (x along columns, y down along rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

IGNORE_LABEL = -100
"""Label of target pixels outside the image (ignored by the loss)."""


# --------------------------------------------------------------------------------------------------
# balanced centres


def class_balanced_probabilities(
    class_image: np.ndarray, roi: np.ndarray, n_classes: int = 4
) -> np.ndarray:
    """Per-pixel sampling probability inside the ROI, inversely proportional to the class frequency.

    Returns a float64 map summing to 1 over the ROI (0 outside); every class present in the ROI gets the
    same total probability ``1 / K`` (thesis Fig. 5.3).
    """
    class_image = np.asarray(class_image)
    roi = np.asarray(roi, dtype=bool)
    counts = np.bincount(class_image[roi].ravel(), minlength=n_classes)[:n_classes]
    present = counts > 0
    prob = np.zeros(class_image.shape, dtype=np.float64)
    if not present.any():
        return prob
    per_pixel = np.zeros(n_classes)
    per_pixel[present] = 1.0 / (present.sum() * counts[present])
    valid = roi & (class_image >= 0) & (class_image < n_classes)
    prob[valid] = per_pixel[class_image[valid]]
    return prob


def sample_balanced_centres_sections(
    class_images: Sequence[np.ndarray],
    rois: Sequence[np.ndarray],
    n: int,
    rng: np.random.Generator,
    n_classes: int = 4,
) -> np.ndarray:
    """Class-balanced patch centres pooled over several training sections.

    Parameters
    ----------
    class_images : per section, (rows, cols) int class image (0 bg, 1 wm, 2 other cortex, 3 area).
    rois : per section, (rows, cols) bool training ROI.
    n : number of centres.
    rng : numpy Generator.
    n_classes : number of classes.

    Returns
    -------
    (n, 3) int64 array of (section index, row, col). Each class present in the ROIs gets exactly
    ``n // K`` centres (K = number of present classes), the ``n % K`` remaining ones go to distinct
    randomly chosen classes; within a class all ROI pixels of all sections are equally likely
    (drawn with replacement). Rows are in random order.
    """
    return draw_balanced_centres(class_pools(class_images, rois, n_classes), n, rng)


def class_pools(
    class_images: Sequence[np.ndarray], rois: Sequence[np.ndarray], n_classes: int = 4
) -> list[np.ndarray | None]:
    """Per class, the (m, 3) int64 array of (section index, row, col) of its ROI pixels (None when
    the class is absent). Computed once per training run; see :func:`draw_balanced_centres`."""
    if len(class_images) != len(rois):
        raise ValueError("need one ROI per class image")
    per_class: list[list[np.ndarray]] = [[] for _ in range(n_classes)]
    for index, (classes, roi) in enumerate(zip(class_images, rois, strict=True)):
        classes = np.asarray(classes)
        roi = np.asarray(roi, dtype=bool)
        if classes.shape != roi.shape:
            raise ValueError(f"class image {classes.shape} and ROI {roi.shape} differ in shape")
        rows, cols = np.nonzero(roi)
        labels = classes[rows, cols]
        for k in range(n_classes):
            sel = labels == k
            if sel.any():
                per_class[k].append(
                    np.stack([np.full(sel.sum(), index), rows[sel], cols[sel]], axis=1)
                )
    return [np.concatenate(p).astype(np.int64) if p else None for p in per_class]


def draw_balanced_centres(
    pools: Sequence[np.ndarray | None], n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` centres from :func:`class_pools`: ``n // K`` per present class (the remainder to distinct
    random classes), uniform within a class, in random order; (n, 3) int64."""
    n_classes = len(pools)
    present = [k for k in range(n_classes) if pools[k] is not None]
    if not present:
        raise ValueError("the ROIs contain no labelled pixel")
    counts = np.full(len(present), n // len(present))
    extra = rng.choice(len(present), size=n % len(present), replace=False)
    counts[extra] += 1
    chosen = []
    for k, count in zip(present, counts, strict=True):
        pool = pools[k]
        assert pool is not None  # k is a present class
        chosen.append(pool[rng.integers(0, len(pool), size=int(count))])
    out = np.concatenate(chosen).astype(np.int64)
    return out[rng.permutation(len(out))]


def sample_balanced_centres(
    class_image: np.ndarray,
    roi: np.ndarray,
    n: int,
    rng: np.random.Generator,
    n_classes: int = 4,
) -> np.ndarray:
    """Class-balanced patch centres on one section: (n, 2) int64 (row, col); see
    :func:`sample_balanced_centres_sections`."""
    return sample_balanced_centres_sections([class_image], [roi], n, rng, n_classes)[:, 1:]


# --------------------------------------------------------------------------------------------------
# orientation


def superior_angle(superior_xy: Sequence[float] | np.ndarray, snap_90: bool = True) -> float:
    """Patch rotation (radians, read_patch convention) that makes the patch's up point superior.

    Parameters
    ----------
    superior_xy : direction of "superior" in the section image, (dx, dy) with y down the rows.
    snap_90 : round to a multiple of 90 degrees (the paper's choice, used by default).
    """
    dx, dy = float(superior_xy[0]), float(superior_xy[1])
    if dx == 0.0 and dy == 0.0:
        raise ValueError("superior direction must be non-zero")
    angle = float(np.arctan2(-dx, -dy))
    if snap_90:
        angle = float(np.round(angle / (np.pi / 2)) * (np.pi / 2))
    return angle


def superior_rot90(superior_xy: Sequence[float]) -> int:
    """``k`` such that ``np.rot90(image, k)`` puts superior at the top of the image (0..3)."""
    quarter = int(np.round(superior_angle(superior_xy) / (np.pi / 2)))
    return (-quarter) % 4


# --------------------------------------------------------------------------------------------------
# patch extraction


def array_window(image: np.ndarray):
    """``f(row0, col0, rows, cols, fill) -> window`` of an in-memory image (:func:`read_window`), the
    window reader :func:`extract_patch` takes."""

    def window(row0: int, col0: int, rows: int, cols: int, fill_value) -> np.ndarray:
        return read_window(image, row0, col0, rows, cols, fill_value)

    return window


def extract_patch(
    image: np.ndarray | Callable[..., np.ndarray],
    centre_rc: Sequence[float] | np.ndarray,
    size_px: int,
    scale: float = 1.0,
    angle_rad: float = 0.0,
    *,
    order: int = 1,
    fill: float = 0.0,
) -> np.ndarray:
    """Square patch of an image, centred at a (continuous) pixel position.

    Parameters
    ----------
    image : (rows, cols) array, or a window reader ``f(row0, col0, rows, cols, fill) -> array`` of
        any image (in memory, :func:`array_window`, or chunked on disk) that returns a window of it
        (pixels outside it set to ``fill``); only the window under the (rotated) patch is
        requested, so a lazily read raster touches only the chunks it needs.
    centre_rc : centre in pixel coordinates of ``image`` (pixel centres at integers; the centre of
        pixel (i, j) is (i, j)).
    size_px : patch edge in output pixels.
    scale : image pixels per output pixel (output spacing / image spacing).
    angle_rad : rotation (read_patch convention).
    order : 1 bilinear (intensities, Gaussian pre-filter sigma = 0.5 scale when scale > 1),
        0 nearest neighbour (labels).
    fill : value outside the image.

    Returns
    -------
    (size_px, size_px) array (float32 for order 1, the image dtype for order 0). Output pixel (r, c) is
    sampled at offset ``((r - (n-1)/2), (c - (n-1)/2)) * scale`` from the centre, rotated by the angle.
    """
    read_window_fn = image if callable(image) else array_window(np.asarray(image))
    n = int(size_px)
    cr, cc = float(centre_rc[0]), float(centre_rc[1])
    half = (n - 1) / 2.0
    r_first, c_first = cr - half * scale, cc - half * scale
    if (
        angle_rad == 0.0
        and abs(scale - 1.0) < 1e-12
        and abs(r_first - round(r_first)) < 1e-9
        and abs(c_first - round(c_first)) < 1e-9
    ):
        out = read_window_fn(int(round(r_first)), int(round(c_first)), n, n, fill)
        return out.astype(np.float32) if order else out
    reach = 0.5 * np.hypot(n, n) * scale + 3
    r0, c0 = int(np.floor(cr - reach)), int(np.floor(cc - reach))
    size = int(np.ceil(2 * reach)) + 1
    window = read_window_fn(r0, c0, size, size, fill)
    if order:
        window = window.astype(np.float32)
        if scale > 1.0:
            window = ndimage.gaussian_filter(window, 0.5 * scale)
    rr, cc_ = np.mgrid[0:n, 0:n].astype(np.float64)
    dr, dc = (rr - half) * scale, (cc_ - half) * scale
    cos_a, sin_a = np.cos(angle_rad), np.sin(angle_rad)
    src_r = cr - sin_a * dc + cos_a * dr - r0
    src_c = cc + cos_a * dc + sin_a * dr - c0
    if order == 0:
        ri = np.floor(src_r + 0.5).astype(np.int64)
        ci = np.floor(src_c + 0.5).astype(np.int64)
        inside = (ri >= 0) & (ri < size) & (ci >= 0) & (ci < size)
        out = np.full((n, n), fill, dtype=window.dtype)
        out[inside] = window[ri[inside], ci[inside]]
        return out
    return ndimage.map_coordinates(
        window, [src_r, src_c], order=1, mode="constant", cval=fill
    ).astype(np.float32)


def read_window(
    image: np.ndarray, row0: int, col0: int, rows: int, cols: int, fill=0
) -> np.ndarray:
    """``rows x cols`` window of ``image`` starting at (row0, col0); pixels outside are ``fill``."""
    height, width = image.shape[:2]
    dtype = np.result_type(image.dtype, np.min_scalar_type(fill)) if fill != 0 else image.dtype
    out = np.full((rows, cols) + image.shape[2:], fill, dtype=dtype)
    r_lo, r_hi = max(row0, 0), min(row0 + rows, height)
    c_lo, c_hi = max(col0, 0), min(col0 + cols, width)
    if r_lo < r_hi and c_lo < c_hi:
        out[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = image[r_lo:r_hi, c_lo:c_hi]
    return out


# --------------------------------------------------------------------------------------------------
# augmentation


@dataclass(frozen=True)
class Augmentation:
    """One patch's augmentation: rotation (radians) and intensity map alpha x^gamma + beta."""

    angle_rad: float = 0.0
    alpha: float = 1.0
    beta: float = 0.0
    gamma: float = 1.0


def draw_augmentation(
    rng: np.random.Generator,
    rotation_deg: float = 45.0,
    alpha_range: tuple[float, float] = (0.9, 1.1),
    beta_range: tuple[float, float] = (-0.2, 0.2),
    gamma_range: tuple[float, float] = (0.8, 1.214),
) -> Augmentation:
    """Draw theta ~ U[-rotation_deg, rotation_deg] and alpha, beta, gamma from their ranges."""
    return Augmentation(
        angle_rad=float(np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))),
        alpha=float(rng.uniform(*alpha_range)),
        beta=float(rng.uniform(*beta_range)),
        gamma=float(rng.uniform(*gamma_range)),
    )


def intensity_transform(
    x: np.ndarray, alpha: float, beta: float, gamma: float, clip: bool = True
) -> np.ndarray:
    """``alpha * x**gamma + beta`` for intensities ``x`` in [0, 1] (float32), clipped to [0, 1]."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    y = alpha * np.power(x, gamma, dtype=np.float32) + beta
    return np.clip(y, 0.0, 1.0).astype(np.float32) if clip else y.astype(np.float32)
