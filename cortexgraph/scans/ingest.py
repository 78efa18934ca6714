"""``cortexgraph ingest``: a folder of scans and a section list become a brain in cortexgraph's format.

Inputs
------
A **section list** (tab-separated, header required; by default ``sections.tsv`` in the scans folder):

=============  ======================================================================================
column         meaning
=============  ======================================================================================
``section``    physical section number (integer >= 0, posterior -> anterior, each once)
``scan``       the scan file, relative to the list's folder (empty for a missing section)
``missing``    optional flag (1/0/true/false): the section was digitized but is lost
``mirrored``   optional flag: the scan is left-right mirrored (copied to sections.tsv)
``spacing_um`` optional pixel spacing of this scan in µm (overrides the file's metadata)
=============  ======================================================================================

Scans may be OME-TIFF / BigTIFF (tiled or striped; read through tifffile's zarr view, one tile at a
time), OME-Zarr (NGFF 0.4 / 0.5; the finest dataset of the first multiscale) or plain TIFF / PNG /
JPEG (PNG and JPEG are decoded whole by imageio: keep such files small). Colour scans become grey
values by the luminance weights 0.2125 R + 0.7154 G + 0.0721 B; uint8 and uint16 grey values are kept.

Pixel spacing comes from, in this order: ``--spacing-um`` (all scans), the list's ``spacing_um``
column, the OME ``PhysicalSizeX/Y`` (+ unit) of an OME-TIFF, the ``scale`` of an OME-Zarr dataset
(+ axis unit), the TIFF ``XResolution`` / ``ResolutionUnit`` tags (inch or centimetre). A scan
without any is refused, naming the file and the option that fixes it.

Outputs (``<cohort>/<brain>/``)
-------------------------------
``images/sNNNN.h5``  the section image with its pyramid (docs/data-format.md), written tile by tile:
    level 0 is streamed from the scan in ``chunk_px`` tiles (optionally block-averaged by
    ``downscale``), each coarser level is computed from the one before it, tile by tile; no level is
    ever held in memory whole. The file records its source (name, size, head/tail SHA-256,
    downscale, spacing) in the attribute ``ingest_source``.
``brain.toml``  created (or updated: ``spacing_um.image``) with the image spacing.
``sections.tsv``  one row per listed section; columns other than ``image``/``missing``/``mirrored``
    of an existing table (masks, annotations...) are kept.
``<cohort>/cohort.toml``  created when absent; the brain is added to ``brains``.

Resuming: a section whose image file exists, reads as a valid raster and records the same source
(size and head/tail digest), downscale and spacing is skipped; everything is written atomically, so an
interrupted run leaves only complete files and the next run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cortexgraph.data.manifest import Brain, Cohort, SectionRecord, read_tsv_lines
from cortexgraph.data.names import check_name
from cortexgraph.data.raster import (
    DEFAULT_CHUNK_PX,
    RASTER_FORMAT,
    RASTER_VERSION,
    Raster,
    block_mean,
    downsample_level,
)
from cortexgraph.errors import DataFormatError, ParameterError
from cortexgraph.outputs import atomic_path, write_h5_dataset

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

SCAN_LIST_COLUMNS = ("section", "scan", "missing", "mirrored", "spacing_um")
LUMINANCE = np.array([0.2125, 0.7154, 0.0721])
"""Weights of R, G, B for grey values (ITU-R BT.709, as scikit-image's rgb2gray)."""
MAX_SOURCE_BLOCK_PX = 2048
"""Edge of the largest block of source pixels read at once (times channels and dtype size)."""
DIGEST_BYTES = 1 << 20
"""Bytes hashed at the start and at the end of a scan file to recognise it on a resumed run."""
_UNIT_UM = {
    "m": 1e6,
    "meter": 1e6,
    "cm": 1e4,
    "centimeter": 1e4,
    "mm": 1e3,
    "millimeter": 1e3,
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "micrometer": 1.0,
    "micron": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
}
_FLAGS = {"": False, "0": False, "1": True, "false": False, "true": True}


def _install_fix() -> str:
    return "install the scan readers: pip install 'cortexgraph[scans]' (tifffile, zarr)"


# --------------------------------------------------------------------------------------------------
# section list
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanRow:
    """One row of the section list: the section, its scan (absolute path or None) and flags."""

    section: int
    scan: Path | None
    missing: bool = False
    mirrored: bool = False
    spacing_um: float | None = None

    @property
    def scan_file(self) -> Path:
        """The scan of a section that is not flagged missing (DataFormatError if none given)."""
        if self.scan is None:
            raise DataFormatError(
                "no scan given", section=self.section, fix="give its scan or flag it missing"
            )
        return self.scan


def read_scan_list(path: str | os.PathLike) -> list[ScanRow]:
    """Read and validate a section list (module docstring); scan paths are resolved against its
    folder and must stay inside it. Raises DataFormatError naming the file, line and fix."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(
            "section list not found",
            file=path,
            fix="write a TSV with columns section, scan (see docs/scans-in.md) or pass --sections",
        )
    numbered = read_tsv_lines(path, ("section", "scan"))
    if not numbered:
        raise DataFormatError("the section list is empty", file=path, fix="list the sections")
    unknown = sorted(set(numbered[0][1]) - set(SCAN_LIST_COLUMNS))
    if unknown:
        raise DataFormatError(
            f"unknown columns {unknown} in the section list",
            file=path,
            fix=f"use the columns {', '.join(SCAN_LIST_COLUMNS)} (tab-separated)",
        )
    folder = path.parent.resolve()
    rows: list[ScanRow] = []
    for number, row in numbered:
        try:
            section = int(row["section"])
            if section < 0:
                raise ValueError
        except ValueError:
            raise DataFormatError(
                f"line {number}: section {row['section']!r} is not an integer >= 0",
                file=path,
                fix="use integer section numbers",
            ) from None
        if rows and section <= rows[-1].section:
            raise DataFormatError(
                f"line {number}: section {section} is not after section {rows[-1].section}",
                file=path,
                section=section,
                fix="sort the list by section number (posterior -> anterior), each section once",
            )
        flags = {}
        for flag in ("missing", "mirrored"):
            value = row.get(flag, "").lower()
            if value not in _FLAGS:
                raise DataFormatError(
                    f"line {number}: {flag} flag {row[flag]!r} is not 0, 1, true or false",
                    file=path,
                    section=section,
                    fix="write 1 or 0 (or leave the cell empty)",
                )
            flags[flag] = _FLAGS[value]
        spacing = None
        if row.get("spacing_um"):
            try:
                spacing = float(row["spacing_um"])
                if not (math.isfinite(spacing) and spacing > 0):
                    raise ValueError
            except ValueError:
                raise DataFormatError(
                    f"line {number}: spacing_um {row['spacing_um']!r} is not a number > 0",
                    file=path,
                    section=section,
                    fix="give the pixel spacing in micrometres, or leave the cell empty",
                ) from None
        scan = None
        if row["scan"]:
            if flags["missing"]:
                raise DataFormatError(
                    f"line {number}: section {section} is flagged missing but names a scan",
                    file=path,
                    section=section,
                    fix="clear the scan cell or the missing flag",
                )
            scan = (folder / row["scan"]).resolve()
            if not scan.is_relative_to(folder):
                raise DataFormatError(
                    f"line {number}: scan {row['scan']!r} lies outside the list's folder",
                    file=path,
                    section=section,
                    fix="keep the scans in (or below) the folder of the section list",
                )
            if not scan.exists():
                raise DataFormatError(
                    f"line {number}: scan {row['scan']!r} not found",
                    file=path,
                    section=section,
                    fix="correct the file name in the section list",
                )
        elif not flags["missing"]:
            raise DataFormatError(
                f"line {number}: section {section} has no scan and is not flagged missing",
                file=path,
                section=section,
                fix="name its scan, or set missing to 1",
            )
        rows.append(ScanRow(section, scan, flags["missing"], flags["mirrored"], spacing))
    if not any(r.scan for r in rows):
        raise DataFormatError("no section has a scan", file=path, fix="list at least one scan")
    return rows


# --------------------------------------------------------------------------------------------------
# scan readers
# --------------------------------------------------------------------------------------------------
class ScanSource:
    """A scan opened for reading by windows.

    Attributes: ``path``, ``format`` (``ome-tiff``, ``tiff``, ``ome-zarr``, ``image``), ``shape``
    (rows, cols) of the finest level, ``channels`` (1 grey, 3/4 colour), ``dtype``,
    ``spacing_um`` (from the file's metadata, or None).
    :meth:`read` returns ``(rows, cols)`` grey values of a window in the scan's dtype (colour is
    converted by :data:`LUMINANCE`).
    """

    path: Path
    format: str
    shape: tuple[int, int]
    channels: int
    dtype: np.dtype
    spacing_um: float | None

    def _raw(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:  # (rows, cols[, ch])
        raise NotImplementedError

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        raw = np.asarray(self._raw(r0, r1, c0, c1))
        if raw.ndim == 2:
            return raw
        colour = raw[..., :3].astype(np.float32)
        if colour.shape[-1] == 1:
            return raw[..., 0]
        grey = colour @ LUMINANCE.astype(np.float32)
        info = np.iinfo(self.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(self.dtype)

    def close(self) -> None:
        pass

    def __enter__(self) -> ScanSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _axis_index(axes: str, shape: tuple[int, ...], path: Path) -> tuple[list, str]:
    """How to index an array with ``axes`` (tifffile letters or NGFF names upper-cased) so that
    Y, X (and a colour axis of 3 or 4 values) remain; returns (template index, channel axis or '')."""
    if "Y" not in axes or "X" not in axes:
        raise DataFormatError(
            f"scan has axes {axes!r} {shape}; no Y and X axes",
            file=path,
            fix="export the scan as a 2D image (Y, X, optionally colour channels)",
        )
    channel = ""
    for letter in ("S", "C"):
        if letter in axes and shape[axes.index(letter)] in (3, 4):
            channel = letter
            break
    index: list[slice | int] = []
    for letter, size in zip(axes, shape, strict=True):
        if letter in ("Y", "X") or letter == channel:
            index.append(slice(None))
        else:
            if size > 1:
                log.warning(
                    "%s: axis %s has %d planes; the first is ingested", path.name, letter, size
                )
            index.append(0)
    return index, channel


class _ArraySource(ScanSource):
    """A scan behind an array that reads windows lazily (zarr, or a decoded numpy array)."""

    def _setup(self, array, axes: str) -> None:
        self._array = array
        self._axes = axes
        self._index, channel = _axis_index(axes, tuple(array.shape), self.path)
        kept = [a for a, i in zip(axes, self._index, strict=True) if not isinstance(i, int)]
        self._kept = kept
        self._channel = channel
        self.shape = (int(array.shape[axes.index("Y")]), int(array.shape[axes.index("X")]))
        self.channels = int(array.shape[axes.index(channel)]) if channel else 1
        self.dtype = np.dtype(array.dtype)
        if self.dtype.kind not in "ui":
            raise DataFormatError(
                f"scan has {self.dtype} pixels; cortexgraph stores uint8 or uint16 grey values",
                file=self.path,
                fix="export the scan as 8- or 16-bit integers",
            )
        if self.dtype.itemsize > 2 or self.dtype.kind == "i":
            raise DataFormatError(
                f"scan has {self.dtype} pixels; cortexgraph stores uint8 or uint16 grey values",
                file=self.path,
                fix="export the scan as unsigned 8- or 16-bit integers",
            )

    def _raw(self, r0, r1, c0, c1):
        index = list(self._index)
        index[self._axes.index("Y")] = slice(r0, r1)
        index[self._axes.index("X")] = slice(c0, c1)
        block = np.asarray(self._array[tuple(index)])
        order = [self._kept.index("Y"), self._kept.index("X")]
        if self._channel:
            order.append(self._kept.index(self._channel))
        return np.transpose(block, order)


class TiffSource(_ArraySource):
    """OME-TIFF / BigTIFF / plain TIFF through tifffile's zarr view: windows decode only the tiles
    (or strips) under them."""

    def __init__(self, path: Path) -> None:
        try:
            import tifffile
        except ImportError:  # pragma: no cover - tifffile comes with scikit-image
            raise ParameterError(
                "tifffile is not installed", file=path, fix=_install_fix()
            ) from None
        try:
            import zarr
        except ImportError:
            raise ParameterError(
                "reading a TIFF scan tile by tile needs the zarr package",
                file=path,
                fix=_install_fix(),
            ) from None
        self.path = path
        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
            store = series.aszarr(level=0)
            array = zarr.open(store, mode="r")
        except Exception as exc:
            raise DataFormatError(
                f"not a readable TIFF ({type(exc).__name__}: {exc})",
                file=path,
                fix="check the file (truncated copy?) or export it again",
            ) from None
        self.format = "ome-tiff" if self._tif.is_ome else "tiff"
        self._setup(array, series.axes)
        self.spacing_um = self._ome_spacing() if self._tif.is_ome else None
        if self.spacing_um is None:
            self.spacing_um = _tiff_tag_spacing(series.pages[0] if series.pages else None)

    def _ome_spacing(self) -> float | None:
        metadata = self._tif.ome_metadata
        if metadata is None:
            return None
        try:
            root = ET.fromstring(metadata)
        except (ET.ParseError, TypeError):
            return None
        for element in root.iter():
            if element.tag.split("}")[-1] == "Pixels":
                values = []
                for axis in ("X", "Y"):
                    size = element.attrib.get(f"PhysicalSize{axis}")
                    unit = element.attrib.get(f"PhysicalSize{axis}Unit", "µm")
                    if size is None or unit not in _UNIT_UM:
                        return None
                    values.append(float(size) * _UNIT_UM[unit])
                return _square_spacing(values, self.path)
        return None

    def close(self) -> None:
        self._tif.close()


def _tiff_tag_spacing(page) -> float | None:
    """Spacing from XResolution / YResolution and ResolutionUnit (2 inch, 3 centimetre), or None."""
    if page is None:
        return None
    tags = page.tags
    try:
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    except (TypeError, ValueError):
        return None
    per = {2: 25400.0, 3: 10000.0}.get(unit)
    if per is None or "XResolution" not in tags:
        return None
    values = []
    for name in ("XResolution", "YResolution"):
        if name not in tags:
            continue
        num, den = tags[name].value
        if not num or not den:
            return None
        values.append(per / (num / den))
    # a resolution of exactly 72 or 96 dpi (and 1) is a screen default, not a measurement
    if any(abs(25400.0 / v - dpi) < 1e-6 for v in values for dpi in (1.0, 72.0, 96.0)):
        return None
    return _square_spacing(values, None)


def _square_spacing(values: list[float], path: Path | None) -> float | None:
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        return None
    if max(values) > min(values) * (1 + 1e-3):
        raise DataFormatError(
            f"scan pixels are not square ({values[0]:g} x {values[-1]:g} um)",
            file=path,
            fix="resample the scan to square pixels before ingesting",
        )
    return float(values[0])


class ZarrSource(_ArraySource):
    """An OME-Zarr image (NGFF 0.4 / 0.5): the finest dataset of the first multiscale, read by
    chunks in place."""

    def __init__(self, path: Path) -> None:
        try:
            import zarr
        except ImportError:
            raise ParameterError(
                "reading OME-Zarr needs the zarr package", file=path, fix=_install_fix()
            ) from None
        self.path = path
        self.format = "ome-zarr"
        try:
            group = zarr.open_group(str(path), mode="r")
            attrs: dict[str, Any] = dict(group.attrs)
        except Exception as exc:
            raise DataFormatError(
                f"not a readable OME-Zarr group ({type(exc).__name__}: {exc})",
                file=path,
                fix="point the section list to the image's .zarr folder (the one with multiscales)",
            ) from None
        multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if not multiscales:
            raise DataFormatError(
                "OME-Zarr group has no 'multiscales' metadata",
                file=path,
                fix="point the section list to the image group (NGFF 0.4 or 0.5)",
            )
        scale = multiscales[0]
        axes_meta = scale.get("axes") or ["t", "c", "z", "y", "x"]
        names = [a["name"] if isinstance(a, dict) else str(a) for a in axes_meta]
        units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
        dataset = scale["datasets"][0]
        try:
            array = group[dataset["path"]]
        except KeyError:
            raise DataFormatError(
                f"OME-Zarr dataset {dataset['path']!r} is missing",
                file=path,
                fix="copy the image again (the multiscales metadata names a missing array)",
            ) from None
        axes = "".join(n[0].upper() for n in names)
        self._setup(array, axes)
        factors = np.ones(len(names))
        for transforms in (
            dataset.get("coordinateTransformations", []),
            scale.get("coordinateTransformations", []),
        ):
            for transform in transforms:
                if transform.get("type") == "scale":
                    factors = factors * np.asarray(transform["scale"], dtype=float)
        values: list[float] = []
        for axis in ("x", "y"):
            k = names.index(axis)
            unit = units[k]
            if unit is None or unit not in _UNIT_UM:
                values = []
                break
            values.append(float(factors[k]) * _UNIT_UM[unit])
        self.spacing_um = _square_spacing(values, path) if values else None


class ImageSource(_ArraySource):
    """PNG / JPEG and other single images decoded whole by imageio (not streamed)."""

    def __init__(self, path: Path) -> None:
        import imageio.v3 as iio

        self.path = path
        self.format = "image"
        try:
            array = np.asarray(iio.imread(path))
        except Exception as exc:
            raise DataFormatError(
                f"not a readable image ({type(exc).__name__}: {exc})",
                file=path,
                fix="export the scan as OME-TIFF, TIFF or PNG",
            ) from None
        axes = "YX" if array.ndim == 2 else "YXS"
        self._setup(array, axes)
        self.spacing_um = None


def open_scan(path: str | os.PathLike) -> ScanSource:
    """Open a scan by its name: ``.zarr`` folders (or folders with ``.zattrs`` / ``zarr.json``) as
    OME-Zarr, ``.tif``/``.tiff``/``.btf``/``.tf8`` as TIFF, anything else through imageio."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        if name.endswith(".zarr") or (path / ".zattrs").exists() or (path / "zarr.json").exists():
            return ZarrSource(path)
        raise DataFormatError(
            "a folder that is not an OME-Zarr image",
            file=path,
            fix="name a scan file or an OME-Zarr image folder",
        )
    if name.endswith((".tif", ".tiff", ".btf", ".tf8", ".ome.tif", ".ome.tiff", ".svs")):
        return TiffSource(path)
    return ImageSource(path)


# --------------------------------------------------------------------------------------------------
# identity of a source (for resuming)
# --------------------------------------------------------------------------------------------------
def source_identity(path: str | os.PathLike) -> dict:
    """``{"name", "size", "digest"}`` of a scan: its total size in bytes and the SHA-256 of the first
    and last MiB (of a file), or of the sorted member names, sizes and metadata files (of an OME-Zarr
    folder). Cheap for terabyte scans; any rewrite of a file through a normal program changes it."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        size = 0
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            relative = member.relative_to(path).as_posix()
            nbytes = member.stat().st_size
            size += nbytes
            digest.update(f"{relative}\t{nbytes}\n".encode())
            if member.name in (".zattrs", ".zarray", ".zgroup", "zarr.json"):
                digest.update(member.read_bytes())
    else:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            digest.update(handle.read(DIGEST_BYTES))
            if size > DIGEST_BYTES:
                handle.seek(max(DIGEST_BYTES, size - DIGEST_BYTES))
                digest.update(handle.read(DIGEST_BYTES))
    return {"name": path.name, "size": int(size), "digest": "sha256:" + digest.hexdigest()}


# --------------------------------------------------------------------------------------------------
# streaming pyramid writer
# --------------------------------------------------------------------------------------------------
def _level_count(shape: tuple[int, int], min_level_px: int) -> int:
    count, size = 1, max(shape)
    while size > min_level_px:
        size = (size + 1) // 2
        count += 1
    return count


def _tiles(shape: tuple[int, int], tile: int):
    for r0 in range(0, shape[0], tile):
        for c0 in range(0, shape[1], tile):
            yield r0, min(r0 + tile, shape[0]), c0, min(c0 + tile, shape[1])


def tile_count(shape: tuple[int, int], chunk_px: int, min_level_px: int = 256) -> int:
    """Number of tiles :func:`write_raster_streaming` writes for an output of ``shape``."""
    total, rows, cols = 0, shape[0], shape[1]
    for _ in range(_level_count(shape, min_level_px)):
        total += math.ceil(rows / chunk_px) * math.ceil(cols / chunk_px)
        rows, cols = (rows + 1) // 2, (cols + 1) // 2
    return total


def _block_mean(block: np.ndarray, factor: int, dtype: np.dtype) -> np.ndarray:
    """Mean of ``factor x factor`` blocks (:func:`~cortexgraph.data.raster.block_mean`), rounded
    to ``dtype``."""
    if factor == 1:
        return block.astype(dtype, copy=False)
    pooled = block_mean(block, factor)
    info = np.iinfo(dtype)
    return np.clip(np.rint(pooled), info.min, info.max).astype(dtype)


def write_raster_streaming(
    path: str | os.PathLike,
    source: ScanSource,
    spacing_um: float,
    *,
    downscale: int = 1,
    chunk_px: int = DEFAULT_CHUNK_PX,
    min_level_px: int = 256,
    attrs: dict | None = None,
    tick: Callable[[], None] | None = None,
) -> Path:
    """Write ``source`` as a cortexgraph intensity raster (docs/data-format.md), atomically, without
    holding any level in memory.

    Level 0 (spacing ``spacing_um * downscale``) is made of ``chunk_px`` tiles, each the mean of
    ``downscale x downscale`` source pixels, read in blocks of at most
    :data:`MAX_SOURCE_BLOCK_PX` source pixels a side. Level k+1 is computed tile by tile from
    ``2 chunk_px`` windows of level k with :func:`~cortexgraph.data.raster.downsample_level`, so
    the file is identical to what ``write_raster`` makes of the same array. Peak memory is a few
    source blocks and level tiles (tens of MB for 2048 px tiles), whatever the scan's size.
    ``tick`` is called after every tile written.
    """
    downscale = int(downscale)
    rows, cols = source.shape
    shape0 = (-(-rows // downscale), -(-cols // downscale))
    dtype = source.dtype
    num_levels = _level_count(shape0, min_level_px)
    sub = max(1, MAX_SOURCE_BLOCK_PX // downscale)  # output pixels per source block
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["format"] = RASTER_FORMAT
            handle.attrs["format_version"] = RASTER_VERSION
            handle.attrs["kind"] = "intensity"
            for key, value in (attrs or {}).items():
                handle.attrs[key] = value
            shape = shape0
            previous: Any = None  # the h5py dataset of the level above
            for level in range(num_levels):
                chunks = (min(chunk_px, shape[0]), min(chunk_px, shape[1]))
                dataset = write_h5_dataset(
                    handle,
                    f"levels/{level}",
                    shape=shape,
                    dtype=dtype,
                    chunks=chunks,
                    compression="gzip",
                    compression_opts=1,
                )
                dataset.attrs["spacing_um"] = float(spacing_um) * downscale * 2**level
                for r0, r1, c0, c1 in _tiles(shape, chunk_px):
                    if level == 0:
                        tile = np.empty((r1 - r0, c1 - c0), dtype)
                        for sr0, sr1, sc0, sc1 in _tiles((r1 - r0, c1 - c0), sub):
                            block = source.read(
                                (r0 + sr0) * downscale,
                                min((r0 + sr1) * downscale, rows),
                                (c0 + sc0) * downscale,
                                min((c0 + sc1) * downscale, cols),
                            )
                            tile[sr0:sr1, sc0:sc1] = _block_mean(block, downscale, dtype)
                    else:
                        window = previous[2 * r0 : 2 * r1, 2 * c0 : 2 * c1]
                        tile = downsample_level(window, "intensity")
                    dataset[r0:r1, c0:c1] = tile
                    if tick is not None:
                        tick()
                handle.flush()  # this level's chunks placed before the next level's
                previous = dataset
                shape = ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
    return Path(path)


# --------------------------------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------------------------------
@dataclass
class IngestReport:
    """What :func:`ingest_brain` did: per section ``written`` / ``skipped`` (resumed) / ``missing``,
    the image spacing, and the brain folder."""

    brain: Path
    spacing_um: float
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    shapes: dict[int, tuple[int, int]] = field(default_factory=dict)
    formats: dict[int, str] = field(default_factory=dict)


def _name(section: int) -> str:
    return f"s{section:04d}"


def _done_before(image: Path, wanted: dict) -> bool:
    """True when ``image`` is a complete raster written from the same source with the same options."""
    if not image.is_file():
        return False
    try:
        with Raster(image) as raster:
            raster.levels  # noqa: B018 - validates the level table
            stored = raster.attribute("ingest_source")
    except (DataFormatError, OSError):
        return False
    if stored is None:
        return False
    try:
        return json.loads(stored if isinstance(stored, str) else stored.decode()) == wanted
    except (ValueError, AttributeError):
        return False


def ingest_brain(
    cohort_dir: str | os.PathLike,
    brain_id: str,
    section_list: str | os.PathLike,
    *,
    spacing_um: float | None = None,
    downscale: int = 1,
    digitization_step: int = 1,
    shrinkage_factor: float | None = None,
    section_thickness_um: float = 20.0,
    chunk_px: int = DEFAULT_CHUNK_PX,
    min_level_px: int = 256,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest the scans of ``section_list`` as brain ``brain_id`` of the cohort in ``cohort_dir``.

    Parameters
    ----------
    cohort_dir : cohort folder (created with a cohort.toml when it has none).
    brain_id : the brain's id and folder name (:data:`~cortexgraph.data.names.NAME_RULE`).
    section_list : the section list (module docstring).
    spacing_um : pixel spacing of every scan in µm (overrides the list and the files' metadata).
    downscale : integer factor; level 0 of the images is the mean of ``downscale x downscale`` scan
        pixels (spacing ``spacing_um * downscale``).
    digitization_step, section_thickness_um : written to a new brain.toml / cohort.toml.
    shrinkage_factor : written to brain.toml (default: kept, 1 for a new brain).
    chunk_px : HDF5 chunk (and tile) edge of the images.
    overwrite : write every section again, even those done before.
    progress : ``callable(stage, done, total)``; tiles of the brain.

    Returns
    -------
    :class:`IngestReport`. Files: ``<cohort>/<brain>/images/sNNNN.h5``, ``brain.toml``,
    ``sections.tsv``, and ``cohort.toml`` when created or when the brain was added to it.
    """
    check_name(brain_id, "brain id")
    if not (isinstance(downscale, int) and downscale >= 1):
        raise ParameterError(
            f"downscale must be an integer >= 1, got {downscale!r}",
            fix="pass --downscale 1, 2, 4 ...",
        )
    if spacing_um is not None and not (math.isfinite(spacing_um) and spacing_um > 0):
        raise ParameterError(
            f"spacing_um must be > 0, got {spacing_um!r}",
            fix="give the scans' pixel spacing in micrometres",
        )
    rows = read_scan_list(section_list)
    cohort_root = Path(os.path.abspath(cohort_dir))
    brain_root = cohort_root / brain_id
    report_progress = progress or (lambda stage, done, total: None)

    # headers first: spacings, shapes, tiles (nothing is written before all scans open)
    plans = []
    spacing_out: float | None = None
    first_section = None
    for row in rows:
        if row.missing:
            continue
        with open_scan(row.scan_file) as source:
            spacing = spacing_um or row.spacing_um or source.spacing_um
            if spacing is None:
                raise DataFormatError(
                    "the scan's pixel spacing is not in its metadata",
                    file=row.scan,
                    section=row.section,
                    fix="pass --spacing-um, or fill the spacing_um column of the section list",
                )
            level_spacing = spacing * downscale
            if spacing_out is None:
                spacing_out, first_section = level_spacing, row.section
            elif abs(level_spacing - spacing_out) > 1e-6 * spacing_out:
                raise DataFormatError(
                    f"scan spacing {spacing:g} um differs from section {first_section}'s "
                    f"{spacing_out / downscale:g} um; a brain's images share one spacing",
                    file=row.scan,
                    section=row.section,
                    fix="resample the scans to one spacing, or correct spacing_um in the list",
                )
            out_shape = (-(-source.shape[0] // downscale), -(-source.shape[1] // downscale))
            plans.append((row, source.format, source.shape, out_shape, spacing))
    assert spacing_out is not None
    report = IngestReport(brain=brain_root, spacing_um=spacing_out)
    report.missing = [r.section for r in rows if r.missing]

    _prepare_cohort(cohort_root, brain_id, section_thickness_um)
    brain = _prepare_brain(
        cohort_root, brain_root, brain_id, spacing_out, digitization_step, shrinkage_factor
    )

    todo = []
    for row, fmt, _, out_shape, spacing in plans:
        wanted = {
            **source_identity(row.scan_file),
            "format": fmt,
            "spacing_um": spacing,
            "downscale": downscale,
            "chunk_px": chunk_px,
        }
        image = brain_root / "images" / f"{_name(row.section)}.h5"
        report.shapes[row.section] = out_shape
        report.formats[row.section] = fmt
        if not overwrite and _done_before(image, wanted):
            report.skipped.append(row.section)
            continue
        todo.append((row, out_shape, spacing, wanted, image))
    total = sum(tile_count(t[1], chunk_px, min_level_px) for t in todo)
    stage = f"ingest {brain_id}"
    done = 0
    report_progress(stage, 0, total)

    def tick() -> None:
        nonlocal done
        done += 1
        report_progress(stage, done, total)

    for row, _, spacing, wanted, image in todo:
        log.info("section %d: %s -> %s", row.section, row.scan, image)
        with open_scan(row.scan_file) as source:
            write_raster_streaming(
                image,
                source,
                spacing,
                downscale=downscale,
                chunk_px=chunk_px,
                min_level_px=min_level_px,
                attrs={"section": row.section, "ingest_source": json.dumps(wanted, sort_keys=True)},
                tick=tick,
            )
        report.written.append(row.section)
    _write_section_table(brain, rows)
    return report


def _prepare_cohort(root: Path, brain_id: str, thickness_um: float) -> Cohort:
    manifest = root / "cohort.toml"
    if manifest.exists():
        cohort = Cohort.read(root)
        if brain_id not in cohort.brain_ids:
            cohort.brain_ids.append(brain_id)
            cohort.write_manifest()
        return cohort
    root.mkdir(parents=True, exist_ok=True)
    cohort = Cohort(
        root=root, name=root.name, section_thickness_um=float(thickness_um), brain_ids=[brain_id]
    )
    cohort.write_manifest()
    return cohort


def _prepare_brain(
    cohort_root: Path,
    root: Path,
    brain_id: str,
    spacing_um: float,
    step: int,
    shrinkage: float | None,
) -> Brain:
    cohort = Cohort.read(cohort_root)
    if (root / "brain.toml").exists():
        brain = Brain.read(root, cohort=cohort)
        changed = brain.image_spacing_um != spacing_um or (
            shrinkage is not None and brain.shrinkage_factor != shrinkage
        )
        brain.image_spacing_um = spacing_um
        if shrinkage is not None:
            brain.shrinkage_factor = float(shrinkage)
        if changed:
            brain.write_manifest()
        return brain
    brain = Brain(
        id=brain_id,
        root=root,
        cohort=cohort,
        shrinkage_factor=1.0 if shrinkage is None else float(shrinkage),
        digitization_step=int(step),
        image_spacing_um=float(spacing_um),
        mask_spacing_um=None,
        annotation_spacing_um=None,
        coords_spacing_um=None,
    )
    root.mkdir(parents=True, exist_ok=True)
    brain.write_manifest()
    return brain


def _write_section_table(brain: Brain, rows: list[ScanRow]) -> None:
    """sections.tsv from the list; other columns of an existing table are kept."""
    existing: dict[int, SectionRecord] = {}
    if brain.section_table_path.exists():
        existing = {r.section: r for r in brain.read_sections()}
    records = []
    for row in rows:
        old = existing.get(row.section, SectionRecord(section=row.section))
        if row.missing:
            records.append(SectionRecord(section=row.section, missing=True))
            continue
        records.append(
            SectionRecord(
                section=row.section,
                image=f"images/{_name(row.section)}.h5",
                mask=old.mask,
                annotation=old.annotation,
                contours=old.contours,
                coords=old.coords,
                mirrored=row.mirrored or old.mirrored,
                excluded=old.excluded,
            )
        )
    brain.write_sections(records)
