"""Box-count median equals scipy's median filter; chunked equals in-memory."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cortexgraph.maps3d.filters import (
    binary_median_filter,
    binary_median_filter_blockwise,
    binary_median_filter_chunked,
    box_count,
    min_component_voxels,
    remove_small_components,
    remove_small_components_blockwise,
    remove_small_components_chunked,
)


@pytest.mark.parametrize(
    ("shape", "size", "p"),
    [
        ((20, 17, 23), 3, 0.5),
        ((15, 30, 12), 5, 0.4),
        ((25, 24, 26), 11, 0.5),
        ((7, 9, 30), 11, 0.6),  # axes shorter than the window: repeated reflection at borders
        ((33, 21, 19), 11, 0.45),
    ],
)
def test_box_median_equals_scipy_median(shape, size, p):
    rng = np.random.default_rng(sum(shape) + size)
    mask = rng.random(shape) < p
    expected = ndimage.median_filter(mask, size=size)  # default mode='reflect'
    got = binary_median_filter(mask, size)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, expected)


def test_box_median_anisotropic_window_and_smooth_input():
    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((24, 20, 22)), 1.5) > 0.5
    for size in [(3, 5, 7), (11, 1, 3)]:
        np.testing.assert_array_equal(
            binary_median_filter(mask, size), ndimage.median_filter(mask, size=size)
        )


def test_box_count_is_exact_window_sum():
    rng = np.random.default_rng(0)
    mask = rng.random((14, 13, 12)) < 0.5
    expected = ndimage.uniform_filter(mask.astype(np.float64), size=5, mode="reflect") * 125
    np.testing.assert_array_equal(box_count(mask, 5), np.rint(expected).astype(np.uint16))


def test_even_size_rejected():
    with pytest.raises(ValueError):
        binary_median_filter(np.zeros((5, 5, 5), bool), 4)


@pytest.mark.parametrize(("size", "chunks"), [(3, (5, 6, 7)), (11, (8, 9, 10)), (5, (4, 17, 3))])
def test_chunked_median_equals_in_memory(size, chunks):
    rng = np.random.default_rng(size)
    mask = rng.random((29, 34, 31)) < 0.5
    got = binary_median_filter_chunked(mask, size, chunks=chunks).compute()
    np.testing.assert_array_equal(got, binary_median_filter(mask, size))


@pytest.mark.parametrize(
    ("shape", "size", "chunk"),
    [((29, 34, 31), 11, 7), ((29, 34, 31), 3, 10), ((6, 40, 9), 11, 4), ((20, 21, 22), 5, 64)],
)
def test_blockwise_median_equals_scipy_and_in_memory(tmp_path, shape, size, chunk):
    rng = np.random.default_rng(size + chunk)
    mask = rng.random(shape) < 0.5
    src = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=bool, shape=shape)
    src[:] = mask
    out = np.lib.format.open_memmap(tmp_path / "b.npy", mode="w+", dtype=bool, shape=shape)
    binary_median_filter_blockwise(src, size, out=out, chunk_vox=chunk, num_workers=2)
    expected = ndimage.median_filter(mask, size=size)  # scipy, mode 'reflect'
    np.testing.assert_array_equal(np.asarray(out), expected)
    np.testing.assert_array_equal(binary_median_filter(mask, size), expected)
    with pytest.raises(ValueError):
        binary_median_filter_blockwise(src, size, out=src)


def test_min_component_voxels_27mm3_at_20um():
    assert min_component_voxels(27.0, 0.02) == 3_375_000
    assert min_component_voxels(27.0, (0.02, 0.02, 0.02)) == 3_375_000
    assert min_component_voxels(8.0, (1.0, 2.0, 1.0)) == 4


def test_remove_small_components_known_sizes():
    mask = np.zeros((30, 30, 30), bool)
    mask[2:5, 2:5, 2:5] = True  # 27 voxels
    mask[10:12, 10:12, 10:12] = True  # 8 voxels
    mask[12, 12, 12] = True  # touches the 8-voxel cube by a corner only
    mask[20:24, 20:23, 20:22] = True  # 24 voxels
    out26 = remove_small_components(mask, min_volume_mm3=9.0 * 8, voxel_size_mm=2.0)
    # 9 voxels of 8 mm^3: with 26-connectivity the corner voxel joins the 8-cube (9 voxels)
    assert out26[10, 10, 10] and out26[12, 12, 12] and out26[3, 3, 3] and out26[21, 21, 21]
    out6 = remove_small_components(mask, 9.0 * 8, 2.0, connectivity=6)
    assert not out6[10, 10, 10] and not out6[12, 12, 12] and out6[3, 3, 3]
    out = remove_small_components(mask, 25.0, 1.0)
    assert out.sum() == 27 and out[3, 3, 3]


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_chunked_components_equal_in_memory(connectivity):
    rng = np.random.default_rng(connectivity)
    mask = ndimage.gaussian_filter(rng.random((48, 40, 52)), 1.6) > 0.53
    n = ndimage.label(mask)[1]
    assert n > 20  # many components, many of them cut by chunk faces
    expected = remove_small_components(mask, 30.0, 1.0, connectivity)
    assert 0 < expected.sum() < mask.sum()
    got = remove_small_components_chunked(mask, 30.0, 1.0, connectivity, chunks=(9, 11, 13))
    np.testing.assert_array_equal(got.compute(), expected)


def test_chunked_components_diagonal_contact_across_chunk_corner():
    # two 4-voxel rods touching only at a corner that sits exactly on a chunk corner
    mask = np.zeros((8, 8, 8), bool)
    mask[0:4, 3, 3] = True
    mask[4, 4, 4:8] = True
    for conn, kept in [(26, True), (6, False)]:
        got = remove_small_components_chunked(mask, 8.0, 1.0, conn, chunks=(4, 4, 4)).compute()
        np.testing.assert_array_equal(got, remove_small_components(mask, 8.0, 1.0, conn))
        assert got.any() == kept


@pytest.mark.parametrize(("connectivity", "chunk"), [(26, (9, 11, 13)), (6, 16), (18, 7)])
def test_blockwise_components_equal_in_memory(tmp_path, connectivity, chunk):
    rng = np.random.default_rng(connectivity + 1)
    mask = ndimage.gaussian_filter(rng.random((48, 40, 52)), 1.6) > 0.53
    expected = remove_small_components(mask, 30.0, 1.0, connectivity)
    assert 0 < expected.sum() < mask.sum()
    src = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=bool, shape=mask.shape)
    src[:] = mask
    out = remove_small_components_blockwise(
        src, 30.0, 1.0, connectivity, out=np.zeros(mask.shape, bool), chunk_vox=chunk
    )
    np.testing.assert_array_equal(out, expected)
    # in place: each block is read and written once in the second pass
    remove_small_components_blockwise(src, 30.0, 1.0, connectivity, out=src, chunk_vox=chunk)
    np.testing.assert_array_equal(np.asarray(src), expected)
