"""Training and prediction ROIs with known transforms."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.lsm.roi import (
    dilate_mm,
    mask_bbox,
    prediction_roi,
    prediction_roi_from_areas,
    scale_about_centroid,
    training_roi,
    warp_mask,
)

SPACING_UM = 100.0  # 0.1 mm pixels


def translation(dx_mm: float, dy_mm: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx_mm], [0.0, 1.0, dy_mm], [0.0, 0.0, 1.0]])


def rotation_about(angle_rad: float, cx_mm: float, cy_mm: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return translation(cx_mm, cy_mm) @ rot @ translation(-cx_mm, -cy_mm)


def test_training_roi_is_a_disc_of_lattice_points():
    area = np.zeros((41, 41), bool)
    area[20, 20] = True
    roi = training_roi(area, SPACING_UM, radius_mm=0.5)  # 5 px
    ii, jj = np.mgrid[-20:21, -20:21]
    assert np.array_equal(roi, ii**2 + jj**2 <= 25)
    assert roi.sum() == 81
    assert not training_roi(np.zeros((5, 5), bool), SPACING_UM).any()


def test_training_roi_of_a_bar_near_the_border():
    area = np.zeros((30, 50), bool)
    area[0:3, 10:40] = True
    roi = training_roi(area, 50.0, radius_mm=0.25)  # 5 px at 50 um
    ii, jj = np.mgrid[0:30, 0:50]
    dj = np.maximum(np.maximum(10 - jj, jj - 39), 0)
    di = np.maximum(ii - 2, 0)
    assert np.array_equal(roi, di**2 + dj**2 <= 25)


def test_warp_mask_translation_is_an_exact_shift():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 4:12] = True
    mask[15, 25] = True
    warped = warp_mask(mask, translation(3 * 0.1, -2 * 0.1), SPACING_UM, (20, 30))
    expected = np.zeros_like(mask)
    expected[3:7, 7:15] = True
    expected[13, 28] = True
    assert np.array_equal(warped, expected)
    # moved partly out of the image: the part outside is lost
    warped = warp_mask(mask, translation(0.0, -0.6), SPACING_UM, (20, 30))
    expected = np.zeros_like(mask)
    expected[0:3, 4:12] = True
    expected[9, 25] = True
    assert np.array_equal(warped, expected)


def test_warp_mask_quarter_turn_is_rot90():
    rng = np.random.default_rng(1)
    mask = rng.random((24, 24)) < 0.3
    centre = 24 * 0.1 / 2
    warped = warp_mask(mask, rotation_about(np.pi / 2, centre, centre), SPACING_UM, (24, 24))
    # +90 deg in (x right, y down) maps pixel (i, j) to (j, N-1-i): a clockwise quarter turn
    assert np.array_equal(warped, np.rot90(mask, k=-1))
    expected = np.zeros_like(mask)
    ii, jj = np.nonzero(mask)
    expected[jj, 23 - ii] = True
    assert np.array_equal(warped, expected)


def test_warp_mask_to_a_different_spacing():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 6:8] = True  # 0.2 mm block at x 0.6-0.8, y 0.2-0.4
    warped = warp_mask(mask, np.eye(3), SPACING_UM, (20, 20), spacing_out_um=50.0)
    expected = np.zeros((20, 20), bool)
    expected[4:8, 12:16] = True
    assert np.array_equal(warped, expected)


def test_prediction_roi_enlarges_the_radius_then_transforms():
    spacing_um, n = 25.0, 160  # 4 mm square image, 1 mm radius = 40 px, enlargement 0.05 mm = 2 px
    area_s = np.zeros((n, n), bool)
    area_s[60:68, 40:60] = True
    area_t = np.zeros((n, n), bool)
    area_t[80:90, 90:100] = True
    radius_mm = 1.0
    roi_s = training_roi(area_s, spacing_um, radius_mm)
    roi_t = training_roi(area_t, spacing_um, radius_mm)
    t_su = translation(0.5, 0.0)  # 20 px to the right
    t_tu = rotation_about(np.pi / 2, 2.0, 2.0)  # quarter turn about the image centre
    roi_u = prediction_roi(roi_s, roi_t, t_su, t_tu, spacing_um, (n, n), radius_mm=radius_mm)
    grown_s = dilate_mm(roi_s, spacing_um, 0.05 * radius_mm)
    grown_t = dilate_mm(roi_t, spacing_um, 0.05 * radius_mm)
    assert grown_s.sum() > roi_s.sum()
    expected = np.zeros((n, n), bool)
    expected[:, 20:] = grown_s[:, :-20]
    expected |= np.rot90(grown_t, k=-1)
    assert np.array_equal(roi_u, expected)
    # eq. 5.65 from the annotations (radius 1.05 r) agrees up to lattice effects at the rim
    direct = prediction_roi_from_areas(area_s, area_t, t_su, t_tu, spacing_um, (n, n), radius_mm)
    assert np.count_nonzero(direct ^ roi_u) <= 0.02 * roi_u.sum()


def test_prediction_roi_identity_without_enlargement_is_the_union():
    a = np.zeros((30, 30), bool)
    a[2:10, 3:8] = True
    b = np.zeros((30, 30), bool)
    b[20:25, 20:29] = True
    roi = prediction_roi(a, b, np.eye(3), np.eye(3), SPACING_UM, (30, 30), scale=1.0)
    assert np.array_equal(roi, a | b)


def test_centroid_scaling():
    mask = np.zeros((30, 30), bool)
    mask[10:20, 10:20] = True
    scaled = scale_about_centroid(mask, 1.5)
    assert scaled.sum() == 225
    assert mask_bbox(scaled) == (7, 22, 7, 22)
    roi = prediction_roi(
        mask, mask, np.eye(3), np.eye(3), SPACING_UM, (30, 30), scale=1.5, enlarge="centroid"
    )
    assert np.array_equal(roi, scaled)
    with pytest.raises(ValueError):
        prediction_roi(mask, mask, np.eye(3), np.eye(3), SPACING_UM, (30, 30), enlarge="area")
