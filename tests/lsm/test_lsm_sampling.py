"""Balanced centres, orientation, patch extraction and augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.lsm.sampling import (
    class_balanced_probabilities,
    draw_augmentation,
    extract_patch,
    intensity_transform,
    sample_balanced_centres,
    sample_balanced_centres_sections,
    superior_angle,
    superior_rot90,
)


def layered_classes(shape=(60, 80)) -> np.ndarray:
    classes = np.zeros(shape, np.int64)
    classes[10:40] = 1
    classes[40:50] = 2
    classes[40:50, :6] = 3  # a small area
    return classes


def test_exactly_a_quarter_per_class_inside_the_roi():
    rng = np.random.default_rng(0)
    classes = layered_classes()
    roi = np.zeros(classes.shape, bool)
    roi[5:55, 0:40] = True
    centres = sample_balanced_centres(classes, roi, 400, rng)
    assert centres.shape == (400, 2) and centres.dtype == np.int64
    assert roi[centres[:, 0], centres[:, 1]].all()
    counts = np.bincount(classes[centres[:, 0], centres[:, 1]], minlength=4)
    assert counts.tolist() == [100, 100, 100, 100]
    # n not divisible by 4: 25 +- 1 each, total n
    counts = np.bincount(
        classes[tuple(sample_balanced_centres(classes, roi, 102, rng).T)], minlength=4
    )
    assert counts.sum() == 102 and counts.min() == 25 and counts.max() == 26


def test_absent_class_splits_between_present_ones():
    rng = np.random.default_rng(1)
    classes = layered_classes()
    roi = np.zeros(classes.shape, bool)
    roi[:, 20:] = True  # no area pixel inside
    centres = sample_balanced_centres(classes, roi, 9, rng)
    counts = np.bincount(classes[centres[:, 0], centres[:, 1]], minlength=4)
    assert counts.tolist() == [3, 3, 3, 0]
    with pytest.raises(ValueError):
        sample_balanced_centres(classes, np.zeros_like(roi), 4, rng)


def test_pooling_over_sections_is_uniform_within_a_class():
    rng = np.random.default_rng(2)
    a = np.zeros((10, 10), np.int64)
    a[0, :2] = 3  # 2 area pixels on section 0
    b = np.zeros((10, 10), np.int64)
    b[0, :6] = 3  # 6 area pixels on section 1
    roi = np.ones((10, 10), bool)
    centres = sample_balanced_centres_sections([a, b], [roi, roi], 8000, rng)
    assert centres.shape == (8000, 3)
    area = centres[np.array([a, b])[centres[:, 0], centres[:, 1], centres[:, 2]] == 3]
    assert len(area) == 4000
    # 2 of 8 area pixels lie on section 0: expect 1000 +- 4 sigma (sigma ~ 27)
    assert abs(np.count_nonzero(area[:, 0] == 0) - 1000) < 110


def test_balanced_probabilities():
    classes = layered_classes()
    roi = np.ones(classes.shape, bool)
    prob = class_balanced_probabilities(classes, roi)
    assert prob.sum() == pytest.approx(1.0)
    for k in range(4):
        assert prob[classes == k].sum() == pytest.approx(0.25)
    assert prob[classes == 3].max() > prob[classes == 0].max()


def test_orientation_normalisation():
    assert superior_angle((0, -1)) == 0.0 and superior_rot90((0, -1)) == 0
    assert superior_angle((-1, 0)) == pytest.approx(np.pi / 2) and superior_rot90((-1, 0)) == 3
    assert superior_rot90((1, 0)) == 1 and superior_rot90((0, 1)) == 2
    assert superior_rot90((-0.9, 0.3)) == 3  # snapped to the nearest quarter turn
    assert superior_angle((-1, -1), snap_90=False) == pytest.approx(np.pi / 4)
    # a marker on the superior side ends up at the top after np.rot90(image, k)
    for direction, marker in [((-1, 0), (10, 0)), ((1, 0), (10, 19)), ((0, 1), (19, 10))]:
        image = np.zeros((20, 20))
        image[marker] = 1
        rotated = np.rot90(image, superior_rot90(direction))
        assert np.argwhere(rotated)[0][0] == 0


def test_extract_patch_rotation_matches_rot90():
    rng = np.random.default_rng(3)
    image = rng.random((40, 50)).astype(np.float32)
    labels = rng.integers(0, 4, (40, 50))
    straight = extract_patch(image, (20, 25), 15)
    np.testing.assert_array_equal(straight, image[13:28, 18:33])
    quarter = extract_patch(image, (20, 25), 15, angle_rad=np.pi / 2)
    np.testing.assert_allclose(quarter, np.rot90(straight, k=-1), atol=1e-5)
    lab = extract_patch(labels, (20, 25), 15, angle_rad=np.pi / 2, order=0)
    np.testing.assert_array_equal(lab, np.rot90(labels[13:28, 18:33], k=-1))
    # rotation consistent with superior_angle: superior to the left -> patch "up" looks left
    marker = np.zeros((41, 41), np.float32)
    marker[20, 5] = 1  # left of the centre
    patch = extract_patch(marker, (20, 20), 41, angle_rad=superior_angle((-1, 0)), order=0)
    assert tuple(np.argwhere(patch)[0]) == (5, 20)  # now above the centre
    # outside the image: fill
    corner = extract_patch(labels, (0, 0), 5, order=0, fill=-100)
    assert (corner[:2] == -100).all() and (corner[:, :2] == -100).all()


def test_extract_patch_scaling_on_a_ramp():
    cols = np.tile(np.arange(200, dtype=np.float32), (200, 1))
    patch = extract_patch(cols, (100.0, 99.5), 10, scale=4.0)
    # output pixel c samples col 99.5 + (c - 4.5) * 4 (a ramp survives the Gaussian pre-filter)
    np.testing.assert_allclose(patch[5], 99.5 + (np.arange(10) - 4.5) * 4, atol=1e-3)


def test_intensity_augmentation():
    x = np.linspace(0, 1, 11, dtype=np.float32)
    np.testing.assert_allclose(intensity_transform(x, 1.0, 0.0, 1.0), x, atol=1e-7)
    y = intensity_transform(np.float32(0.25), 1.1, -0.2, 0.8)
    assert y == pytest.approx(1.1 * 0.25**0.8 - 0.2, rel=1e-6)
    assert intensity_transform(np.float32(1.0), 1.1, 0.2, 1.0) == 1.0  # clipped
    rng = np.random.default_rng(4)
    draws = [draw_augmentation(rng) for _ in range(2000)]
    angles = np.rad2deg([d.angle_rad for d in draws])
    assert angles.min() >= -45 and angles.max() <= 45 and angles.min() < -43 and angles.max() > 43
    for name, (lo, hi) in [("alpha", (0.9, 1.1)), ("beta", (-0.2, 0.2)), ("gamma", (0.8, 1.214))]:
        values = np.array([getattr(d, name) for d in draws])
        assert values.min() >= lo and values.max() <= hi
        assert values.min() < lo + 0.02 * (hi - lo) and values.max() > hi - 0.02 * (hi - lo)
