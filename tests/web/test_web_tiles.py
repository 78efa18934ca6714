"""Deep-zoom tiles from raster pyramids: exact against the stored levels, cached, encoded."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.errors import CortexgraphError
from cortexgraph.web.tiles import (
    TileCache,
    colour_lookup,
    encode_png_rgba,
    read_tile,
    tile_grid,
)


@pytest.fixture(scope="module")
def rasters(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1024, 768), dtype=np.uint8)
    labels = rng.integers(0, 5, (1000, 700)).astype(np.uint16)
    write_raster(folder / "image.h5", image, 2.0, kind="intensity", chunk_px=256)
    write_raster(folder / "labels.h5", labels, 16.0, kind="labels", chunk_px=256)
    return folder, image, labels


def test_grid_follows_the_deep_zoom_ladder(rasters):
    folder, image, _ = rasters
    with Raster(folder / "image.h5") as raster:
        grid = tile_grid(raster)
        assert grid.max_level == 10  # ceil(log2(1024))
        assert grid.level_shape(10) == (1024, 768) and grid.level_shape(9) == (512, 384)
        assert grid.level_shape(0) == (1, 1)
        assert grid.tiles(10) == (4, 3) and grid.tiles(8) == (1, 1)
        assert grid.as_dict()["width_mm"] == pytest.approx(768 * 2.0 / 1000)


def test_tiles_at_stored_levels_are_the_stored_pixels(rasters):
    folder, image, _ = rasters
    with Raster(folder / "image.h5") as raster:
        grid = tile_grid(raster)
        np.testing.assert_array_equal(read_tile(raster, grid, 10, 1, 2), image[512:768, 256:512])
        level1 = raster.read_level(1)
        np.testing.assert_array_equal(read_tile(raster, grid, 9, 1, 0), level1[0:256, 256:384])
        assert read_tile(raster, grid, 9, 1, 0).shape == (256, 128)  # edge tile is cut


def test_tiles_beyond_the_pyramid_are_block_means(rasters):
    folder, image, _ = rasters
    with Raster(folder / "image.h5") as raster:
        grid = tile_grid(raster)
        coarsest = len(raster.levels) - 1  # 3 levels: 1024, 512, 256 px
        assert coarsest == 2
        tile = read_tile(raster, grid, 6, 0, 0)  # d = 16 = stored 4 x f 4
        direct = image.reshape(64, 16, 48, 16).astype(float).mean(axis=(1, 3))
        assert tile.shape == (64, 48)
        assert np.abs(tile.astype(float) - direct).max() <= 1.0  # rounding at each pyramid step


def test_label_tiles_never_mix_ids(rasters):
    folder, _, labels = rasters
    with Raster(folder / "labels.h5") as raster:
        grid = tile_grid(raster)
        for level in range(grid.max_level + 1):
            d = grid.reduction(level)
            ny, nx = grid.tiles(level)
            tile = read_tile(raster, grid, level, nx - 1, ny - 1)
            r0, c0 = (ny - 1) * 256 * d, (nx - 1) * 256 * d
            np.testing.assert_array_equal(
                tile, labels[r0::d, c0::d][: tile.shape[0], : tile.shape[1]]
            )


def test_bad_tiles_are_refused(rasters):
    folder, _, _ = rasters
    with Raster(folder / "image.h5") as raster:
        grid = tile_grid(raster)
        for level, x, y in ((11, 0, 0), (10, 3, 0), (10, 0, 4), (-1, 0, 0)):
            with pytest.raises(CortexgraphError):
                read_tile(raster, grid, level, x, y)


def test_png_colours_and_cache():
    from PIL import Image

    table = colour_lookup({1: (10, 20, 30, 255), 3: (200, 0, 0, 128)})
    labels = np.array([[0, 1], [3, 7]], np.uint16)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png_rgba(labels, table))))
    np.testing.assert_array_equal(decoded[0, 1], (10, 20, 30, 255))
    np.testing.assert_array_equal(decoded[1, 0], (200, 0, 0, 128))
    assert decoded[0, 0, 3] == 0 and decoded[1, 1, 3] == 0  # 0 and ids beyond the table: clear
    cache = TileCache(max_bytes=10)
    calls = []
    make = lambda: calls.append(1) or b"12345"  # noqa: E731
    assert cache.get_or_make("a", make) == b"12345" and cache.get_or_make("a", make) == b"12345"
    assert len(calls) == 1 and cache.hits == 1
    cache.get_or_make("b", make)
    cache.get_or_make("c", make)  # over 10 bytes: "a" (least recently used) goes
    cache.get_or_make("a", make)
    assert len(calls) == 4 and cache.size_bytes <= 10
