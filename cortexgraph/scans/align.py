"""Rigid alignment of consecutive sections from their images (``cortexgraph align``).

Method (Schiffer 2023, PhD thesis, Univ. Düsseldorf, ch. 3, "Rigid alignment of brain sections",
after Dickscheid et al. 2019): images downscaled to 64 µm/px and median filtered; prominent features
detected in both sections, matched by k-nearest-neighbour matching with a ratio test, a robust set of
matches chosen by RANSAC and a rigid transform fitted to it by least squares. The thesis used SURF;
scikit-image offers SIFT (default here) and ORB.

Feature matching alone is not accurate enough for the target of this module (median rotation error
below 0.2° and translation error below one 64 µm pixel), and it fails on sections with few distinct
features. Every pair is therefore estimated by two independent global methods and refined:

1. **features**: SIFT (or ORB) + k-NN matching + RANSAC (:class:`skimage.transform.EuclideanTransform`)
   + least-squares rigid fit on the inliers (the thesis method);
2. **search**: an exhaustive rotation search (every ``angle_step_deg`` over ±``max_angle_deg``) at a
   coarse scale (about ``coarse_px`` pixels), the translation of each angle from the peak of an FFT
   cross-correlation; the best normalised correlation wins;
3. **refinement**: Gauss-Newton minimisation of the intensity difference (rotation, translation, and a
   gain and offset of the stain) over a Gaussian pyramid down to the working spacing, started from the
   better of 1 and 2. It reaches sub-pixel accuracy where the two sections show the same tissue.

The images are prepared the same way for all three: inverted (stain bright, glass 0), pixels below the
Otsu threshold of tissue set to 0, divided by the median tissue value (stain differences between
sections cancel), smoothed by a Gaussian of ``smooth_px``.

**Mirrored scans.** Each section is also tried flipped (``x -> width - x``): the search score of every
pair is computed with the later section as declared and flipped, and the orientation of every section
is chosen by dynamic programming over the chain (the largest sum of pair scores, a flip costing
``mirror_margin``). A section whose chosen orientation differs from ``sections.tsv`` is reported and
its pairs are flagged: a flip is applied only when it is clearly better.

**Flags.** A pair is flagged (never silently accepted) when the refined overlap correlation is below
``min_ncc`` (large residual), when the refinement lands farther than ``agree_deg`` / ``agree_px`` from
both global estimates (disagreement between methods), when neither global estimate succeeded, or when
a section of the pair was found mirrored against its declaration. Few RANSAC inliers alone is recorded
(``feature_inliers``) and flags the pair only when the search estimate disagrees as well.

Transforms follow docs/data-format.md: ``p_fixed = M @ p_moving`` in section mm of the un-mirrored
sections, moving the posterior section of each pair of consecutive available sections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from cortexgraph.data.raster import Raster
from cortexgraph.data.transforms import (
    compose_to_base,
    invert_rigid,
)
from cortexgraph.errors import DataFormatError

log = logging.getLogger(__name__)

#: a point or vector in pixels: (x, y) as a tuple, list or array
PointLike = Sequence[float] | np.ndarray

TARGET_SPACING_UM = 64.0
"""The working resolution of the thesis (µm/px); also the pixel in which errors are reported."""


@dataclass(frozen=True)
class AlignParameters:
    """Every number that changes the alignment (units in the names; px at the working spacing).

    spacing_um : working pixel spacing (the thesis: 64 µm/px). Sections stored coarser are aligned at
        their stored spacing.
    median_px : median filter size before anything else (the thesis' smoothing).
    smooth_px : Gaussian s.d. of the prepared images.
    features : ``"sift"``, ``"orb"`` or ``"none"`` (the search estimate alone).
    max_features : at most this many features per section (ORB; SIFT keeps what it finds).
    match_ratio : Lowe's ratio test of the k-NN matching.
    ransac_threshold_px : RANSAC inlier distance.
    ransac_trials : RANSAC iterations.
    min_inliers : fewer inliers = the feature estimate failed.
    coarse_px : longer side of the images of the rotation search.
    angle_step_deg, max_angle_deg : rotation search grid.
    max_iterations : Gauss-Newton iterations per pyramid level.
    robust_k : Huber threshold of the refinement in robust standard deviations of the residual
        (0 = least squares).
    min_ncc : a refined pair whose tissue overlap correlates less is flagged (large residual).
    agree_deg, agree_px : how far the refinement may move from a global estimate and still agree.
    detect_mirrored : try every section flipped.
    mirror_margin : the search score a flip must gain over the declared orientation.
    seed : RANSAC random stream.
    """

    spacing_um: float = TARGET_SPACING_UM
    median_px: int = 3
    smooth_px: float = 1.0
    features: str = "sift"
    max_features: int = 2000
    match_ratio: float = 0.8
    ransac_threshold_px: float = 3.0
    ransac_trials: int = 2000
    min_inliers: int = 8
    coarse_px: int = 160
    angle_step_deg: float = 2.0
    max_angle_deg: float = 180.0
    max_iterations: int = 40
    robust_k: float = 0.0
    min_ncc: float = 0.6
    agree_deg: float = 3.0
    agree_px: float = 12.0
    detect_mirrored: bool = True
    mirror_margin: float = 0.05
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


# -- images -----------------------------------------------------------------------------------------
@dataclass
class PreparedImage:
    """A section image ready for alignment.

    image : float32 (rows, cols), stain bright, glass 0, tissue median 1, at ``spacing_um``.
    spacing_um : its isotropic pixel spacing; pixel (i, j) has its centre at ((j + 0.5) s, (i + 0.5) s).
    extent_mm : (width_mm, height_mm) of the section canvas.
    flipped : whether the image was flipped about the vertical centre line of the canvas.
    keypoints, descriptors : features (keypoints as (x, y) pixels), or None before detection.
    """

    image: np.ndarray
    spacing_um: float
    extent_mm: tuple[float, float]
    flipped: bool
    keypoints: np.ndarray | None = None
    descriptors: np.ndarray | None = None

    @property
    def tissue(self) -> np.ndarray:
        return self.image > 0

    def centroid_px(self) -> np.ndarray:
        """(x, y) tissue centroid in pixels (the canvas centre when there is no tissue)."""
        tissue = self.tissue
        if not tissue.any():
            return np.array([self.image.shape[1] / 2.0, self.image.shape[0] / 2.0])
        rows, cols = np.nonzero(tissue)
        return np.array([cols.mean(), rows.mean()])


def read_at_spacing(raster: Raster, spacing_um: float) -> tuple[np.ndarray, float]:
    """A section image resampled onto an isotropic grid of ``spacing_um`` covering its canvas.

    The finest pyramid level not finer than needed is read (``level_for_spacing``); when its spacing
    is finer than ``spacing_um`` it is smoothed (anti-aliasing, s.d. 0.5 x the ratio) and sampled at
    the pixel centres ``(j + 0.5) spacing_um``. A raster stored coarser than ``spacing_um`` is
    returned as stored. Returns (float32 image, spacing_um of the result).
    """
    levels = raster.levels
    finer = [level for level in levels if level.spacing_um <= spacing_um * (1 + 1e-6)]
    level = max(finer, key=lambda lv: lv.spacing_um) if finer else levels[0]
    data = raster.read_level(level.index).astype(np.float32)
    if data.ndim == 3:
        data = data.mean(axis=2)
    if level.spacing_um >= spacing_um * (1 - 1e-6):
        return data, float(level.spacing_um)
    ratio = spacing_um / level.spacing_um
    width_mm, height_mm = raster.extent_mm
    shape = (
        max(1, int(round(height_mm * 1000 / spacing_um))),
        max(1, int(round(width_mm * 1000 / spacing_um))),
    )
    smooth = ndimage.gaussian_filter(data, 0.5 * ratio)
    rows = (np.arange(shape[0]) + 0.5) * ratio - 0.5
    cols = (np.arange(shape[1]) + 0.5) * ratio - 0.5
    out = ndimage.map_coordinates(
        smooth, np.meshgrid(rows, cols, indexing="ij"), order=1, mode="nearest"
    )
    return out.astype(np.float32), float(spacing_um)


def prepare_image(
    raw: np.ndarray,
    spacing_um: float,
    extent_mm: tuple[float, float],
    params: AlignParameters,
    *,
    flipped: bool = False,
) -> PreparedImage:
    """Invert, threshold, normalise and smooth a section image (module docstring)."""
    from skimage.filters import threshold_otsu

    image = np.asarray(raw, dtype=np.float32)
    if flipped:
        image = image[:, ::-1]
    if params.median_px > 1:
        image = ndimage.median_filter(image, size=params.median_px)
    glass = float(np.percentile(image, 99.5))
    stain = np.clip(glass - image, 0.0, None)
    if stain.max() <= 0:
        return PreparedImage(np.zeros_like(stain), spacing_um, extent_mm, flipped)
    threshold = float(threshold_otsu(stain))
    tissue = stain > threshold
    prepared = np.where(tissue, stain, 0.0)
    if tissue.any():
        prepared /= float(np.median(prepared[tissue]))
    if params.smooth_px > 0:
        prepared = ndimage.gaussian_filter(prepared, params.smooth_px)
        prepared[prepared < 1e-3] = 0.0
    return PreparedImage(
        np.ascontiguousarray(prepared, dtype=np.float32), spacing_um, extent_mm, flipped
    )


def detect_features(prepared: PreparedImage, params: AlignParameters) -> None:
    """Fill ``keypoints`` ((x, y) px) and ``descriptors`` with SIFT or ORB features (empty when none)."""
    from skimage.feature import ORB, SIFT

    image = prepared.image
    empty = (np.zeros((0, 2)), np.zeros((0, 1)))
    if params.features == "none" or not prepared.tissue.any():
        prepared.keypoints, prepared.descriptors = empty
        return
    scaled = image / max(float(image.max()), 1e-6)
    detector: ORB | SIFT
    try:
        if params.features == "orb":
            detector = ORB(n_keypoints=params.max_features, fast_threshold=0.05)
        elif params.features == "sift":
            detector = SIFT(upsampling=1)
        else:
            raise ValueError(f"unknown feature detector {params.features!r}; use sift, orb or none")
        detector.detect_and_extract(scaled)
        keypoints = np.asarray(detector.keypoints, dtype=np.float64)[:, ::-1]
        prepared.keypoints, prepared.descriptors = keypoints, detector.descriptors
    except RuntimeError:  # skimage raises when no feature survives
        prepared.keypoints, prepared.descriptors = empty


# -- rigid transforms in pixels ---------------------------------------------------------------------
def rigid_px(angle_rad: float, shift_px: PointLike, centre_px: PointLike) -> np.ndarray:
    """3x3 matrix (x, y pixels) of a rotation by ``angle_rad`` about ``centre_px``, then a shift."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    rot = np.array([[c, -s], [s, c]])
    out = np.eye(3)
    out[:2, :2] = rot
    out[:2, 2] = np.asarray(centre_px) + np.asarray(shift_px) - rot @ np.asarray(centre_px)
    return out


def params_of(matrix: np.ndarray, centre_px: PointLike) -> np.ndarray:
    """(angle_rad, shift_x, shift_y) of a rigid pixel matrix about ``centre_px`` (inverse of
    :func:`rigid_px`)."""
    angle = float(np.arctan2(matrix[1, 0], matrix[0, 0]))
    centre = np.asarray(centre_px, dtype=np.float64)
    shift = matrix[:2, :2] @ centre + matrix[:2, 2] - centre
    return np.array([angle, shift[0], shift[1]])


def px_to_mm_matrix(matrix_px: np.ndarray, spacing_um: float) -> np.ndarray:
    """A pixel-space transform (x = column, y = row at ``spacing_um``) in section mm."""
    s = spacing_um / 1000.0
    scale = np.array([[s, 0.0, 0.5 * s], [0.0, s, 0.5 * s], [0.0, 0.0, 1.0]])
    out = scale @ matrix_px @ np.linalg.inv(scale)
    out[2] = (0.0, 0.0, 1.0)
    return out


def angle_deg(matrix: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))


def matrix_difference(a: np.ndarray, b: np.ndarray, point: PointLike) -> tuple[float, float]:
    """(rotation difference in degrees, distance between the images of ``point``) of two transforms."""
    rel = a @ invert_rigid(b)
    p = np.array([point[0], point[1], 1.0])
    return abs(angle_deg(rel)), float(np.hypot(*((a @ p) - (b @ p))[:2]))


def _warp(image: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` (moving) resampled on the grid of ``shape`` (fixed): out(x) = image(M^-1 x)."""
    inverse = np.linalg.inv(matrix)
    return ndimage.affine_transform(
        image,
        _rowcol(inverse),
        offset=_rowcol_offset(inverse),
        output_shape=shape,
        order=1,
        mode="constant",
        cval=0.0,
    )


def _rowcol(matrix: np.ndarray) -> np.ndarray:
    """The 2x2 linear part of an (x, y) matrix in (row, col) order."""
    return np.array([[matrix[1, 1], matrix[1, 0]], [matrix[0, 1], matrix[0, 0]]])


def _rowcol_offset(matrix: np.ndarray) -> np.ndarray:
    return np.array([matrix[1, 2], matrix[0, 2]])


def _downsample(image: np.ndarray, factor: int) -> np.ndarray:
    out = image
    while factor > 1:
        out = ndimage.gaussian_filter(out, 1.0)[::2, ::2]
        factor //= 2
    return out


def _common_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pad both images with zeros to the same shape (canvases of one brain differ by a pixel)."""
    rows, cols = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])

    def pad(x):
        return np.pad(x, ((0, rows - x.shape[0]), (0, cols - x.shape[1])))

    return pad(a), pad(b)


def overlap_ncc(fixed: np.ndarray, warped: np.ndarray) -> float:
    """Normalised correlation of two images over the pixels where either holds tissue."""
    region = (fixed > 0) | (warped > 0)
    if region.sum() < 16:
        return 0.0
    a, b = fixed[region], warped[region]
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


# -- estimates --------------------------------------------------------------------------------------
@dataclass
class Estimate:
    """One estimate of a pair's transform in pixels: matrix, score, and what it rests on."""

    matrix_px: np.ndarray | None
    score: float = 0.0
    matches: int = 0
    inliers: int = 0
    rms_px: float = float("nan")
    iterations: int = 0


def feature_estimate(
    moving: PreparedImage, fixed: PreparedImage, params: AlignParameters
) -> Estimate:
    """Thesis method: k-NN matching with a ratio test, RANSAC, least-squares rigid fit of the inliers."""
    from skimage.feature import match_descriptors
    from skimage.measure import ransac
    from skimage.transform import EuclideanTransform

    if moving.keypoints is None:
        detect_features(moving, params)
    if fixed.keypoints is None:
        detect_features(fixed, params)
    assert moving.keypoints is not None and fixed.keypoints is not None  # set by detect_features
    if len(moving.keypoints) < 3 or len(fixed.keypoints) < 3:
        return Estimate(None)
    metric = "hamming" if params.features == "orb" else None
    matches = match_descriptors(
        moving.descriptors,
        fixed.descriptors,
        metric=metric,
        cross_check=True,
        max_ratio=params.match_ratio,
    )
    if len(matches) < 3:
        return Estimate(None, matches=len(matches))
    src = moving.keypoints[matches[:, 0]]
    dst = fixed.keypoints[matches[:, 1]]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, inliers = ransac(
            (src, dst),
            EuclideanTransform,
            min_samples=3,
            residual_threshold=params.ransac_threshold_px,
            max_trials=params.ransac_trials,
            rng=params.seed,
        )
    count = 0 if inliers is None else int(inliers.sum())
    if count < 3:
        return Estimate(None, matches=len(matches), inliers=count)
    fit = EuclideanTransform.from_estimate(src[inliers], dst[inliers])
    if not fit:
        return Estimate(None, matches=len(matches), inliers=count)
    residual = fit(src[inliers]) - dst[inliers]
    rms = float(np.sqrt(np.mean(np.sum(residual**2, axis=1))))
    return Estimate(np.asarray(fit.params), float(count), len(matches), count, rms)


def search_estimate(
    moving: PreparedImage, fixed: PreparedImage, params: AlignParameters
) -> Estimate:
    """Exhaustive rotation search with FFT cross-correlation for the translation (coarse scale)."""
    a, b = _common_shape(moving.image, fixed.image)
    factor = 1
    while max(a.shape) / (factor * 2) >= params.coarse_px:
        factor *= 2
    small_m, small_f = _downsample(a, factor), _downsample(b, factor)
    centre = moving.centroid_px()
    centre_small = (centre + 0.5) / factor - 0.5
    rows, cols = small_f.shape
    pad_shape = (2 * rows, 2 * cols)
    f0 = small_f - small_f.mean()
    spectrum_f = np.fft.rfft2(f0, s=pad_shape)
    norm_f = float(np.linalg.norm(f0))
    best = (-np.inf, 0.0, 0.0, 0.0)
    angles = np.arange(-params.max_angle_deg, params.max_angle_deg, params.angle_step_deg)
    for angle in angles:
        rotation = rigid_px(np.deg2rad(angle), (0.0, 0.0), centre_small)
        warped = _warp(small_m, rotation, small_f.shape)
        w0 = warped - warped.mean()
        corr = np.fft.irfft2(spectrum_f * np.conj(np.fft.rfft2(w0, s=pad_shape)), s=pad_shape)
        k = int(np.argmax(corr))
        score = float(corr.flat[k]) / (norm_f * float(np.linalg.norm(w0)) + 1e-12)
        if score > best[0]:
            iy, ix = (int(v) for v in np.unravel_index(k, pad_shape))
            dy = iy - pad_shape[0] if iy > pad_shape[0] // 2 else iy
            dx = ix - pad_shape[1] if ix > pad_shape[1] // 2 else ix
            best = (score, float(angle), float(dx), float(dy))
    score, angle, dx, dy = best
    matrix = rigid_px(np.deg2rad(angle), (dx * factor, dy * factor), centre)
    return Estimate(matrix, score)


def refine(
    moving: PreparedImage, fixed: PreparedImage, start_px: np.ndarray, params: AlignParameters
) -> Estimate:
    """Gauss-Newton refinement of a rigid transform on a Gaussian pyramid (module docstring).

    Minimises ``sum (F(x) - g M(T^-1 x) - o)^2`` over the rotation and translation of ``T`` (about the
    moving tissue centroid) and a stain gain ``g`` and offset ``o``; each level starts from the
    previous one. Returns the refined pixel matrix with the overlap correlation as score.
    """
    a, b = _common_shape(moving.image, fixed.image)
    centre = moving.centroid_px()
    theta, tx, ty = params_of(start_px, centre)
    levels = 0
    while max(a.shape) / 2 ** (levels + 1) >= 64 and levels < 4:
        levels += 1
    total_iterations = 0
    for level in range(levels, -1, -1):
        factor = 2**level
        mov = _downsample(a, factor)
        fix = _downsample(b, factor)
        c = (centre + 0.5) / factor - 0.5
        t = np.array([tx, ty]) / factor
        # restrict to the fixed tissue's bounding box (with room for the moving tissue)
        support = ndimage.binary_dilation(fix > 0, iterations=max(2, int(8 / factor) + 2))
        if not support.any():
            break
        r0, r1 = np.flatnonzero(support.any(1))[[0, -1]]
        c0, c1 = np.flatnonzero(support.any(0))[[0, -1]]
        fix_w = fix[r0 : r1 + 1, c0 : c1 + 1]
        yy, xx = np.mgrid[r0 : r1 + 1, c0 : c1 + 1].astype(np.float64)
        grad_y, grad_x = np.gradient(mov)
        gain, offset = 1.0, 0.0
        iterations = params.max_iterations if level > 0 else max(10, params.max_iterations // 2)
        for _ in range(iterations):
            cos, sin = np.cos(theta), np.sin(theta)
            dx_ = xx - c[0] - t[0]
            dy_ = yy - c[1] - t[1]
            mx = cos * dx_ + sin * dy_ + c[0]
            my = -sin * dx_ + cos * dy_ + c[1]
            coords = np.array([my, mx])
            warped = ndimage.map_coordinates(mov, coords, order=1, mode="constant", cval=0.0)
            gx = ndimage.map_coordinates(grad_x, coords, order=1, mode="constant", cval=0.0)
            gy = ndimage.map_coordinates(grad_y, coords, order=1, mode="constant", cval=0.0)
            d_theta = gx * (-sin * dx_ + cos * dy_) + gy * (-cos * dx_ - sin * dy_)
            d_tx = gx * (-cos) + gy * sin
            d_ty = gx * (-sin) + gy * (-cos)
            jac = np.stack(
                [gain * d_theta, gain * d_tx, gain * d_ty, warped, np.ones_like(warped)], axis=-1
            ).reshape(-1, 5)
            residual = (fix_w - (gain * warped + offset)).ravel()
            if params.robust_k > 0:
                # Huber weights (iteratively reweighted): tissue that one section shows and the
                # other does not pulls less
                active = np.abs(residual) > 1e-6
                sigma = 1.4826 * float(np.median(np.abs(residual[active]))) if active.any() else 0
                cut = params.robust_k * max(sigma, 1e-6)
                weights = np.minimum(1.0, cut / np.maximum(np.abs(residual), 1e-12))
            else:
                weights = np.ones_like(residual)
            weighted = jac * weights[:, None]
            hessian = weighted.T @ jac
            hessian += 1e-6 * np.diag(np.diag(hessian)) + 1e-9 * np.eye(5)
            step = np.linalg.solve(hessian, weighted.T @ residual)
            # keep steps small: the linearisation holds for a pixel or a degree
            limit = max(1.0, float(np.hypot(step[1], step[2])))
            step[1:3] /= limit
            step[0] = float(np.clip(step[0], -0.02, 0.02))
            theta += step[0]
            t += step[1:3]
            gain += step[3]
            offset += step[4]
            total_iterations += 1
            if abs(step[0]) < 1e-6 and np.hypot(step[1], step[2]) < 1e-3:
                break
        tx, ty = t * factor
    matrix = rigid_px(theta, (tx, ty), centre)
    warped = _warp(a, matrix, b.shape)
    return Estimate(matrix, overlap_ncc(b, warped), iterations=total_iterations)


# -- one pair ---------------------------------------------------------------------------------------
@dataclass
class PairResult:
    """The alignment of one pair of consecutive sections (one row of ``pairs.tsv``)."""

    moving: int
    fixed: int
    matrix_mm: np.ndarray
    spacing_um: float
    ncc: float
    search_score: float
    search_score_flipped: float
    feature_matches: int
    feature_inliers: int
    feature_rms_px: float
    feature_vs_refined_deg: float
    feature_vs_refined_px: float
    search_vs_refined_deg: float
    search_vs_refined_px: float
    started_from: str
    iterations: int
    moving_flipped: bool
    fixed_flipped: bool
    seconds: float
    reasons: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "flagged" if self.reasons else "ok"

    @property
    def angle_deg(self) -> float:
        return angle_deg(self.matrix_mm)


PAIR_COLUMNS = (
    "moving",
    "fixed",
    "status",
    "reasons",
    "angle_deg",
    "tx_mm",
    "ty_mm",
    "ncc",
    "residual",
    "search_score",
    "search_score_flipped",
    "feature_matches",
    "feature_inliers",
    "feature_rms_px",
    "feature_vs_refined_deg",
    "feature_vs_refined_px",
    "search_vs_refined_deg",
    "search_vs_refined_px",
    "started_from",
    "iterations",
    "moving_flipped",
    "fixed_flipped",
    "spacing_um",
    "seconds",
)
"""Columns of ``pairs.tsv``; ``residual`` = 1 - ncc (the intensity residual after refinement)."""


def pair_row(result: PairResult) -> tuple:
    def num(value: float, digits: int = 4) -> str:
        return "nan" if not np.isfinite(value) else f"{value:.{digits}f}"

    return (
        result.moving,
        result.fixed,
        result.status,
        ",".join(result.reasons),
        num(result.angle_deg),
        num(result.matrix_mm[0, 2]),
        num(result.matrix_mm[1, 2]),
        num(result.ncc),
        num(1.0 - result.ncc),
        num(result.search_score),
        num(result.search_score_flipped),
        result.feature_matches,
        result.feature_inliers,
        num(result.feature_rms_px, 3),
        num(result.feature_vs_refined_deg, 3),
        num(result.feature_vs_refined_px, 2),
        num(result.search_vs_refined_deg, 3),
        num(result.search_vs_refined_px, 2),
        result.started_from,
        result.iterations,
        int(result.moving_flipped),
        int(result.fixed_flipped),
        num(result.spacing_um, 3),
        num(result.seconds, 2),
    )


def align_pair(
    moving: PreparedImage,
    fixed: PreparedImage,
    params: AlignParameters,
    *,
    search: Estimate | None = None,
    search_flipped_score: float = float("nan"),
) -> PairResult:
    """Estimate ``p_fixed = M p_moving`` for two prepared images (both in their final orientation).

    A flipped image stands for a mirrored scan, un-mirrored: the mm matrix acts on un-mirrored
    sections, as transforms.tsv requires.
    """
    start = time.perf_counter()
    if moving.spacing_um != fixed.spacing_um:
        raise DataFormatError(
            f"sections {moving.spacing_um} and {fixed.spacing_um} µm/px: cannot align images of "
            "different spacings",
            fix="store the images of one brain at one spacing",
        )
    search = search or search_estimate(moving, fixed, params)
    features = (
        feature_estimate(moving, fixed, params) if params.features != "none" else Estimate(None)
    )
    feature_ok = features.matrix_px is not None and features.inliers >= params.min_inliers
    centre = moving.centroid_px()
    candidates: list[tuple[str, np.ndarray]] = []
    if feature_ok and features.matrix_px is not None:
        candidates.append(("features", features.matrix_px))
    if search.matrix_px is not None:
        candidates.append(("search", search.matrix_px))
    reasons = []
    if not candidates:
        reasons.append("no_estimate")
        refined = Estimate(np.eye(3), 0.0)
        started = "none"
    else:
        refined_all = [(name, refine(moving, fixed, m, params)) for name, m in candidates]
        started, refined = max(refined_all, key=lambda item: item[1].score)
    refined_px = refined.matrix_px
    assert refined_px is not None  # refine and the identity fallback always give a matrix
    scale = TARGET_SPACING_UM / moving.spacing_um  # differences reported in 64 µm pixels

    def diff(estimate: Estimate) -> tuple[float, float]:
        if estimate.matrix_px is None:
            return float("nan"), float("nan")
        deg, px = matrix_difference(refined_px, estimate.matrix_px, centre)
        return deg, px / scale

    feat_deg, feat_px = diff(features) if feature_ok else (float("nan"), float("nan"))
    search_deg, search_px = diff(search)
    if refined.score < params.min_ncc:
        reasons.append("low_ncc")
    agrees = [
        d <= params.agree_deg and p <= params.agree_px
        for d, p in ((feat_deg, feat_px), (search_deg, search_px))
        if np.isfinite(d)
    ]
    if candidates and not any(agrees):
        reasons.append("methods_disagree")
    if not feature_ok and params.features != "none":
        # too few RANSAC inliers: accepted only when the search agrees with the refinement
        if not (
            np.isfinite(search_deg)
            and search_deg <= params.agree_deg
            and search_px <= params.agree_px
        ):
            reasons.append("few_inliers")
    if feature_ok and not (feat_deg <= params.agree_deg and feat_px <= params.agree_px):
        reasons.append("features_disagree")
    # a flipped image is the un-mirrored section: the matrix is already in the table's convention
    matrix_mm = px_to_mm_matrix(refined_px, moving.spacing_um)
    return PairResult(
        moving=-1,
        fixed=-1,
        matrix_mm=matrix_mm,
        spacing_um=moving.spacing_um,
        ncc=refined.score,
        search_score=search.score,
        search_score_flipped=search_flipped_score,
        feature_matches=features.matches,
        feature_inliers=features.inliers,
        feature_rms_px=features.rms_px,
        feature_vs_refined_deg=feat_deg,
        feature_vs_refined_px=feat_px,
        search_vs_refined_deg=search_deg,
        search_vs_refined_px=search_px,
        started_from=started,
        iterations=refined.iterations,
        moving_flipped=moving.flipped,
        fixed_flipped=fixed.flipped,
        seconds=time.perf_counter() - start,
        reasons=reasons,
    )


# -- a brain ----------------------------------------------------------------------------------------
@dataclass
class BrainAlignment:
    """The alignment of one brain.

    sections : available sections, posterior to anterior.
    declared : ``{section: mirrored}`` as sections.tsv declares it.
    detected : ``{section: mirrored}`` as the images say (the orientation the transforms assume).
    mirror_gain : ``{section: search score gained by the detected orientation}`` (0 when declared).
    pairs : one :class:`PairResult` per consecutive pair.
    centroid_mm : ``{section: (x, y)}`` tissue centroid of the un-mirrored section (error reports).
    extent_mm : ``{section: (width_mm, height_mm)}``.
    """

    sections: list[int]
    declared: dict[int, bool]
    detected: dict[int, bool]
    mirror_gain: dict[int, float]
    pairs: list[PairResult]
    centroid_mm: dict[int, tuple[float, float]]
    extent_mm: dict[int, tuple[float, float]]

    @property
    def transforms(self) -> dict[tuple[int, int], np.ndarray]:
        return {(p.moving, p.fixed): p.matrix_mm for p in self.pairs}

    @property
    def flagged(self) -> list[PairResult]:
        return [p for p in self.pairs if p.reasons]

    @property
    def mirror_changes(self) -> list[int]:
        return [s for s in self.sections if self.detected[s] != self.declared[s]]


def choose_orientations(
    scores: Sequence[tuple[float, float]], count: int, flip_cost: float
) -> list[int]:
    """Orientation (0 as declared, 1 flipped) of each of ``count`` chained sections.

    ``scores[k] = (same, flipped)``: the search score of pair (k, k + 1) with both sections as
    declared, and with section k + 1 flipped relative to section k. Maximises the sum of the pair
    scores of the chosen relative orientations minus ``flip_cost`` per flipped section (Viterbi).
    """
    value = np.array([0.0, -flip_cost])
    back = []
    for same, flipped in scores:
        pair = np.array([[same, flipped], [flipped, same]])  # [state k, state k + 1]
        total = value[:, None] + pair
        back.append(np.argmax(total, axis=0))
        value = total.max(axis=0) - np.array([0.0, flip_cost])
    states = [int(np.argmax(value))]
    for pointer in reversed(back):
        states.append(int(pointer[states[-1]]))
    states.reverse()
    assert len(states) == count
    return states


def _image_path(brain, section: int):
    record = brain.section(section)
    if not record.image:
        raise DataFormatError(
            "section has no image: alignment works from the images",
            file=brain.section_table_path,
            section=section,
            fix="add the image column for this section (cortexgraph ingest writes it)",
        )
    return brain.path(record.image, what="image path", section=section)


def _prepare(brain, section: int, params: AlignParameters, flipped: bool) -> PreparedImage:
    path = _image_path(brain, section)
    with Raster(path) as raster:
        raw, spacing = read_at_spacing(raster, params.spacing_um)
        extent = raster.extent_mm
    prepared = prepare_image(raw, spacing, extent, params, flipped=flipped)
    if not prepared.tissue.any():
        raise DataFormatError(
            "no tissue found in the image (it is uniform)",
            file=path,
            section=section,
            fix="check the image, or flag the section excluded in sections.tsv",
        )
    return prepared


Progress = Callable[[str, int, int], None]


def align_brain(
    brain, params: AlignParameters | None = None, progress: Progress | None = None
) -> BrainAlignment:
    """Align every pair of consecutive available sections of ``brain`` from their images.

    Two passes over the stack, holding two sections at a time: (1) every pair as declared, with the
    search score of the later section flipped; (2) the pairs touching a section whose orientation
    the chain changes (:func:`choose_orientations`), again with the detected orientations.

    Returns a :class:`BrainAlignment`. Raises DataFormatError naming the section for a section
    without an image or without tissue.
    """
    params = params or AlignParameters()
    report = progress or (lambda stage, done, total: None)
    sections = list(brain.available_sections)
    if len(sections) < 2:
        raise DataFormatError(
            "fewer than two available sections: nothing to align",
            file=brain.section_table_path,
            fix="list at least two present sections in sections.tsv",
        )
    declared = {s: bool(brain.section(s).mirrored) for s in sections}
    pairs: list[PairResult] = []
    scores: list[tuple[float, float]] = []
    centroid: dict[int, tuple[float, float]] = {}
    extent: dict[int, tuple[float, float]] = {}

    def centroid_of(prepared: PreparedImage) -> tuple[float, float]:
        c = (prepared.centroid_px() + 0.5) * prepared.spacing_um / 1000.0
        return float(c[0]), float(c[1])

    total = len(sections) - 1
    report("align", 0, total)
    previous = _prepare(brain, sections[0], params, declared[sections[0]])
    centroid[sections[0]], extent[sections[0]] = centroid_of(previous), previous.extent_mm
    for k, (moving, fixed) in enumerate(zip(sections[:-1], sections[1:], strict=True)):
        current = _prepare(brain, fixed, params, declared[fixed])
        centroid[fixed], extent[fixed] = centroid_of(current), current.extent_mm
        search = search_estimate(previous, current, params)
        flipped_score = float("nan")
        if params.detect_mirrored:
            other = _prepare(brain, fixed, params, not declared[fixed])
            flipped_score = search_estimate(previous, other, params).score
        result = align_pair(
            previous, current, params, search=search, search_flipped_score=flipped_score
        )
        result.moving, result.fixed = moving, fixed
        pairs.append(result)
        scores.append((search.score, flipped_score if np.isfinite(flipped_score) else -np.inf))
        previous = current
        report("align", k + 1, total)

    detected = dict(declared)
    gain = {s: 0.0 for s in sections}
    if params.detect_mirrored:
        states = choose_orientations(scores, len(sections), params.mirror_margin)
        changed = [s for s, state in zip(sections, states, strict=True) if state]
        for s in changed:
            detected[s] = not declared[s]
        if changed:
            for i, s in enumerate(sections):
                if not states[i]:
                    continue
                around = []
                if i > 0:
                    same, flipped = scores[i - 1]
                    around.append(flipped - same if not states[i - 1] else 0.0)
                if i + 1 < len(sections):
                    same, flipped = scores[i]
                    around.append(flipped - same if not states[i + 1] else 0.0)
                gain[s] = float(np.mean(around)) if around else 0.0
            redo = [k for k in range(total) if states[k] or states[k + 1]]
            for k in redo:
                moving, fixed = sections[k], sections[k + 1]
                a = _prepare(brain, moving, params, detected[moving])
                b = _prepare(brain, fixed, params, detected[fixed])
                centroid[moving], centroid[fixed] = centroid_of(a), centroid_of(b)
                result = align_pair(a, b, params, search_flipped_score=pairs[k].search_score)
                result.moving, result.fixed = moving, fixed
                result.reasons.append("mirror_detected")
                pairs[k] = result
    return BrainAlignment(sections, declared, detected, gain, pairs, centroid, extent)


# -- accuracy against known transforms ----------------------------------------------------------------
@dataclass
class AlignmentAccuracy:
    """Errors of estimated transforms against exact ones (a phantom's ground truth).

    pairs : per pair ``{moving, fixed, rotation_error_deg, translation_error_um,
        translation_error_px}``: the rotation of ``M_est M_true^-1`` and the distance between the
        images of the moving section's tissue centroid under both transforms, in µm and in pixels of
        ``pixel_um`` (64 µm).
    drift : per section ``{section, rotation_error_deg, translation_error_um, translation_error_px}``
        after composing both chains to the base section (the tissue centroid mapped onto the base).
    """

    pairs: list[dict]
    drift: list[dict]
    base_section: int
    pixel_um: float

    def summary(self) -> dict:
        def stats(rows: list[dict], key: str) -> tuple[float, float]:
            values = np.array([r[key] for r in rows], dtype=np.float64)
            if not len(values):
                return float("nan"), float("nan")
            return float(np.median(values)), float(values.max())

        out: dict[str, Any] = {
            "base_section": self.base_section,
            "pixel_um": self.pixel_um,
            "pairs": len(self.pairs),
        }
        for name, rows in (("pair", self.pairs), ("drift", self.drift)):
            for key in ("rotation_error_deg", "translation_error_um", "translation_error_px"):
                median, worst = stats(rows, key)
                out[f"{name}_{key}_median"] = median
                out[f"{name}_{key}_max"] = worst
        worst_pairs = sorted(self.pairs, key=lambda r: -r["translation_error_um"])[:5]
        out["worst_pairs"] = [f"{r['moving']}-{r['fixed']}" for r in worst_pairs]
        return out


def alignment_accuracy(
    estimated: Mapping[tuple[int, int], np.ndarray],
    truth: Mapping[tuple[int, int], np.ndarray],
    sections: Sequence[int],
    centroid_mm: Mapping[int, Sequence[float]],
    base_section: int,
    pixel_um: float = TARGET_SPACING_UM,
) -> AlignmentAccuracy:
    """Compare estimated consecutive transforms with exact ones (both in un-mirrored section mm).

    Returns an :class:`AlignmentAccuracy`; pairs absent from either table are skipped.
    """
    pair_rows = []
    for key in sorted(estimated):
        if key not in truth:
            continue
        deg, dist_mm = matrix_difference(estimated[key], truth[key], centroid_mm[key[0]])
        pair_rows.append(
            {
                "moving": key[0],
                "fixed": key[1],
                "rotation_error_deg": deg,
                "translation_error_um": dist_mm * 1000.0,
                "translation_error_px": dist_mm * 1000.0 / pixel_um,
            }
        )
    drift_rows = []
    try:
        est_base = compose_to_base(sections, estimated, base_section)
        true_base = compose_to_base(sections, truth, base_section)
    except DataFormatError:
        est_base, true_base = {}, {}
    for s in sorted(est_base):
        deg, dist_mm = matrix_difference(est_base[s], true_base[s], centroid_mm[s])
        drift_rows.append(
            {
                "section": s,
                "rotation_error_deg": deg,
                "translation_error_um": dist_mm * 1000.0,
                "translation_error_px": dist_mm * 1000.0 / pixel_um,
            }
        )
    return AlignmentAccuracy(pair_rows, drift_rows, base_section, pixel_um)


# -- the stage ----------------------------------------------------------------------------------------
def read_transform_table(path) -> dict[tuple[int, int], np.ndarray]:
    """A transforms.tsv (docs/data-format.md) as ``{(moving, fixed): 3x3}``, without the brain's
    checks (used for a phantom's ground truth)."""
    from cortexgraph.data.manifest import MATRIX_COLUMNS, TRANSFORM_COLUMNS, read_tsv

    out = {}
    for row in read_tsv(path, TRANSFORM_COLUMNS):
        matrix = np.array([float(row[c]) for c in MATRIX_COLUMNS]).reshape(3, 3)
        out[(int(row["moving"]), int(row["fixed"]))] = matrix
    return out


def format_transform_table(transforms: Mapping[tuple[int, int], np.ndarray]) -> str:
    """The text of a transforms.tsv in the brain's format (the same writer as ``Brain``)."""
    from cortexgraph.data.manifest import TRANSFORM_COLUMNS, format_tsv

    rows = [
        (m, f, *[repr(float(v)) for v in np.asarray(t).ravel()])
        for (m, f), t in sorted(transforms.items())
    ]
    return format_tsv(TRANSFORM_COLUMNS, rows)


def align_outputs(brain) -> dict[str, Path]:
    """Files of the align stage under ``<derivatives>/<brain>/align/``."""
    folder = brain.derivatives / "align"
    return {
        "transforms": folder / "transforms.tsv",
        "pairs": folder / "pairs.tsv",
        "mirrored": folder / "mirrored.tsv",
        "report": folder / "align.json",
    }


def truth_transforms_path(brain):
    """``<cohort>/ground_truth/<brain>/transforms.tsv`` when the brain is a phantom's, else None."""
    if brain.cohort is None:
        return None
    path = brain.ground_truth / "transforms.tsv"
    return path if path.is_file() else None


def run_align(
    brain,
    params: AlignParameters | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    wait_s: float = 0.0,
) -> dict:
    """``cortexgraph align``: align a brain under the stage contract (docs/derivatives.md).

    Inputs: the section images (and a phantom's ground-truth transforms, when present, for the
    accuracy). Outputs under ``<cohort>/derivatives/cortexgraph/<brain>/align/``:

    * ``transforms.tsv``: the estimated table in the format of the brain's transforms.tsv, for the
      orientations of ``mirrored.tsv`` (the brain's own table is not touched; :func:`install_alignment`
      copies it there when asked);
    * ``pairs.tsv``: one row per pair (:data:`PAIR_COLUMNS`): status ``ok``/``flagged``, reasons,
      angle, translation, overlap correlation and residual, inliers, agreement between methods;
    * ``mirrored.tsv``: ``section declared detected score_gain`` per available section;
    * ``align.json``: parameters, counts, flagged pairs, mirror changes, seconds, and on a phantom the
      accuracy (:class:`AlignmentAccuracy` summary with per-pair errors and drift).

    Returns the report with ``reused``, ``why`` and ``key``.
    """
    from cortexgraph.data.manifest import format_tsv
    from cortexgraph.derivatives.inputs import brain_inputs
    from cortexgraph.derivatives.stage import Derivatives, StageRun, run_stage
    from cortexgraph.derivatives.stages import StageId
    from cortexgraph.outputs import write_text_atomic

    params = params or AlignParameters()
    manifest_values, files = brain_inputs(brain, ("image",), transforms=False)
    truth_path = truth_transforms_path(brain)
    if truth_path is not None:
        files.append(truth_path)
    outputs = align_outputs(brain)

    def compute(run: StageRun) -> dict:
        start = time.perf_counter()
        result = align_brain(brain, params, progress)
        write_text_atomic(outputs["transforms"], format_transform_table(result.transforms))
        write_text_atomic(outputs["pairs"], format_tsv(PAIR_COLUMNS, map(pair_row, result.pairs)))
        mirror_rows = [
            (s, int(result.declared[s]), int(result.detected[s]), f"{result.mirror_gain[s]:.4f}")
            for s in result.sections
        ]
        write_text_atomic(
            outputs["mirrored"],
            format_tsv(("section", "declared", "detected", "score_gain"), mirror_rows),
        )
        report = {
            "brain": brain.id,
            "parameters": params.as_dict(),
            "pairs": len(result.pairs),
            "pairs_flagged": len(result.flagged),
            "flagged": [
                {"moving": p.moving, "fixed": p.fixed, "reasons": p.reasons} for p in result.flagged
            ],
            "mirror_changes": result.mirror_changes,
            "ncc_median": float(np.median([p.ncc for p in result.pairs])),
            "seconds": time.perf_counter() - start,
        }
        if truth_path is not None:
            truth = read_transform_table(truth_path)
            base = brain.base_section
            if base is None or base not in result.sections:
                from cortexgraph.data.transforms import central_section

                base = central_section(result.sections)
            accuracy = alignment_accuracy(
                result.transforms, truth, result.sections, result.centroid_mm, base
            )
            report["accuracy"] = accuracy.summary()
            flagged = {(p.moving, p.fixed) for p in result.flagged}
            report["accuracy"]["unflagged_failures"] = [
                f"{r['moving']}-{r['fixed']}"
                for r in accuracy.pairs
                if (r["moving"], r["fixed"]) not in flagged
                and (r["rotation_error_deg"] > 1.0 or r["translation_error_px"] > 8.0)
            ]
            report["accuracy"]["per_pair"] = accuracy.pairs
            report["accuracy"]["drift"] = accuracy.drift
        return run.commit_report(outputs, report)

    return run_stage(
        Derivatives.of(brain),
        StageId("align", brain.id),
        compute,
        parameters={"align": params.as_dict(), **manifest_values},
        inputs=files,
        overwrite=overwrite,
        wait_s=wait_s,
    )


def install_alignment(brain, *, accept_flagged: bool = False, wait_s: float = 0.0) -> list:
    """Copy the align stage's transforms (and detected mirror flags) into the brain's own files.

    The brain's transforms.tsv (and sections.tsv when a mirror flag changes) are first copied to
    ``transforms.before-align.tsv`` / ``sections.before-align.tsv`` beside them (when no such copy
    exists), then replaced atomically. Refuses (ParameterError) while flagged pairs remain, unless
    ``accept_flagged``. When the transforms change and the brain has an exclusion mask (world mm,
    drawn with the previous transforms), logs a warning with the fix. Holds the align stage's lock
    and the brain's install lock (:func:`cortexgraph.derivatives.installing`; StageBusyError when
    another process holds one after ``wait_s`` seconds). Returns the paths written.
    """
    from cortexgraph.derivatives import installing

    with installing(brain, "align", wait_s):
        return _install_alignment(brain, accept_flagged)


def _install_alignment(brain, accept_flagged: bool) -> list:
    """:func:`install_alignment` with its locks held."""
    import json
    import shutil
    from dataclasses import replace

    from cortexgraph.errors import ParameterError

    outputs = align_outputs(brain)
    if not outputs["report"].is_file():
        raise ParameterError(
            "no alignment to install",
            file=str(outputs["report"]),
            fix=f"run `cortexgraph align {brain.id}` first",
        )
    report = json.loads(outputs["report"].read_text(encoding="utf-8"))
    if report["pairs_flagged"] and not accept_flagged:
        first = report["flagged"][0]
        raise ParameterError(
            f"{report['pairs_flagged']} flagged pair(s), first {first['moving']} -> "
            f"{first['fixed']} ({', '.join(first['reasons'])})",
            file=str(outputs["pairs"]),
            section=first["moving"],
            fix="inspect pairs.tsv; fix or exclude those sections, or install anyway with "
            "--accept-flagged",
        )
    written = []
    mirrored = {}
    from cortexgraph.data.manifest import read_tsv

    for row in read_tsv(outputs["mirrored"], ("section", "declared", "detected")):
        mirrored[int(row["section"])] = row["detected"] == "1"
    table = brain.transform_table_path
    if table.is_file():
        backup = table.with_name("transforms.before-align.tsv")
        if not backup.exists():
            shutil.copy2(table, backup)
            written.append(backup)
    records = brain.sections
    if any(
        bool(r.mirrored) != mirrored.get(r.section, bool(r.mirrored))
        for r in records
        if not r.missing
    ):
        backup = brain.section_table_path.with_name("sections.before-align.tsv")
        if not backup.exists():
            shutil.copy2(brain.section_table_path, backup)
            written.append(backup)
        brain.write_sections(
            [
                replace(r, mirrored=mirrored.get(r.section, r.mirrored)) if not r.missing else r
                for r in records
            ]
        )
        written.append(brain.section_table_path)
    new = read_transform_table(outputs["transforms"])
    old = read_transform_table(table) if table.is_file() else {}
    changed = set(old) != set(new) or any(not np.allclose(old[k], new[k]) for k in new)
    brain.write_transforms(new)
    written.append(table)
    if changed and brain.exclusion_mask:
        log.warning(
            "%s: the transforms changed, and the exclusion mask %s is in world mm: drawn on a "
            "reconstruction stacked with the previous transforms, it may no longer cover the "
            "non-cortical gray matter. Fix: redraw it on a reconstruction made with the new "
            "transforms, or build with --exclusion automatic (build-graph warns about midsurface "
            "nodes left in gray matter too thick to be cortex)",
            brain.id, brain.exclusion_mask,
        )  # fmt: skip
    return written
