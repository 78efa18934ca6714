"""Section data of the LSM: class images, lazily read patches, orientation, balanced batches."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cortexgraph.data.manifest import find_brain
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.data.transforms import rotation_about
from cortexgraph.errors import DataFormatError
from cortexgraph.lsm.data import (
    ArrayImageSource,
    RasterImageSource,
    area_class_image,
    area_sections,
    load_section_data,
    orientation_angle,
    superior_direction,
)
from cortexgraph.lsm.networks import lsm_config
from cortexgraph.lsm.train import patch_batch_sampler


def test_area_class_image():
    tissue = np.array([[0, 1, 2, 2], [2, 2, 1, 0], [3, 2, 2, 2]])
    annotation = np.array([[5, 0, 5, 7], [5, 0, 0, 5], [5, 5, 7, 0]])
    classes = area_class_image(tissue, annotation, 5)
    # area on tissue -> 3; annotated pixels on slide (0) or unknown tissue values stay background
    expected = np.array([[0, 1, 3, 2], [3, 2, 1, 0], [0, 3, 2, 2]])
    np.testing.assert_array_equal(classes, expected)
    assert classes.dtype == np.uint8
    with pytest.raises(ValueError):
        area_class_image(tissue, annotation[:2], 5)


@pytest.fixture
def ramp_raster(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 120)).astype(np.uint8)
    path = write_raster(tmp_path / "img.h5", image, 10.0, chunk_px=16, num_levels=3)
    return image, path


@pytest.mark.parametrize("angle", [0.0, np.pi / 2, 0.3])
@pytest.mark.parametrize("spacing_um", [10.0, 20.0, 30.0])
def test_lazy_and_cached_raster_patches_agree(ramp_raster, angle, spacing_um):
    image, path = ramp_raster
    centre = (0.63, 0.41)  # mm
    with Raster(path) as raster:
        lazy = RasterImageSource(raster, cache_mb=0.0)
        cached = RasterImageSource(raster, cache_mb=64.0)
        a = lazy.patch(centre, 21, spacing_um, angle)
        b = cached.patch(centre, 21, spacing_um, angle)
        assert lazy.windows_read == 1 and cached.windows_read == 0
        np.testing.assert_array_equal(a, b)
        level = raster.level_for_spacing(spacing_um)
        level_image = raster.read_level(level.index)
    # the same as an in-memory source of the level the raster picked (20 um -> level 1, 30 -> 1)
    c = ArrayImageSource(level_image, level.spacing_um).patch(centre, 21, spacing_um, angle)
    np.testing.assert_array_equal(a, c)
    assert a.shape == (21, 21) and a.dtype == np.float32


def test_raster_patch_values_and_padding(ramp_raster):
    image, path = ramp_raster
    with Raster(path) as raster:
        source = RasterImageSource(raster, cache_mb=0.0)
        # centre of pixel (40, 60) at 10 um: x = 0.605 mm, y = 0.405 mm; an odd patch is exact
        patch = source.patch((0.605, 0.405), 5, 10.0)
        np.testing.assert_array_equal(patch, image[38:43, 58:63])
        corner = source.patch((0.005, 0.005), 5, 10.0, fill=255)
        assert (corner[:2] == 255).all() and (corner[:, :2] == 255).all()
        np.testing.assert_array_equal(corner[2:, 2:], image[:3, :3])


def test_orientation_from_the_section_transform():
    # raw section rotated by +90 deg relative to the base: superior (up in the base) points to the
    # raw image's left (-x); the patch rotation turns that to the top
    turned = rotation_about(np.pi / 2, (5.0, 5.0))
    stack = SimpleNamespace(to_base={1: np.eye(3), 2: turned, 3: rotation_about(0.2, (1, 1))})
    np.testing.assert_allclose(superior_direction(stack, 1), [0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(superior_direction(stack, 2), [-1.0, 0.0], atol=1e-12)
    assert orientation_angle(stack, 1) == 0.0
    assert orientation_angle(stack, 2) == pytest.approx(np.pi / 2)
    assert orientation_angle(stack, 3) == 0.0  # 11 degrees: snapped to the nearest quarter turn
    mirrored = np.diag([-1.0, 1.0, 1.0])
    mirrored[0, 2] = 10.0
    stack.to_base[4] = mirrored
    assert orientation_angle(stack, 4) == 0.0  # a left-right mirror keeps superior up


def test_balanced_batches_and_targets():
    """Every batch has exactly B/4 centres per class; the target's centre pixel is that class."""
    rng = np.random.default_rng(1)
    classes = np.zeros((60, 80), np.uint8)
    classes[10:40] = 1
    classes[40:50] = 2
    classes[40:50, :6] = 3
    roi = np.ones(classes.shape, bool)
    image = rng.integers(0, 256, classes.shape).astype(np.uint8)
    cfg = lsm_config("tiny", "hr", spacing_um=20.0, batch_size=16)
    sampler = patch_batch_sampler(
        [ArrayImageSource(image, 20.0)],
        [classes],
        [roi],
        [0.0],
        cfg,
        20,
        rng,
        label_spacing_um=20.0,
        augment=False,
    )
    for iteration in range(5):
        x, y = sampler(iteration)
        assert x.shape == (16, 1, 60, 60) and y.shape == (16, 20, 20)
        # even output: the sampled pixel is the upper-left of the four central ones
        counts = np.bincount(y[:, 9, 9].numpy(), minlength=4)
        assert counts.tolist() == [4, 4, 4, 4]
        # without augmentation the input is the image patch / 255, centred on the same point
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_load_section_data_on_the_phantom(tiny_cohort):
    brain = find_brain("B01", tiny_cohort)
    hoc1 = brain.cohort.areas.resolve("hOc1").id
    with SectionStack(brain) as stack:
        sections = area_sections(stack, hoc1)
        assert len(sections) >= 4
        data = load_section_data(stack, sections[1], 320.0, area_id=hoc1, radius_mm=5.0)
        annotation = stack.annotation(sections[1], 320.0)
        tissue = stack.tissue_mask(sections[1], 320.0)
        assert data.classes.shape == data.roi.shape == data.shape == tissue.shape
        np.testing.assert_array_equal(data.area, (annotation == hoc1) & (tissue > 0))
        # ROI: every pixel within 5 mm of the area, and nothing beyond
        from scipy import ndimage

        dist_mm = ndimage.distance_transform_edt(~data.area, sampling=0.32)
        np.testing.assert_array_equal(data.roi, dist_mm <= 5.0 + 1e-9)
        assert abs(data.angle_rad) < 1e-12  # the phantom's scans are rotated by a few degrees only
        unannotated = [s for s in stack.sections if s not in brain.annotated_sections][0]
        with pytest.raises(DataFormatError):
            load_section_data(stack, unannotated, 320.0, area_id=hoc1)
        other = [s for s in brain.annotated_sections if s not in sections][0]
        with pytest.raises(DataFormatError, match="not annotated"):
            load_section_data(stack, other, 320.0, area_id=hoc1)
