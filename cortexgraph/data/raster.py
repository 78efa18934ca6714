"""Chunked, multi-resolution 2D rasters in HDF5: section images, tissue masks, label images, coordinate maps.

File layout (one file per section and kind, see docs/data-format.md)::

    /                       attrs: format="cortexgraph-raster", format_version=1, kind="intensity"|"labels"
    /levels/0               level 0 (finest), shape (rows, cols) or (rows, cols, channels),
                            chunked (chunk_px x chunk_px), attrs: spacing_um
    /levels/1 ...           each level half the size of the one before (rounded up)

Pixel (row i, col j) of a level with spacing ``s`` µm covers the square whose centre lies at
``(x_mm, y_mm) = ((j + 0.5) * s / 1000, (i + 0.5) * s / 1000)`` in section coordinates: x to the right along
columns, y downwards along rows, origin at the top-left corner of the image. All levels share this frame.

Intensity levels are made by 2x2 mean pooling, label levels by taking every second pixel (nearest
neighbour), so labels never mix. Reading a window touches only the HDF5 chunks under it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cortexgraph.errors import DataFormatError
from cortexgraph.outputs import atomic_path

RASTER_FORMAT = "cortexgraph-raster"
RASTER_VERSION = 1
DEFAULT_CHUNK_PX = 2048


def downsample_level(array: np.ndarray, kind: str) -> np.ndarray:
    """One pyramid step: 2x2 mean pooling (intensity) or every second pixel (labels).

    Odd sizes are handled by edge replication for intensity images, so the output has
    ``ceil(rows / 2) x ceil(cols / 2)`` pixels for both kinds.
    """
    if kind == "labels":
        return array[::2, ::2]
    rows, cols = array.shape[:2]
    pad = [(0, rows % 2), (0, cols % 2)] + [(0, 0)] * (array.ndim - 2)
    padded = np.pad(array.astype(np.float32), pad, mode="edge")
    pooled = (
        padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2]
    ) * 0.25
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return np.clip(np.rint(pooled), info.min, info.max).astype(array.dtype)
    return pooled.astype(array.dtype)


def write_raster(
    path: str | os.PathLike,
    array: np.ndarray,
    spacing_um: float,
    *,
    kind: str = "intensity",
    num_levels: int | None = None,
    min_level_px: int = 256,
    chunk_px: int = DEFAULT_CHUNK_PX,
    compression: str | None = "gzip",
    attrs: dict | None = None,
) -> Path:
    """Write a 2D raster with its resolution pyramid to an HDF5 file, atomically.

    Parameters
    ----------
    path : output ``.h5`` file.
    array : (rows, cols) or (rows, cols, channels) array; level 0.
    spacing_um : pixel spacing of level 0 in micrometres.
    kind : ``"intensity"`` (mean-pooled pyramid) or ``"labels"`` (nearest-neighbour pyramid).
    num_levels : number of levels; default: halve until the longer side is below ``min_level_px``.
    chunk_px : chunk edge in pixels (the source lab used 2048).
    compression : HDF5 filter (``"gzip"`` level 1 by default, readable by any HDF5 tool).
    attrs : extra file attributes (e.g. ``section``).

    Returns
    -------
    The path written.
    """
    if kind not in ("intensity", "labels"):
        raise ValueError(f"kind must be 'intensity' or 'labels', not {kind!r}")
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"raster must be 2D or 2D + channels, got shape {array.shape}")
    if num_levels is None:
        num_levels = 1
        size = max(array.shape[:2])
        while size > min_level_px:
            size = (size + 1) // 2
            num_levels += 1
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["format"] = RASTER_FORMAT
            handle.attrs["format_version"] = RASTER_VERSION
            handle.attrs["kind"] = kind
            for key, value in (attrs or {}).items():
                handle.attrs[key] = value
            level_array = array
            for level in range(num_levels):
                chunks = (min(chunk_px, level_array.shape[0]), min(chunk_px, level_array.shape[1]))
                chunks = chunks + tuple(level_array.shape[2:])
                opts = {"compression": compression}
                if compression == "gzip":
                    opts["compression_opts"] = 1
                dataset = handle.create_dataset(
                    f"levels/{level}", data=level_array, chunks=chunks, **opts
                )
                dataset.attrs["spacing_um"] = float(spacing_um) * 2**level
                if level + 1 < num_levels:
                    level_array = downsample_level(level_array, kind)
    return Path(path)


@dataclass(frozen=True)
class RasterLevel:
    """Shape and pixel spacing of one pyramid level."""

    index: int
    shape: tuple[int, ...]
    spacing_um: float


class Raster:
    """Lazy reader of a raster written by :func:`write_raster`.

    The file is opened on first access and kept open; use as a context manager or call
    :meth:`close`. ``file_obj`` may be any binary file-like object (used by tests to count reads).
    ``chunk_cache_mb`` sets HDF5's cache of decompressed chunks (default: h5py's 1 MiB, which holds
    no 2048 x 2048 chunk); a reader that visits neighbouring windows (the web viewer's tiles) keeps
    the chunks under them decoded with a larger cache.
    """

    def __init__(
        self, path: str | os.PathLike, file_obj=None, *, chunk_cache_mb: float | None = None
    ) -> None:
        self.path = Path(path)
        self._file_obj = file_obj
        self._cache_opts = (
            {} if chunk_cache_mb is None else {"rdcc_nbytes": int(chunk_cache_mb * 2**20)}
        )
        self._handle: h5py.File | None = None
        self._levels: list[RasterLevel] | None = None

    # -- opening ---------------------------------------------------------------------------------
    @property
    def handle(self) -> h5py.File:
        if self._handle is None:
            try:
                if self._file_obj is not None:
                    self._handle = h5py.File(self._file_obj, "r", **self._cache_opts)
                else:
                    self._handle = h5py.File(self.path, "r", **self._cache_opts)
            except FileNotFoundError:
                raise DataFormatError(
                    "file not found", file=self.path, fix="check the path in sections.tsv"
                ) from None
            except OSError as exc:
                raise DataFormatError(
                    f"not a readable HDF5 file ({exc})",
                    file=self.path,
                    fix="the file is truncated or corrupt; copy or convert it again",
                ) from None
            if self._handle.attrs.get("format") != RASTER_FORMAT or "levels" not in self._handle:
                self.close()
                raise DataFormatError(
                    "HDF5 file is not a cortexgraph raster (no 'levels' group / format attribute)",
                    file=self.path,
                    fix="convert it with cortexgraph.data.raster.write_raster (docs/data-format.md)",
                )
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- metadata --------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return str(self.handle.attrs.get("kind", "intensity"))

    @property
    def levels(self) -> list[RasterLevel]:
        if self._levels is None:
            group = self.handle["levels"]
            names = sorted(group.keys(), key=int)
            self._levels = [
                RasterLevel(int(n), tuple(group[n].shape), float(group[n].attrs["spacing_um"]))
                for n in names
            ]
        return self._levels

    @property
    def spacing_um(self) -> float:
        """Spacing of level 0 in µm."""
        return self.levels[0].spacing_um

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of level 0."""
        return self.levels[0].shape

    @property
    def extent_mm(self) -> tuple[float, float]:
        """(width_mm, height_mm) of the image."""
        rows, cols = self.shape[:2]
        return cols * self.spacing_um / 1000.0, rows * self.spacing_um / 1000.0

    def dataset(self, level: int) -> h5py.Dataset:
        return self.handle[f"levels/{level}"]

    def level_for_spacing(self, spacing_um: float) -> RasterLevel:
        """The coarsest level whose spacing is not coarser than ``spacing_um`` (level 0 if none)."""
        best = self.levels[0]
        for level in self.levels:
            if level.spacing_um <= spacing_um * (1 + 1e-6):
                best = level
        return best

    # -- reading ---------------------------------------------------------------------------------
    def read_level(self, level: int = 0) -> np.ndarray:
        """Read one whole level into memory."""
        return self.dataset(level)[...]

    def read_window(
        self, level: int, row0: int, col0: int, rows: int, cols: int, fill=0
    ) -> np.ndarray:
        """Read ``rows x cols`` pixels starting at (row0, col0) of a level; outside the image: ``fill``.

        Only the chunks overlapping the window are read.
        """
        dataset = self.dataset(level)
        height, width = dataset.shape[:2]
        out = np.full((rows, cols) + dataset.shape[2:], fill, dtype=dataset.dtype)
        r_lo, r_hi = max(row0, 0), min(row0 + rows, height)
        c_lo, c_hi = max(col0, 0), min(col0 + cols, width)
        if r_lo < r_hi and c_lo < c_hi:
            out[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = dataset[
                r_lo:r_hi, c_lo:c_hi
            ]
        return out

    def read_at_spacing(self, spacing_um: float) -> np.ndarray:
        """The whole image resampled to ``spacing_um`` (labels: nearest neighbour; intensity: area mean).

        Uses the pyramid level closest below the requested spacing, then resamples.
        """
        level = self.level_for_spacing(spacing_um)
        data = self.read_level(level.index)
        width_mm, height_mm = self.extent_mm
        rows = max(1, int(round(height_mm * 1000.0 / spacing_um)))
        cols = max(1, int(round(width_mm * 1000.0 / spacing_um)))
        return resample_grid(data, level.spacing_um, spacing_um, (rows, cols), self.kind)

    def read_patch(
        self,
        center_mm: tuple[float, float],
        size_px: int | tuple[int, int],
        spacing_um: float,
        *,
        angle_rad: float = 0.0,
        fill=0,
    ) -> np.ndarray:
        """Read a square (or rectangular) patch centred at ``center_mm`` = (x_mm, y_mm).

        Parameters
        ----------
        center_mm : patch centre in section mm coordinates (x right, y down).
        size_px : output size in pixels (rows, cols) or one int for a square patch.
        spacing_um : output pixel spacing; the pyramid level closest below it is read.
        angle_rad : rotation of the patch axes (counter-clockwise in the image), resampled bilinearly
            (intensity) or by nearest neighbour (labels).
        fill : value outside the image.

        Returns
        -------
        (rows, cols[, channels]) array in the raster's dtype (intensity rotated/rescaled patches are
        float32).
        """
        rows, cols = (size_px, size_px) if np.isscalar(size_px) else tuple(size_px)
        level = self.level_for_spacing(spacing_um)
        scale = spacing_um / level.spacing_um  # level pixels per output pixel
        # centre of the patch in level pixel coordinates (continuous, pixel centres at integers)
        c_col = center_mm[0] * 1000.0 / level.spacing_um - 0.5
        c_row = center_mm[1] * 1000.0 / level.spacing_um - 0.5
        exact = abs(scale - 1.0) < 1e-9 and angle_rad == 0.0
        if exact:
            row0 = int(round(c_row - (rows - 1) / 2.0))
            col0 = int(round(c_col - (cols - 1) / 2.0))
            return self.read_window(level.index, row0, col0, rows, cols, fill=fill)
        half_diag = 0.5 * np.hypot(rows, cols) * scale + 2
        row0 = int(np.floor(c_row - half_diag))
        col0 = int(np.floor(c_col - half_diag))
        size = int(np.ceil(2 * half_diag)) + 1
        window = self.read_window(level.index, row0, col0, size, size, fill=fill)
        # output pixel (r, c) -> level coordinates
        rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float64)
        dr = (rr - (rows - 1) / 2.0) * scale
        dc = (cc - (cols - 1) / 2.0) * scale
        cos_a, sin_a = np.cos(angle_rad), np.sin(angle_rad)
        src_c = c_col + cos_a * dc + sin_a * dr - col0
        src_r = c_row - sin_a * dc + cos_a * dr - row0
        return sample_image(window, src_r, src_c, self.kind, fill, smooth=scale > 1.5)


def sample_image(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray, kind: str, fill=0, smooth: bool = False
) -> np.ndarray:
    """Sample ``image`` at continuous (row, col) positions: bilinear for intensity, nearest for labels."""
    from scipy import ndimage

    order = 0 if kind == "labels" else 1
    source = image
    if smooth and kind != "labels":
        sigma = [0.5, 0.5] + [0] * (image.ndim - 2)
        source = ndimage.gaussian_filter(image.astype(np.float32), sigma)
    coords = np.stack([rows, cols])
    if image.ndim == 2:
        out = ndimage.map_coordinates(source, coords, order=order, mode="constant", cval=fill)
    else:
        out = np.stack(
            [
                ndimage.map_coordinates(
                    source[..., ch], coords, order=order, mode="constant", cval=fill
                )
                for ch in range(image.shape[2])
            ],
            axis=-1,
        )
    if kind == "labels":
        return out.astype(image.dtype)
    return out.astype(np.float32)


def resample_grid(
    data: np.ndarray,
    source_spacing_um: float,
    target_spacing_um: float,
    target_shape: tuple[int, int],
    kind: str,
) -> np.ndarray:
    """Resample a whole image between pixel grids that share the top-left corner.

    Labels use nearest neighbour (the source pixel under each target pixel centre); intensity images use
    block means when downscaling by an integer factor and bilinear interpolation otherwise.
    """
    ratio = target_spacing_um / source_spacing_um
    rows, cols = target_shape
    if abs(ratio - 1.0) < 1e-9 and data.shape[:2] == (rows, cols):
        return data
    centre_r = (np.arange(rows) + 0.5) * ratio - 0.5
    centre_c = (np.arange(cols) + 0.5) * ratio - 0.5
    if kind == "labels":
        ri = np.clip(np.floor(centre_r + 0.5).astype(np.int64), 0, data.shape[0] - 1)
        ci = np.clip(np.floor(centre_c + 0.5).astype(np.int64), 0, data.shape[1] - 1)
        return data[np.ix_(ri, ci)]
    factor = int(round(ratio))
    if abs(ratio - factor) < 1e-9 and factor >= 2:
        padded_rows, padded_cols = rows * factor, cols * factor
        pad = [(0, max(0, padded_rows - data.shape[0])), (0, max(0, padded_cols - data.shape[1]))]
        pad += [(0, 0)] * (data.ndim - 2)
        block = np.pad(data.astype(np.float32), pad, mode="edge")[:padded_rows, :padded_cols]
        block = block.reshape((rows, factor, cols, factor) + data.shape[2:])
        return block.mean(axis=(1, 3)).astype(np.float32)
    rr, cc = np.meshgrid(centre_r, centre_c, indexing="ij")
    return sample_image(data, rr, cc, kind, fill=0, smooth=ratio > 1.5)
