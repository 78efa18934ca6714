"""Deep-zoom tiles of section rasters: the tile grid, one tile from a pyramid level, encoding, caching.

The viewer (OpenSeadragon) asks for square tiles of ``tile_px`` pixels on a power-of-two zoom ladder
over the level-0 pixel grid of a raster (the Deep Zoom scheme): zoom level ``L`` of ``max_level + 1``
levels shows the image reduced by ``d = 2 ** (max_level - L)``, where ``max_level =
ceil(log2(max(rows, cols)))`` (level ``max_level`` is level 0 of the raster, full resolution). Tile
``(x, y)`` of zoom level ``L`` covers the reduced pixels ``[x * tile_px, (x + 1) * tile_px)`` along
columns and ``[y * tile_px, ...)`` along rows, cut at the reduced image's edge (edge tiles are
smaller).

A tile is read from the raster's stored pyramid (:mod:`cortexgraph.data.raster`), never from a
decoded full image: from the finest stored level ``k`` with ``2 ** k <= d`` (its pixels are exactly
``2 ** k`` level-0 pixels), only the window under the tile, reduced by the remaining factor
``f = d / 2 ** k`` the way the pyramid itself is made (``f x f`` block means for intensity images,
every ``f``-th pixel for label images, so label tiles never mix ids). Beyond the coarsest stored level
``f`` grows, but that level is small (the pyramid stops below 256 px).

Intensity tiles are JPEG (grey or RGB), label tiles RGBA PNG through a colour table (class or area
id -> RGBA; alpha 0 is transparent). :class:`TileCache` keeps encoded tiles (an LRU bounded in bytes)
keyed by the file's identity (path, size, modification time), so an edited or rewritten raster is
never served from the cache; :class:`RasterPool` keeps the HDF5 files open with a chunk cache large
enough for a few decoded chunks, so neighbouring cold tiles share their chunk reads.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexgraph.data.raster import Raster
from cortexgraph.errors import CortexgraphError

__all__ = [
    "TILE_PX",
    "TileGrid",
    "tile_grid",
    "read_tile",
    "encode_jpeg",
    "encode_png_rgba",
    "colour_lookup",
    "TileCache",
    "RasterPool",
]

TILE_PX = 256


@dataclass(frozen=True)
class TileGrid:
    """The deep-zoom ladder of one raster (module docstring).

    rows, cols : level-0 size in pixels; spacing_um : level-0 pixel spacing; max_level : the zoom
    level that shows level 0; stored_levels : how many pyramid levels the file holds.
    """

    rows: int
    cols: int
    spacing_um: float
    tile_px: int
    max_level: int
    stored_levels: int

    def reduction(self, level: int) -> int:
        """``d``: level-0 pixels per pixel of zoom level ``level``."""
        return 2 ** (self.max_level - level)

    def level_shape(self, level: int) -> tuple[int, int]:
        """(rows, cols) of the image at a zoom level (ceil division, as the pyramid)."""
        d = self.reduction(level)
        return -(-self.rows // d), -(-self.cols // d)

    def tiles(self, level: int) -> tuple[int, int]:
        """(tiles along y, tiles along x) at a zoom level."""
        rows, cols = self.level_shape(level)
        return -(-rows // self.tile_px), -(-cols // self.tile_px)

    def as_dict(self) -> dict:
        """What the viewer needs: size, tile size, levels, spacing and physical extent."""
        return {
            "width": self.cols,
            "height": self.rows,
            "tile_px": self.tile_px,
            "max_level": self.max_level,
            "stored_levels": self.stored_levels,
            "spacing_um": self.spacing_um,
            "width_mm": self.cols * self.spacing_um / 1000.0,
            "height_mm": self.rows * self.spacing_um / 1000.0,
        }


def tile_grid(raster: Raster, tile_px: int = TILE_PX) -> TileGrid:
    """The zoom ladder of a raster (module docstring)."""
    rows, cols = raster.shape[:2]
    max_level = max(0, math.ceil(math.log2(max(rows, cols, 1))))
    return TileGrid(
        int(rows), int(cols), raster.spacing_um, int(tile_px), max_level, len(raster.levels)
    )


def _check_tile(grid: TileGrid, level: int, x: int, y: int) -> None:
    ny, nx = grid.tiles(level) if 0 <= level <= grid.max_level else (0, 0)
    if not (0 <= level <= grid.max_level and 0 <= x < nx and 0 <= y < ny):
        raise CortexgraphError(
            f"no tile {level}/{x}_{y} (zoom levels 0..{grid.max_level}, at this level "
            f"{nx} x {ny} tiles)",
            fix="ask for a tile inside the image",
        )


def read_tile(raster: Raster, grid: TileGrid, level: int, x: int, y: int) -> np.ndarray:
    """Pixels of one tile (rows, cols[, channels]) in the raster's dtype (module docstring).

    Raises CortexgraphError for a tile outside the ladder.
    """
    _check_tile(grid, level, x, y)
    d = grid.reduction(level)
    stored = min(int(math.log2(d)), grid.stored_levels - 1)
    f = d // 2**stored
    level_rows, level_cols = grid.level_shape(level)
    r0, c0 = y * grid.tile_px, x * grid.tile_px
    rows = min(grid.tile_px, level_rows - r0)
    cols = min(grid.tile_px, level_cols - c0)
    kind = raster.kind
    if f == 1:
        return raster.read_window(stored, r0, c0, rows, cols)
    # window of the stored level under the tile; the stored level's own size bounds it
    src_rows, src_cols = raster.levels[stored].shape[:2]
    wr = min(rows * f, src_rows - r0 * f)
    wc = min(cols * f, src_cols - c0 * f)
    window = raster.read_window(stored, r0 * f, c0 * f, wr, wc)
    if kind == "labels":
        return window[::f, ::f][:rows, :cols]
    # block means; the last partial block replicates its edge, as the pyramid does
    pad = [(0, rows * f - wr), (0, cols * f - wc)] + [(0, 0)] * (window.ndim - 2)
    block = np.pad(window.astype(np.float32), pad, mode="edge")
    block = block.reshape((rows, f, cols, f) + window.shape[2:]).mean(axis=(1, 3))
    if np.issubdtype(window.dtype, np.integer):
        info = np.iinfo(window.dtype)
        return np.clip(np.rint(block), info.min, info.max).astype(window.dtype)
    return block.astype(window.dtype)


def encode_jpeg(pixels: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of a grey (rows, cols) or RGB (rows, cols, 3) tile; other dtypes are scaled to
    0..255 over their range."""
    from PIL import Image

    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        span = hi - lo if hi > lo else 1.0
        array = np.clip((np.nan_to_num(array) - lo) / span * 255.0, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] > 3:
        array = array[..., :3]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def colour_lookup(
    colours: dict[int, tuple[int, int, int, int]], top: int | None = None
) -> np.ndarray:
    """uint8 (top + 1, 4) RGBA table from ``{value: (r, g, b, a)}``; other values transparent."""
    top = max([int(top or 0), *colours.keys(), 0])
    table = np.zeros((top + 1, 4), np.uint8)
    for value, rgba in colours.items():
        if value >= 0:
            table[int(value)] = rgba
    return table


def encode_png_rgba(labels: np.ndarray, table: np.ndarray) -> bytes:
    """RGBA PNG of a label tile through an RGBA table (values beyond the table: transparent)."""
    from PIL import Image

    values = np.asarray(labels).astype(np.int64)
    index = np.where((values >= 0) & (values < len(table)), values, 0)
    rgba = table[index]
    rgba[(values < 0) | (values >= len(table))] = 0
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def file_identity(path: Path) -> tuple[str, int, int]:
    """(path, size, mtime_ns): changes whenever the file is rewritten (writes are atomic renames)."""
    stat = os.stat(path)
    return str(path), int(stat.st_size), int(stat.st_mtime_ns)


class TileCache:
    """Encoded tiles, least recently used first out, at most ``max_bytes`` in all (thread-safe)."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: tuple, make: Callable[[], bytes]) -> bytes:
        """The cached bytes of ``key``, else ``make()`` (stored unless larger than the cache)."""
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        data = make()
        with self._lock:
            if len(data) <= self.max_bytes and key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old)
        return data

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


class RasterPool:
    """Open rasters by file identity, at most ``max_open`` (least recently used closed first).

    h5py serialises access to HDF5 with a global lock, so the handles can be shared between the
    server's worker threads; ``chunk_cache_mb`` is each file's cache of decoded chunks.
    """

    def __init__(self, max_open: int = 32, chunk_cache_mb: float = 64.0) -> None:
        self.max_open = int(max_open)
        self.chunk_cache_mb = float(chunk_cache_mb)
        self._open: OrderedDict[tuple, tuple[Raster, TileGrid]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, tile_px: int = TILE_PX) -> tuple[Raster, TileGrid, tuple]:
        """(raster, its tile grid, its file identity); the raster stays open in the pool."""
        identity = file_identity(path)
        with self._lock:
            found = self._open.get(identity)
            if found is not None:
                self._open.move_to_end(identity)
                return found[0], found[1], identity
        raster = Raster(path, chunk_cache_mb=self.chunk_cache_mb)
        grid = tile_grid(raster, tile_px)
        with self._lock:
            self._open[identity] = (raster, grid)
            while len(self._open) > self.max_open:
                # dropped, not closed: another thread may still read it; h5py closes the file when
                # the last reference goes
                self._open.popitem(last=False)
        return raster, grid, identity

    def close(self) -> None:
        with self._lock:
            for raster, _ in self._open.values():
                raster.close()
            self._open.clear()
