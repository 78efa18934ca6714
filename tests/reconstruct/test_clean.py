from __future__ import annotations

import numpy as np

from cortexgraph.reconstruct.clean import (
    automatic_noncortical_mask,
    exclude_noncortical,
    remove_detached_tissue,
    resample_mask_to_grid,
)


def shell_phantom(voxel_mm=0.5):
    """White ball (r 20 mm) in a 3 mm cortex shell, a deep nucleus (r 6 mm) inside the white matter and a
    cerebellum-like gray ball (r 12 mm) outside the shell, separated from it by a 1 mm gap (the
    tentorium)."""
    n = int(70 / voxel_mm)
    grid = (np.indices((n, n, n)) + 0.5) * voxel_mm - 35.0
    r = np.sqrt((grid**2).sum(0))
    volume = np.zeros((n, n, n), np.uint8)
    volume[r < 23] = 2
    volume[r < 20] = 1
    nucleus = np.sqrt(((grid - np.array([6, 0, 0])[:, None, None, None]) ** 2).sum(0)) < 6
    volume[nucleus] = 2
    cerebellum_centre = np.array([0, -10, -24])[:, None, None, None]
    cerebellum = (np.sqrt(((grid - cerebellum_centre) ** 2).sum(0)) < 12) & (r >= 24)
    volume[cerebellum] = 2
    cortex = (r < 23) & (r >= 20) & ~nucleus
    return volume, cortex, nucleus | cerebellum


def test_automatic_exclusion_removes_thick_gray_and_keeps_cortex():
    volume, cortex, noncortical = shell_phantom()
    found = automatic_noncortical_mask(volume, voxel_size_mm=0.5)
    removed_noncortical = (found & noncortical).sum() / noncortical.sum()
    removed_cortex = (found & cortex).sum() / cortex.sum()
    assert removed_noncortical >= 0.95
    assert removed_cortex < 0.02
    cleaned, info = exclude_noncortical(volume, found)
    # the nucleus pocket became white matter, the cerebellum background
    assert (cleaned[noncortical & (volume == 2)] != 2).mean() >= 0.95
    assert info["voxels_enclosed_to_white"] > 0


def test_detached_tissue_under_one_percent_is_dropped():
    volume = np.zeros((40, 40, 40), np.uint8)
    volume[5:35, 5:35, 5:20] = 2  # 13500 voxels
    volume[30:33, 30:33, 30:33] = 2  # 27 voxels < 1%
    volume[5:10, 25:35, 25:35] = 1  # 500 voxels >= 1%
    out, info = remove_detached_tissue(volume)
    assert out[31, 31, 31] == 0 and out[6, 26, 26] == 1
    assert info["components_removed"] == 1 and info["voxels_removed"] == 27


def test_resample_mask_to_grid_nearest():
    mask = np.zeros((10, 10, 10), bool)
    mask[5:, :, :] = True
    mask_affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 2 mm voxels from 0
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    out = resample_mask_to_grid(mask, mask_affine, (20, 4, 4), affine)
    assert not out[9].any() and out[10:19].all()


def test_resample_mask_to_grid_equals_direct_nearest_lookup_with_rotation():
    rng = np.random.default_rng(3)
    mask = rng.random((9, 7, 8)) > 0.5
    mask_affine = np.diag([1.1, 0.9, 1.3, 1.0])
    mask_affine[:3, 3] = [-2.0, 1.0, 0.5]
    angle = 0.3
    affine = np.eye(4)
    affine[:3, :3] = 0.45 * np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine[:3, 3] = [-1.0, 0.0, 0.2]
    shape = (12, 10, 11)
    out = resample_mask_to_grid(mask, mask_affine, shape, affine)
    expected = np.zeros(shape, bool)
    inverse = np.linalg.inv(mask_affine)
    for index in np.ndindex(shape):
        world = affine @ np.array([*index, 1.0])
        source = np.rint((inverse @ world)[:3]).astype(int)
        if np.all(source >= 0) and np.all(source < mask.shape):
            expected[index] = mask[tuple(source)]
    np.testing.assert_array_equal(out, expected)
    assert out.any() and not out.all()
