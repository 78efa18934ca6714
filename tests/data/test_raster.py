from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from cortexgraph.data.raster import Raster, downsample_level, write_raster
from cortexgraph.errors import DataFormatError, ParameterError


class CountingFile(io.RawIOBase):
    """A binary file that records the byte ranges read from it."""

    def __init__(self, path):
        self._file = open(path, "rb")  # noqa: SIM115
        self.ranges: list[tuple[int, int]] = []

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self._file.seek(offset, whence)

    def tell(self):
        return self._file.tell()

    def readinto(self, buffer):
        start = self._file.tell()
        n = self._file.readinto(buffer)
        self.ranges.append((start, start + (n or 0)))
        return n

    def close(self):
        self._file.close()
        super().close()


def chunks_touched(path, level, ranges):
    """Indices (row, col) of the chunks of a level whose stored bytes were read."""
    touched = set()
    with h5py.File(path, "r") as handle:
        dataset = handle[f"levels/{level}"]
        chunk_rows, chunk_cols = dataset.chunks[:2]
        for k in range(dataset.id.get_num_chunks()):
            info = dataset.id.get_chunk_info(k)
            lo, hi = info.byte_offset, info.byte_offset + info.size
            if any(a < hi and b > lo for a, b in ranges):
                touched.add(
                    (info.chunk_offset[0] // chunk_rows, info.chunk_offset[1] // chunk_cols)
                )
    return touched


def test_patch_from_20000px_image_reads_only_its_chunks(tmp_path):
    # 20000 x 20000 px level 0 at 1 um/px, 2048 px chunks (the source lab's layout): 10 x 10 chunks.
    path = tmp_path / "big.h5"
    image = np.zeros((20000, 20000), np.uint8)
    image[::97, :] = 200  # some structure so every chunk has stored data
    write_raster(path, image, spacing_um=1.0, num_levels=1, chunk_px=2048)
    del image
    cases = [
        # centre (x_mm, y_mm), size px -> expected chunk (row, col) indices
        ((5.0, 5.0), 512, {(2, 2)}),  # inside one chunk (pixels 4744..5255)
        ((6.144, 6.144), 512, {(2, 2), (2, 3), (3, 2), (3, 3)}),  # across a chunk corner
        ((19.9, 0.1), 512, {(0, 9)}),  # at the border, partly outside the image
    ]
    for center, size, expected in cases:
        counter = CountingFile(path)
        raster = Raster(path, file_obj=counter)
        _ = raster.levels  # metadata
        counter.ranges.clear()
        patch = raster.read_patch(center, size, spacing_um=1.0)
        raster.close()
        assert patch.shape == (size, size)
        assert chunks_touched(path, 0, counter.ranges) == expected


def test_level_chosen_by_spacing_reads_only_that_levels_chunks(tmp_path):
    path = tmp_path / "pyr.h5"
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (2000, 2000), dtype=np.uint8)
    write_raster(path, image, spacing_um=2.0, num_levels=3, chunk_px=256)
    counter = CountingFile(path)
    raster = Raster(path, file_obj=counter)
    assert [lv.spacing_um for lv in raster.levels] == [2.0, 4.0, 8.0]
    counter.ranges.clear()
    patch = raster.read_patch((1.0, 1.0), 64, spacing_um=8.0)  # level 2: 500 x 500 px
    assert patch.shape == (64, 64)
    assert chunks_touched(path, 0, counter.ranges) == set()
    assert chunks_touched(path, 1, counter.ranges) == set()
    assert chunks_touched(path, 2, counter.ranges) == {(0, 0)}
    raster.close()


def test_pyramid_levels_mean_and_nearest():
    ramp = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert np.allclose(downsample_level(ramp, "intensity"), [[2.5, 4.5], [10.5, 12.5]])
    labels = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
    assert downsample_level(labels, "labels").tolist() == [[1, 3], [7, 9]]
    odd = np.ones((5, 3), np.uint8) * 10
    assert downsample_level(odd, "intensity").shape == (3, 2)


def test_exact_patch_matches_array_and_pads_outside(tmp_path):
    path = tmp_path / "img.h5"
    image = np.arange(100 * 120, dtype=np.uint16).reshape(100, 120)
    write_raster(path, image, spacing_um=10.0, chunk_px=32)
    with Raster(path) as raster:
        # centre of pixel (row 50, col 60) is at ((60.5) * 0.01, (50.5) * 0.01) mm
        patch = raster.read_patch((0.605, 0.505), 5, spacing_um=10.0)
        assert np.array_equal(patch, image[48:53, 58:63])
        corner = raster.read_patch((0.0, 0.0), 4, spacing_um=10.0)
        assert np.array_equal(corner[2:, 2:], image[:2, :2])
        assert np.all(corner[:2] == 0) and np.all(corner[:, :2] == 0)


def test_resampled_patch_and_whole_image_at_spacing(tmp_path):
    path = tmp_path / "grad.h5"
    rows, cols = np.mgrid[0:256, 0:256]
    image = (cols * 1.0).astype(np.float32)  # value = column index
    write_raster(path, image, spacing_um=5.0, chunk_px=64)
    with Raster(path) as raster:
        # 15 um output spacing reads level 1 (10 um) and resamples by 1.5
        patch = raster.read_patch((0.64, 0.64), 9, spacing_um=15.0)
        expected_cols = (0.64 * 1000 + (np.arange(9) - 4) * 15.0) / 5.0 - 0.5
        assert np.allclose(patch[4], expected_cols, atol=0.6)
        half = raster.read_at_spacing(10.0)
        assert half.shape == (128, 128)
        assert np.allclose(half[0, :3], [0.5, 2.5, 4.5])


def test_rotated_patch_of_labels_is_rotated(tmp_path):
    path = tmp_path / "lab.h5"
    labels = np.zeros((64, 64), np.uint8)
    labels[32:, :] = 1  # lower half
    write_raster(path, labels, spacing_um=10.0, kind="labels", chunk_px=16)
    with Raster(path) as raster:
        upright = raster.read_patch((0.32, 0.32), 20, 10.0)
        turned = raster.read_patch((0.32, 0.32), 20, 10.0, angle_rad=np.pi / 2)
        assert upright[15, 10] == 1 and upright[4, 10] == 0
        # rotating the sampling axes by 90 degrees turns the lower half into a side half
        assert turned[10, 15] != turned[10, 4]
        assert set(np.unique(turned)) <= {0, 1}


def test_unreadable_and_foreign_files_raise_clear_errors(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataFormatError, match="bad.h5"):
        _ = Raster(bad).levels
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["data"] = np.zeros((4, 4))
    with pytest.raises(DataFormatError, match="not a cortexgraph raster"):
        _ = Raster(foreign).levels
    with pytest.raises(DataFormatError, match="not found"):
        _ = Raster(tmp_path / "nope.h5").levels


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "x.h5"
    write_raster(path, np.ones((8, 8), np.uint8), 1.0)
    before = path.read_bytes()
    with pytest.raises(ParameterError, match="2D"):
        write_raster(path, np.ones((2, 2, 2, 2), np.uint8), 1.0)
    with pytest.raises(TypeError):  # fails half-way through writing: an attribute HDF5 cannot hold
        write_raster(path, np.ones((8, 8), np.uint8), 1.0, attrs={"bad": object()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5"]
