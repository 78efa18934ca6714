"""Batched patch extraction: many patches of one section from one read of its image.

:meth:`cortexgraph.data.raster.Raster.read_patch` reads one patch; calling it once per graph node or per
training patch re-reads (and re-decompresses) the same HDF5 chunks thousands of times.  The functions here
give the same pixels as ``read_patch`` (identical sampling rule) for a whole batch of centres:

* the pyramid level is the one ``read_patch`` picks (``Raster.level_for_spacing``); ``scale =
  spacing_um / level spacing`` level pixels per output pixel;
* the patch centre ``(x_mm, y_mm)`` is the continuous level position ``c_col = x_mm 1000 / s - 0.5``,
  ``c_row = y_mm 1000 / s - 0.5`` (pixel centres at integers, docs/conventions.md);
* **exact branch** (``scale == 1`` and no rotation): the patch is the integer window whose top-left
  pixel is ``round(c - (n - 1) / 2)`` (round half to even, as Python's ``round``), no interpolation;
* **resampled branch**: output pixel ``(r, c)``, with ``dr = (r - (rows-1)/2) scale`` and
  ``dc = (c - (cols-1)/2) scale``, samples the level at ``col = c_col + cos(a) dc + sin(a) dr``,
  ``row = c_row - sin(a) dc + cos(a) dr``, bilinearly for intensity images and by nearest neighbour for
  label images; when ``scale > 1.5`` intensity images are first smoothed with a Gaussian of sigma 0.5
  level pixels (anti-aliasing); the result keeps the raster's dtype for labels and unsmoothed
  integer images (rounded), float32 otherwise;
* outside the image: ``fill``; mirroring (augmentation) flips the output columns.

Reading: the centres of a section are grouped into blocks of ``block_px`` level pixels and each block's
bounding box (plus the margin a patch needs) is read once with ``Raster.read_window``, which touches
only the chunks under it.  On the phantom a section is one block; at the publications' scale (2 µm/px,
sections of ~10^10 pixels) a block is a few chunks.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from cortexgraph.data.raster import Raster
from cortexgraph.lsm.sampling import read_window

__all__ = [
    "PatchGeometry",
    "patch_geometry",
    "sample_patches",
    "read_patches",
    "read_windows",
    "window_px_for",
    "IMAGE_FILL",
]

#: Value of image pixels outside the scanned image: bright glass (images are 0 = dark stain,
#: 255 = bright background, docs/data-format.md).
IMAGE_FILL = 255

#: Extra level pixels kept around every patch window: bilinear interpolation needs one, the
#: anti-aliasing Gaussian (sigma 0.5, truncated at 4 sigma) two more.
MARGIN_PX = 4


class PatchGeometry:
    """How patches of ``patch_px`` at ``spacing_um`` are cut from one level of a raster.

    Attributes
    ----------
    level : pyramid level index read.
    level_spacing_um : its pixel spacing, µm.
    scale : level pixels per output pixel.
    rows, cols : output patch size, px.
    exact : True when patches are integer windows (``scale == 1``, no rotation).
    smooth : True when intensity windows are smoothed before sampling (``scale > 1.5``).
    """

    def __init__(
        self,
        level: int,
        level_spacing_um: float,
        patch_px: int | tuple[int, int],
        spacing_um: float,
        kind: str = "intensity",
    ) -> None:
        if isinstance(patch_px, int | float | np.number):  # a scalar: a square
            rows, cols = patch_px, patch_px
        else:
            rows, cols = tuple(patch_px)
        self.level = int(level)
        self.level_spacing_um = float(level_spacing_um)
        self.rows, self.cols = int(rows), int(cols)
        self.spacing_um = float(spacing_um)
        self.kind = kind
        self.scale = self.spacing_um / self.level_spacing_um
        self.unit_scale = abs(self.scale - 1.0) < 1e-9
        self.smooth = self.scale > 1.5 and kind != "labels"

    def exact(self, rotated: bool) -> bool:
        """Integer windows (no interpolation) for unrotated patches at the level's own spacing."""
        return self.unit_scale and not rotated

    def half_extent_px(self, rotated: bool) -> float:
        """Largest distance (level px, per axis) from the centre to a sampled position, plus margin."""
        if rotated:
            half = 0.5 * math.hypot(self.rows, self.cols) * self.scale
        else:
            half = 0.5 * max(self.rows, self.cols) * self.scale
        return half + MARGIN_PX

    def centres_px(self, centres_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous (row, col) level positions of centres ``(x_mm, y_mm)``."""
        c = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 2)
        factor = 1000.0 / self.level_spacing_um
        return c[:, 1] * factor - 0.5, c[:, 0] * factor - 0.5


def patch_geometry(
    raster: Raster, patch_px: int | tuple[int, int], spacing_um: float
) -> PatchGeometry:
    """The :class:`PatchGeometry` of ``raster.read_patch(..., size_px=patch_px, spacing_um=...)``."""
    level = raster.level_for_spacing(spacing_um)
    return PatchGeometry(level.index, level.spacing_um, patch_px, spacing_um, raster.kind)


def sample_patches(
    blocks: np.ndarray,
    block_of: np.ndarray,
    origin_rc: np.ndarray,
    centres_rc: tuple[np.ndarray, np.ndarray],
    geometry: PatchGeometry,
    *,
    angles_rad: np.ndarray | None = None,
    mirrored: np.ndarray | None = None,
    fill=IMAGE_FILL,
) -> np.ndarray:
    """Cut or resample patches from in-memory blocks of one pyramid level.

    Parameters
    ----------
    blocks : (K, H, W) stack of level windows (all the same size), already smoothed when
        ``geometry.smooth``; or one (H, W) window (K = 1).
    block_of : (B,) index into ``blocks`` of each patch.
    origin_rc : (B, 2) level (row, col) of each patch's block's pixel [0, 0].
    centres_rc : (rows, cols) continuous level positions of the B patch centres.
    geometry : the sampling rule (:class:`PatchGeometry`).
    angles_rad : (B,) rotation of each patch (None: no rotation).
    mirrored : (B,) bool, flip the output columns (None: no flip).
    fill : value outside the blocks.

    Returns
    -------
    (B, rows, cols) array: the blocks' dtype for the exact branch, labels and unsmoothed integer
    images; float32 for smoothed intensity blocks.
    """
    blocks = np.asarray(blocks)
    if blocks.ndim == 2:
        blocks = blocks[None]
    block_of = np.asarray(block_of, dtype=np.int64).reshape(-1)
    origin = np.asarray(origin_rc, dtype=np.int64).reshape(-1, 2)
    c_row, c_col = (np.asarray(v, dtype=np.float64).reshape(-1) for v in centres_rc)
    b = len(block_of)
    rows, cols = geometry.rows, geometry.cols
    rotated = angles_rad is not None and bool(np.any(np.asarray(angles_rad) != 0.0))
    if b == 0:
        dtype = np.float32 if geometry.smooth else blocks.dtype
        return np.zeros((0, rows, cols), dtype=dtype)
    height, width = blocks.shape[1:3]
    if geometry.exact(rotated):
        row0 = np.rint(c_row - (rows - 1) / 2.0).astype(np.int64) - origin[:, 0]
        col0 = np.rint(c_col - (cols - 1) / 2.0).astype(np.int64) - origin[:, 1]
        rr = row0[:, None] + np.arange(rows)[None, :]  # (B, rows)
        cc = col0[:, None] + np.arange(cols)[None, :]  # (B, cols)
        inside = ((rr >= 0) & (rr < height))[:, :, None] & ((cc >= 0) & (cc < width))[:, None, :]
        out = blocks[
            block_of[:, None, None],
            np.clip(rr, 0, height - 1)[:, :, None],
            np.clip(cc, 0, width - 1)[:, None, :],
        ]
        if not inside.all():
            out = np.where(inside, out, np.asarray(fill, dtype=out.dtype))
    else:
        scale = geometry.scale
        dr = (np.arange(rows) - (rows - 1) / 2.0) * scale
        dc = (np.arange(cols) - (cols - 1) / 2.0) * scale
        angles = np.zeros(b) if angles_rad is None else np.asarray(angles_rad, np.float64)
        cos_a = np.cos(angles)[:, None, None]
        sin_a = np.sin(angles)[:, None, None]
        dr_g = dr[None, :, None]
        dc_g = dc[None, None, :]
        # the order of operations of Raster.read_patch (same rounding of the positions)
        src_c = c_col[:, None, None] + cos_a * dc_g + sin_a * dr_g - origin[:, 1, None, None]
        src_r = c_row[:, None, None] - sin_a * dc_g + cos_a * dr_g - origin[:, 0, None, None]
        if geometry.kind == "labels":
            out = _nearest(blocks, block_of, src_r, src_c, fill)
        else:
            out = _bilinear(blocks, block_of, src_r, src_c, fill)
            if not geometry.smooth and np.issubdtype(blocks.dtype, np.integer):
                info = np.iinfo(blocks.dtype)
                out = np.clip(np.floor(out + 0.5), info.min, info.max).astype(blocks.dtype)
    if mirrored is not None:
        flip = np.asarray(mirrored, dtype=bool).reshape(-1)
        if flip.any():
            out[flip] = out[flip][:, :, ::-1]
    if geometry.smooth:
        out = out.astype(np.float32, copy=False)
    return out


def _bilinear(
    blocks: np.ndarray, block_of: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill
) -> np.ndarray:
    """Bilinear samples of ``blocks[block_of[b]]`` at (rows[b], cols[b]) (float32, (B, ...)).

    Positions outside ``[0, H-1] x [0, W-1]`` of their block give ``fill`` (as
    ``scipy.ndimage.map_coordinates(order=1, mode="constant")``).  The top-left neighbour is
    clamped to ``[0, H-2] x [0, W-2]`` (its fraction may then reach 1), which is exact inside.
    """
    k_count, height, width = blocks.shape[:3]
    flat = blocks.reshape(-1)
    r0 = np.clip(np.floor(rows), 0, max(height - 2, 0)).astype(np.int64)
    c0 = np.clip(np.floor(cols), 0, max(width - 2, 0)).astype(np.int64)
    fr = rows - r0
    fc = cols - c0
    k = block_of.reshape((-1,) + (1,) * (rows.ndim - 1)).astype(np.int64)
    base = k * (height * width) + r0 * width + c0
    step_r = width if height > 1 else 0
    step_c = 1 if width > 1 else 0
    v00 = flat[base]
    v01 = flat[base + step_c]
    v10 = flat[base + step_r]
    v11 = flat[base + step_r + step_c]
    # scipy's weighting (float64): sum of the four corner values times their weights
    out = (1 - fr) * ((1 - fc) * v00 + fc * v01) + fr * ((1 - fc) * v10 + fc * v11)
    out = out.astype(np.float32)
    outside = (rows < 0) | (rows > height - 1) | (cols < 0) | (cols > width - 1)
    if outside.any():
        out[outside] = fill
    return out


def _nearest(
    blocks: np.ndarray, block_of: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill
) -> np.ndarray:
    """Nearest-neighbour samples (label images), ``fill`` outside the block."""
    height, width = blocks.shape[1:3]
    ri = np.floor(rows + 0.5).astype(np.int64)
    ci = np.floor(cols + 0.5).astype(np.int64)
    k = block_of.reshape((-1,) + (1,) * (rows.ndim - 1))
    out = blocks[k, np.clip(ri, 0, height - 1), np.clip(ci, 0, width - 1)]
    outside = (rows < -0.5) | (rows > height - 0.5) | (cols < -0.5) | (cols > width - 0.5)
    if outside.any():
        out = np.where(outside, np.asarray(fill, dtype=out.dtype), out)
    return out


def _smooth_blocks(blocks: np.ndarray) -> np.ndarray:
    """Anti-aliasing Gaussian (sigma 0.5 px) of each block, as ``read_patch`` smooths its window."""
    blocks = blocks.astype(np.float32)
    sigma = (0.0, 0.5, 0.5) + (0.0,) * (blocks.ndim - 3)
    return ndimage.gaussian_filter(blocks, sigma)


def _group_blocks(
    c_row: np.ndarray, c_col: np.ndarray, block_px: int
) -> dict[tuple[int, int], np.ndarray]:
    keys = np.stack(
        [np.floor(c_row / block_px).astype(np.int64), np.floor(c_col / block_px).astype(np.int64)],
        axis=1,
    )
    groups: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(map(tuple, keys.tolist())):
        groups.setdefault(key, []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def read_patches(
    raster: Raster,
    centres_mm: np.ndarray,
    patch_px: int | tuple[int, int],
    spacing_um: float,
    *,
    angles_rad: np.ndarray | None = None,
    mirrored: np.ndarray | None = None,
    fill=IMAGE_FILL,
    block_px: int = 4096,
    level_array: np.ndarray | None = None,
) -> np.ndarray:
    """Many patches of one section: ``read_patch`` for every centre, from a few block reads.

    Parameters
    ----------
    raster : the section's raster (image, mask or label image).
    centres_mm : (B, 2) patch centres ``(x_mm, y_mm)`` in the section frame.
    patch_px : output size (int or (rows, cols)).
    spacing_um : output pixel spacing, µm.
    angles_rad : (B,) rotations (``read_patch``'s ``angle_rad``), or None.
    mirrored : (B,) flip flags (columns flipped after sampling), or None.
    fill : value outside the image (255 = glass for images).
    block_px : centres are grouped by blocks of this many level pixels; each block's bounding box
        (plus the patch margin) is read once.
    level_array : the whole level already in memory (skips reading).

    Returns
    -------
    (B, rows, cols) patches, equal to ``raster.read_patch(c, patch_px, spacing_um, angle_rad=a,
    fill=fill)`` (columns flipped where ``mirrored``); dtype as :func:`sample_patches`.
    """
    geometry = patch_geometry(raster, patch_px, spacing_um)
    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 2)
    c_row, c_col = geometry.centres_px(centres)
    rotated = angles_rad is not None and bool(np.any(np.asarray(angles_rad) != 0.0))
    half = geometry.half_extent_px(rotated)
    dtype = np.float32 if geometry.smooth else raster.dataset(geometry.level).dtype
    out = np.empty((len(centres), geometry.rows, geometry.cols), dtype=dtype)
    if len(centres) == 0:
        return out
    angles = None if angles_rad is None else np.asarray(angles_rad, np.float64).reshape(-1)
    flips = None if mirrored is None else np.asarray(mirrored, bool).reshape(-1)
    for idx in _group_blocks(c_row, c_col, block_px).values():
        r0 = int(math.floor(c_row[idx].min() - half))
        c0 = int(math.floor(c_col[idx].min() - half))
        r1 = int(math.ceil(c_row[idx].max() + half)) + 1
        c1 = int(math.ceil(c_col[idx].max() + half)) + 1
        if level_array is not None:
            block = read_window(level_array, r0, c0, r1 - r0, c1 - c0, fill)
        else:
            block = raster.read_window(geometry.level, r0, c0, r1 - r0, c1 - c0, fill=fill)
        if geometry.smooth:
            block = _smooth_blocks(block[None])[0]
        origin = np.broadcast_to(np.array([r0, c0]), (len(idx), 2))
        out[idx] = sample_patches(
            block,
            np.zeros(len(idx), dtype=np.int64),
            origin,
            (c_row[idx], c_col[idx]),
            geometry,
            angles_rad=None if angles is None else angles[idx],
            mirrored=None if flips is None else flips[idx],
            fill=fill,
        )
    return out


def read_windows(
    raster: Raster,
    centres_mm: np.ndarray,
    geometry: PatchGeometry,
    window_px: int,
    *,
    fill=IMAGE_FILL,
    block_px: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Square level windows of side ``window_px`` around each centre (for cached training patches).

    Returns
    -------
    windows : (B, window_px, window_px) in the level's dtype (float32 and smoothed when
        ``geometry.smooth``), ready for :func:`sample_patches` with ``block_of = arange(B)``.
    origin_rc : (B, 2) int64 level (row, col) of each window's pixel [0, 0]; the window of centre
        ``c`` starts at ``floor(c) - window_px // 2``.
    """
    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 2)
    c_row, c_col = geometry.centres_px(centres)
    origin = np.stack(
        [
            np.floor(c_row).astype(np.int64) - window_px // 2,
            np.floor(c_col).astype(np.int64) - window_px // 2,
        ],
        axis=1,
    )
    dtype = raster.dataset(geometry.level).dtype
    windows = np.empty((len(centres), window_px, window_px), dtype=dtype)
    for idx in _group_blocks(c_row, c_col, block_px).values():
        r0, c0 = (int(v) for v in origin[idx].min(axis=0))
        r1, c1 = (int(v) + window_px for v in origin[idx].max(axis=0))
        block = raster.read_window(geometry.level, r0, c0, r1 - r0, c1 - c0, fill=fill)
        rr = (origin[idx, 0] - r0)[:, None] + np.arange(window_px)[None, :]
        cc = (origin[idx, 1] - c0)[:, None] + np.arange(window_px)[None, :]
        windows[idx] = block[rr[:, :, None], cc[:, None, :]]
    if geometry.smooth:
        windows = _smooth_blocks(windows)
    return windows, origin


def window_px_for(geometry: PatchGeometry, max_translation_um: float) -> int:
    """Side of a cached window that holds every augmented patch of a centre (any rotation,
    translation up to ``max_translation_um``), with the sampling margin."""
    shift = max_translation_um / geometry.level_spacing_um
    return int(2 * math.ceil(geometry.half_extent_px(True) + shift) + 2)
