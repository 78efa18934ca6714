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

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import h5py
import numpy as np

from cortexgraph.errors import DataFormatError, ParameterError
from cortexgraph.outputs import atomic_path, write_h5_dataset

RASTER_FORMAT = "cortexgraph-raster"
RASTER_VERSION = 1
DEFAULT_CHUNK_PX = 2048
MAX_CANVAS_MM = 500.0
"""No section of a human brain is wider or taller than this: a larger canvas is a spacing error."""
SPACING_TOLERANCE = 1e-6
"""Relative tolerance when comparing pixel spacings."""


@dataclass(frozen=True)
class RasterRule:
    """What a section raster of one kind must be: dimensions, channels, dtypes, pyramid kind."""

    ndim: int
    channels: int | None
    dtypes: tuple[str, ...]
    pyramid: str | None  # required ``kind`` attribute ("labels" for class and id images), or None
    describe: str


SECTION_RASTER_RULES = {
    "image": RasterRule(2, None, ("uint8", "uint16"), None, "2D uint8 or uint16 grey values"),
    "mask": RasterRule(2, None, ("uint8",), "labels", "2D uint8 tissue classes 0, 1, 2"),
    "annotation": RasterRule(
        2, None, ("uint8", "uint16", "int16", "int32", "uint32"), "labels", "2D integer area ids"
    ),
    "coords": RasterRule(
        3, 3, ("float32", "float64"), None, "(rows, cols, 3) float canonical coordinates"
    ),
}
"""The rules of docs/data-format.md for the raster columns of sections.tsv."""


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """float32 mean of a 2D array over blocks of ``factor`` x ``factor`` pixels: ``ceil(rows /
    factor) x ceil(cols / factor)`` blocks, the last partial ones completed by edge replication."""
    if factor == 1:
        return array.astype(np.float32)
    rows, cols = array.shape
    out_r, out_c = -(-rows // factor), -(-cols // factor)
    padded = np.pad(
        array.astype(np.float32), ((0, out_r * factor - rows), (0, out_c * factor - cols)), "edge"
    )
    return padded.reshape(out_r, factor, out_c, factor).mean(axis=(1, 3))


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
        raise ParameterError(
            f"raster kind must be 'intensity' or 'labels', not {kind!r}",
            file=str(path),
            fix="pass kind='intensity' (images, coordinate maps) or kind='labels' (masks, ids)",
        )
    array = np.asarray(array)
    if array.ndim not in (2, 3) or min(array.shape) == 0:
        raise ParameterError(
            f"raster must be a non-empty 2D array or 2D + channels, got shape {array.shape}",
            file=str(path),
            fix="pass a (rows, cols) or (rows, cols, channels) array",
        )
    if not (isinstance(spacing_um, (int, float, np.floating, np.integer)) and spacing_um > 0):
        raise ParameterError(
            f"spacing_um must be a number > 0, got {spacing_um!r}",
            file=str(path),
            fix="give the level-0 pixel spacing in micrometres",
        )
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
                opts: dict[str, Any] = {"compression": compression}
                if compression == "gzip":
                    opts["compression_opts"] = 1
                dataset = write_h5_dataset(
                    handle, f"levels/{level}", data=level_array, chunks=chunks, **opts
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
            if self._file_obj is None and self.path.exists() and not self.path.is_file():
                raise DataFormatError(
                    "not a regular file", file=self.path, fix="point sections.tsv to the HDF5 file"
                )
            try:
                if self._file_obj is not None:
                    self._handle = h5py.File(self._file_obj, "r", **self._cache_opts)
                else:
                    self._handle = h5py.File(self.path, "r", **self._cache_opts)
            except FileNotFoundError:
                raise DataFormatError(
                    "file not found", file=self.path, fix="check the path in sections.tsv"
                ) from None
            except (OSError, ValueError, RuntimeError) as exc:
                raise DataFormatError(
                    f"not a readable HDF5 file ({exc})",
                    file=self.path,
                    fix="the file is truncated or corrupt; copy or convert it again",
                ) from None
            try:
                fmt = _text(self._handle.attrs.get("format"))
                version = self._handle.attrs.get("format_version", RASTER_VERSION)
                has_levels = isinstance(self._handle.get("levels"), h5py.Group)
            except (OSError, RuntimeError, KeyError, TypeError) as exc:
                self.close()
                raise DataFormatError(
                    f"unreadable HDF5 metadata ({exc})",
                    file=self.path,
                    fix="the file is corrupt; copy or convert it again",
                ) from None
            if fmt != RASTER_FORMAT or not has_levels:
                self.close()
                raise DataFormatError(
                    "HDF5 file is not a cortexgraph raster (no 'levels' group / format attribute)",
                    file=self.path,
                    fix="convert it with cortexgraph.data.raster.write_raster (docs/data-format.md)",
                )
            if _integer_attr(version) != RASTER_VERSION:
                self.close()
                raise DataFormatError(
                    f"raster format_version {_plain(version)!r} is not supported (this version reads "
                    f"{RASTER_VERSION})",
                    file=self.path,
                    fix="convert it with this version's cortexgraph.data.raster.write_raster",
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
        return _text(self.handle.attrs.get("kind", "intensity")) or "intensity"

    @property
    def levels(self) -> list[RasterLevel]:
        """The pyramid levels, validated: named 0..n-1, 2D or 2D + channels, numeric, of one dtype
        and channel count, each with a finite ``spacing_um`` > 0 twice the previous one and half
        its size (rounded up). Anything else raises DataFormatError naming the file."""
        if self._levels is None:
            self._levels = _read_levels(self.handle["levels"], self.path)
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

    @property
    def dtype(self) -> np.dtype:
        return self.dataset(0).dtype

    def attribute(self, name: str):
        """A file attribute (e.g. ``section``), or None."""
        return self.handle.attrs.get(name)

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
        if np.isscalar(size_px):
            rows = cols = cast(int, size_px)
        else:
            rows, cols = cast("tuple[int, int]", size_px)
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


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    return value if isinstance(value, str) else (None if value is None else str(value))


def _plain(value):
    """An HDF5 attribute as a plain Python value (for messages)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _integer_attr(value) -> int | None:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    return None


def _number_attr(value) -> float | None:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _read_levels(group: h5py.Group, path: Path) -> list[RasterLevel]:
    def bad(message: str, fix: str = "convert the file with write_raster (docs/data-format.md)"):
        return DataFormatError(message, file=path, fix=fix)

    names = list(group.keys())
    if not names:
        raise bad("the raster has no levels")
    if not all(n.isdigit() for n in names) or sorted(int(n) for n in names) != list(
        range(len(names))
    ):
        raise bad(f"raster levels must be named 0..{len(names) - 1}, found {sorted(names)}")
    levels: list[RasterLevel] = []
    for index in range(len(names)):
        link = group.get(str(index), getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise bad(
                f"level {index} is a link to another file or place ({type(link).__name__})",
                "store the pixels in the raster file itself (external links could read files "
                "outside the cohort)",
            )
        dataset = group[str(index)]
        if not isinstance(dataset, h5py.Dataset):
            raise bad(f"level {index} is not a dataset")
        if dataset.external or dataset.is_virtual:
            raise bad(
                f"level {index} keeps its pixels in other files (external or virtual dataset)",
                "store the pixels in the raster file itself (write_raster does)",
            )
        shape = tuple(int(n) for n in dataset.shape)
        if len(shape) not in (2, 3) or min(shape, default=0) == 0:
            raise bad(
                f"level {index} has shape {shape}; a section raster is 2D (rows, cols) or "
                "(rows, cols, channels) and not empty"
            )
        if dataset.dtype.kind not in "uifb":
            raise bad(f"level {index} has dtype {dataset.dtype}, not numbers")
        spacing = _number_attr(dataset.attrs.get("spacing_um"))
        if spacing is None or spacing <= 0:
            raise bad(
                f"level {index} has no finite spacing_um > 0 "
                f"(spacing_um = {_plain(dataset.attrs.get('spacing_um'))!r})",
                "write the pixel spacing in micrometres as the spacing_um attribute of every level",
            )
        if levels:
            first = levels[0]
            expected = first.spacing_um * 2**index
            if abs(spacing - expected) > SPACING_TOLERANCE * expected:
                raise bad(
                    f"level {index} has spacing {spacing:g} um, expected {expected:g} um (each "
                    "level halves the previous one)"
                )
            if len(shape) != len(first.shape) or shape[2:] != first.shape[2:]:
                raise bad(f"level {index} has shape {shape} but level 0 has {first.shape}")
            if dataset.dtype != group["0"].dtype:
                raise bad(
                    f"level {index} has dtype {dataset.dtype} but level 0 has {group['0'].dtype}"
                )
            for axis in (0, 1):
                want = math.ceil(first.shape[axis] / 2**index)
                if abs(shape[axis] - want) > 1:
                    raise bad(
                        f"level {index} has shape {shape} but half of the previous level is about "
                        f"{want} on axis {axis}"
                    )
        levels.append(RasterLevel(index, shape, spacing))
    return levels


def section_raster_problems(
    raster: Raster,
    role: str,
    *,
    spacing_um: float | None = None,
    section: int | None = None,
) -> list[DataFormatError]:
    """Header problems of a raster used as ``role`` (image, mask, annotation, coords) of a section.

    Reads only metadata: the level table (:attr:`Raster.levels`), the dtype, the ``kind`` and
    ``section`` attributes. Checks the dimensions, channels and dtype of
    :data:`SECTION_RASTER_RULES`, the pyramid kind (class and id images need nearest-neighbour
    ``labels`` pyramids), the ``section`` attribute against the section's row (when the file has
    one), the level-0 spacing against brain.toml and a canvas below :data:`MAX_CANVAS_MM`.

    Returns a list of DataFormatError (empty when the header is valid); an unreadable file gives one.
    """
    rule = SECTION_RASTER_RULES[role]
    out: list[DataFormatError] = []

    def add(message: str, fix: str) -> None:
        out.append(DataFormatError(message, file=raster.path, section=section, fix=fix))

    try:
        levels = raster.levels
        dtype = raster.dtype
        kind = raster.kind
        stored_section = raster.attribute("section")
    except DataFormatError as exc:
        return [DataFormatError(exc.message, file=exc.file, section=section, fix=exc.fix)]
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        return [
            DataFormatError(
                f"{role} file is unreadable ({type(exc).__name__}: {exc})",
                file=raster.path,
                section=section,
                fix="copy or convert the file again",
            )
        ]
    shape = levels[0].shape
    if len(shape) != rule.ndim or (rule.channels is not None and shape[2] != rule.channels):
        add(
            f"{role} has shape {shape}, expected {rule.describe}",
            f"store the {role} as {rule.describe} (docs/data-format.md)",
        )
    if dtype.name not in rule.dtypes:
        add(
            f"{role} has dtype {dtype.name}, expected {' or '.join(rule.dtypes)}",
            f"store the {role} as {rule.describe} (docs/data-format.md)",
        )
    if rule.pyramid is not None and kind != rule.pyramid:
        add(
            f"{role} is stored with kind={kind!r}; its coarser levels would mix "
            f"{'classes' if role == 'mask' else 'area ids'}",
            f"write it with write_raster(..., kind={rule.pyramid!r})",
        )
    if stored_section is not None:
        number = _integer_attr(stored_section)
        if number is None or (section is not None and number != section):
            add(
                f"the file's section attribute is {_plain(stored_section)!r} but its row in sections.tsv "
                f"is section {section}",
                "point the row to the file of this section (or correct the file's attribute)",
            )
    if spacing_um is not None and abs(levels[0].spacing_um - spacing_um) > (
        SPACING_TOLERANCE * spacing_um
    ):
        add(
            f"{role} spacing is {levels[0].spacing_um:g} um but brain.toml says {spacing_um:g} um",
            f"correct spacing_um.{role} in brain.toml, or rewrite the file with level-0 spacing "
            f"{spacing_um:g} um",
        )
    width_mm, height_mm = raster.extent_mm
    if max(width_mm, height_mm) > MAX_CANVAS_MM:
        add(
            f"{role} covers {width_mm:.4g} x {height_mm:.4g} mm (shape {shape[:2]} at "
            f"{levels[0].spacing_um:g} um), more than {MAX_CANVAS_MM:g} mm",
            "the spacing_um attribute is in micrometres; correct it (or the image size)",
        )
    return out


def storage_problems(raster: Raster, sample: bool = True, deep: bool = False) -> list[str]:
    """Problems of the stored bytes of every level (chunked or contiguous HDF5 alike).

    Checks that every allocated chunk (or the contiguous block) lies inside the file (a shorter
    file is truncated). ``sample`` decodes the first, middle and last allocated chunk of every
    level (or three rows of a contiguous level); ``deep`` decodes everything, block by block.
    Returns messages (empty = fine); never raises for a bad file.
    """
    problems = []
    try:
        size = raster.path.stat().st_size if raster._file_obj is None else None
        for level in raster.levels:
            dataset = raster.dataset(level.index)
            blocks = _stored_blocks(dataset)
            if size is not None:
                for offset, nbytes, where in blocks:
                    if offset is not None and offset + nbytes > size:
                        problems.append(
                            f"level {level.index} {where} lies beyond the end of the file "
                            "(truncated)"
                        )
                        break
            if problems:
                continue
            if deep:
                _read_all(dataset)
            elif sample:
                _read_sample(dataset)
    except DataFormatError as exc:
        problems.append(exc.message)
    except Exception as exc:  # h5py and the decompression filters raise many types
        problems.append(f"truncated or unreadable ({type(exc).__name__}: {exc})")
    return problems


def _stored_blocks(dataset: h5py.Dataset) -> list[tuple[int | None, int, str]]:
    if dataset.chunks is None:
        return [(dataset.id.get_offset(), dataset.id.get_storage_size(), "data block")]
    out = []
    for k in range(dataset.id.get_num_chunks()):
        info = dataset.id.get_chunk_info(k)
        out.append((info.byte_offset, info.size, f"chunk {k}"))
    return out


def _read_sample(dataset: h5py.Dataset) -> None:
    if dataset.chunks is None:
        rows = dataset.shape[0]
        for r in sorted({0, rows // 2, rows - 1}):
            dataset[r : r + 1]
        return
    count = dataset.id.get_num_chunks()
    for k in sorted({0, count // 2, count - 1} if count else set()):
        origin = dataset.id.get_chunk_info(k).chunk_offset
        window = tuple(
            slice(o, min(o + c, n))
            for o, c, n in zip(origin, dataset.chunks, dataset.shape, strict=True)
        )
        dataset[window]


def _read_all(dataset: h5py.Dataset, block_rows: int | None = None) -> None:
    if dataset.chunks is not None:
        for window in dataset.iter_chunks():
            dataset[window]
        return
    row_bytes = max(1, int(np.prod(dataset.shape[1:])) * dataset.dtype.itemsize)
    step = block_rows or max(1, (64 << 20) // row_bytes)
    for r in range(0, dataset.shape[0], step):
        dataset[r : r + step]
