from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import Cohort
from cortexgraph.data.stack import SectionStack
from cortexgraph.reconstruct.clean import fill_defects
from cortexgraph.reconstruct.volume import stack_tissue_volume

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from brain_factory import make_brain  # noqa: E402


def test_stacked_planes_show_each_section_through_its_transform(tmp_path):
    make_brain(tmp_path)
    stack = SectionStack(Cohort.read(tmp_path).brain("B01"))
    volume, affine, info = stack_tissue_volume(stack, voxel_size_mm=0.3)
    assert info["voxels_gray"] > 0 and info["voxels_white"] > 0
    # 5 present sections 300 um apart + one missing: y planes 100..175 -> 6 planes, one empty
    assert volume.shape[1] == 6
    assert info["planes_empty"] == 1
    assert not volume[:, 3, :].any()  # section 145 is missing
    inverse = np.linalg.inv(affine)
    rng = np.random.default_rng(0)
    for s in stack.sections:
        mask = stack.tissue_mask(s)
        rows, cols = rng.integers(0, mask.shape[0], 400), rng.integers(0, mask.shape[1], 400)
        centres = np.column_stack([(cols + 0.5) * 0.1, (rows + 0.5) * 0.1])
        world = stack.section_to_world(s, centres)
        vox = np.rint(world @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
        inside = np.all((vox >= 0) & (vox < volume.shape), axis=1)
        got = volume[vox[inside, 0], vox[inside, 1], vox[inside, 2]]
        expected = mask[rows[inside], cols[inside]]
        # voxels are 3x the mask pixel: disagreement only near class boundaries
        assert (got == expected).mean() > 0.9


def test_missing_plane_is_filled_by_the_median_along_y():
    volume = np.zeros((20, 9, 20), np.uint8)
    volume[4:16, :, 4:16] = 2
    volume[7:13, :, 7:13] = 1
    truth = volume.copy()
    volume[:, 4, :] = 0  # a missing section
    volume[10, 2, 10] = 2  # a one-voxel wiggle: small, left alone
    filled, info = fill_defects(volume, voxel_size_mm=0.3, min_defect_mm3=0.5)
    assert np.array_equal(filled[:, 4, :], truth[:, 4, :])
    assert filled[10, 2, 10] == 2
    assert info["defect_components"] == 1


def test_fill_empty_planes_bridges_short_gaps_only():
    from cortexgraph.reconstruct.clean import fill_empty_planes

    volume = np.zeros((4, 12, 4), np.uint8)
    for j in range(12):
        volume[1:3, j, 1:3] = 1 + (j % 2)  # planes alternate white / gray so the source is visible
    volume[:, 3:5, :] = 0  # two missing planes: 3 takes plane 2, 4 takes plane 5
    volume[:, 7:11, :] = 0  # four missing planes: longer than max_gap_planes, left empty
    filled, info = fill_empty_planes(volume, max_gap_planes=3)
    np.testing.assert_array_equal(filled[:, 3], volume[:, 2])
    np.testing.assert_array_equal(filled[:, 4], volume[:, 5])
    assert not filled[:, 7:11].any()
    assert info == {"empty_planes": 6, "planes_filled": 2, "open_runs": [[7, 10]]}


def test_crop_to_tissue_keeps_every_tissue_voxel(tiny_cohort):
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.data.stack import SectionStack

    stack = SectionStack(Cohort.read(tiny_cohort).brain("B01"))
    full, affine, _ = stack_tissue_volume(stack, voxel_size_mm=0.6)
    cropped, cropped_affine, info = stack_tissue_volume(
        stack, voxel_size_mm=0.6, crop_to_tissue=True, margin_voxels=2
    )
    stack.close()
    i0, _, k0 = info["crop_offset"]
    assert info["uncropped_shape"] == list(full.shape) and cropped.shape[1] == full.shape[1]
    assert cropped.size < full.size
    np.testing.assert_array_equal(
        full[i0 : i0 + cropped.shape[0], :, k0 : k0 + cropped.shape[2]], cropped
    )
    assert int((full > 0).sum()) == int((cropped > 0).sum())
    # two background voxels all around in x and z (unless the canvas ends first)
    for axis in (0, 2):
        other = tuple(a for a in range(3) if a != axis)
        occupied = np.flatnonzero(cropped.any(axis=other))
        assert occupied[0] == 2 and occupied[-1] == cropped.shape[axis] - 3
    # the same world position for the same voxel
    np.testing.assert_allclose(cropped_affine[:3, 3], affine[:3, 3] + 0.6 * np.array([i0, 0, k0]))


def test_voxels_are_centred_on_the_pixels_they_hold(tmp_path):
    """With identity transforms and voxels of whole mask pixels, each voxel holds the pixels it
    covers and sits where they are: a mask with a single tissue pixel block gives a voxel block
    whose world centre is the block's centre (before: shifted by half a pixel in x and z)."""
    from cortexgraph.data.manifest import Brain, Cohort
    from cortexgraph.data.raster import write_raster
    from cortexgraph.data.transforms import rigid_matrix

    root = tmp_path
    make_brain(root)
    brain = Cohort.read(root).brain("B01")
    rows, cols = 100, 120  # the factory's 10 x 12 mm canvas at 100 um
    mask = np.zeros((rows, cols), np.uint8)
    mask[40:50, 30:36] = 2  # 1.0 x 0.6 mm of gray matter
    mask[44:46, 32:34] = 1
    for record in brain.sections:
        if not record.missing:
            write_raster(brain.path(record.mask), mask[:, ::-1] if record.mirrored else mask, 100.0,
                         kind="labels")  # fmt: skip
    brain.write_transforms(
        {key: rigid_matrix(0.0, 0.0, 0.0) for key in brain.transforms}
    )  # identity: every section lands on the base section's frame
    brain = Brain.read(brain.root, cohort=Cohort.read(root))
    with SectionStack(brain) as stack:
        for voxel_mm, n_x, n_z in ((0.1, 6, 10), (0.2, 3, 5)):
            volume, affine, _ = stack_tissue_volume(stack, voxel_size_mm=voxel_mm)
            plane = volume[:, 0, :]
            i, k = np.nonzero(plane > 0)
            assert (np.ptp(i) + 1, np.ptp(k) + 1) == (n_x, n_z)
            # world centre of the tissue voxels = world centre of the tissue pixels
            centre_vox = np.array([i.mean(), 0.0, k.mean()])
            world = affine[:3, :3] @ centre_vox + affine[:3, 3]
            pixel_centre = stack.section_to_world(stack.sections[0], np.array([[3.3, 4.5]]))[0]
            np.testing.assert_allclose(world[[0, 2]], pixel_centre[[0, 2]], atol=1e-9)
            assert (plane == 1).sum() == (4 if voxel_mm == 0.1 else 1)
