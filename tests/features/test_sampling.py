"""Tests of patch centre sampling along annotation midlines, the section split and balancing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import skeletonize

from cortexgraph.errors import CortexgraphError
from cortexgraph.features.sampling import (
    balanced_resample,
    centres_from_annotation,
    median_class_count,
    pixels_to_mm,
    prune_skeleton,
    sampling_ratios,
    skeleton_centres,
)

SPACING_UM = 20.0  # 50 px per mm
PIXEL_MM = SPACING_UM / 1000.0


def _grid(n=800):
    return np.mgrid[0:n, 0:n].astype(np.float64)


def _distance_to_skeleton_px(centres_mm, mask):
    """Distance (px) of each centre to the nearest pixel of the region's full skeleton."""
    skel = skeletonize(mask)
    rr, cc = np.nonzero(skel)
    px = centres_mm / PIXEL_MM - 0.5  # (col, row) continuous indices
    d = np.hypot(px[:, None, 0] - cc[None], px[:, None, 1] - rr[None])
    return d.min(axis=1)


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, 90.0])
def test_straight_band_centres_are_1mm_apart_on_the_skeleton(angle_deg):
    yy, xx = _grid()
    a = math.radians(angle_deg)
    u = (xx - 400) * math.cos(a) + (yy - 400) * math.sin(a)
    v = -(xx - 400) * math.sin(a) + (yy - 400) * math.cos(a)
    mask = (np.abs(v) < 60) & (np.abs(u) < 330)  # 2.4 mm thick, 13.2 mm long band
    centres = skeleton_centres(mask, SPACING_UM, step_mm=1.0)
    steps = np.hypot(*np.diff(centres, axis=0).T)
    np.testing.assert_allclose(steps, 1.0, atol=PIXEL_MM)
    assert _distance_to_skeleton_px(centres, mask).max() <= 1.0
    # the (pruned) midline stops about one half-thickness from each end of the band
    # (13.2 mm - 2 x 1.2 mm = 10.8 mm -> 11 centres)
    assert len(centres) == 11
    # samples are centred on the midline: equal leftovers at both ends
    along = (centres / PIXEL_MM - 0.5 - 400) @ np.array([math.cos(a), math.sin(a)])
    assert abs(along.min() + along.max()) < 2.0  # px


def test_annulus_centres_follow_the_ring():
    yy, xx = _grid()
    r = np.hypot(xx - 400, yy - 400)
    mask = (r > 250) & (r < 350)  # midline radius 300 px = 6 mm
    centres = skeleton_centres(mask, SPACING_UM, step_mm=1.0)
    radius_mm = 300 * PIXEL_MM
    circumference = 2 * math.pi * radius_mm
    # walked once around, cut at one point; no centre closer than half a step at the cut
    assert len(centres) == math.floor(circumference - 0.5) + 1
    chord = 2 * radius_mm * math.sin(0.5 / radius_mm)  # 1 mm of arc on the 6 mm circle
    steps = np.hypot(*np.diff(centres, axis=0).T)
    np.testing.assert_allclose(steps, chord, atol=PIXEL_MM)
    closing = np.hypot(*(centres[0] - centres[-1]))
    assert 0.5 - PIXEL_MM < closing < 1.5
    assert _distance_to_skeleton_px(centres, mask).max() <= 1.0
    np.testing.assert_allclose(
        np.hypot(*(centres / PIXEL_MM - 0.5 - 400).T), 300, atol=3.0
    )  # on the ring's midline within the skeleton's discretisation


def test_branched_region_walks_every_branch():
    yy, xx = _grid()
    bar = (np.abs(yy - 200) < 40) & (xx > 100) & (xx < 700)
    stem = (np.abs(xx - 400) < 40) & (yy > 200) & (yy < 700)
    mask = bar | stem
    centres = skeleton_centres(mask, SPACING_UM, step_mm=1.0)
    assert _distance_to_skeleton_px(centres, mask).max() <= 1.0
    px = centres / PIXEL_MM - 0.5
    on_bar = np.abs(px[:, 1] - 200) < 2
    on_stem = np.abs(px[:, 0] - 400) < 2
    assert np.all(on_bar | on_stem)
    # along each straight branch, neighbouring centres are 1 mm apart
    for sel, axis in ((on_bar & ~on_stem, 0), (on_stem & ~on_bar, 1)):
        coords = np.sort(centres[sel, axis])
        np.testing.assert_allclose(np.diff(coords), 1.0, atol=PIXEL_MM)
    # pruned midline: bar 600 px - 2 x 40 px, stem from the bar to 40 px before its end
    total_mm = ((600 - 80) + (500 - 40)) * PIXEL_MM
    assert abs(len(centres) - total_mm) <= 2
    # no two centres closer than a step (minus a pixel) through the junction
    d = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    d[np.diag_indices(len(d))] = np.inf
    assert d.min() >= 0.7  # the closest pair straddles the junction corner (0.78 mm)


def test_pixel_convention_and_tiny_regions():
    mask = np.zeros((6, 6), dtype=bool)
    mask[2, 3] = True
    centres = skeleton_centres(mask, 10.0)
    np.testing.assert_allclose(centres, [[3.5 * 0.01, 2.5 * 0.01]])
    np.testing.assert_allclose(pixels_to_mm(np.array([[2.0, 3.0]]), 10.0), centres)
    mm = pixels_to_mm(np.array([[0, 0], [2, 5]]), 16.0)  # pixel centres, x along the columns
    np.testing.assert_allclose(mm, [[0.008, 0.008], [0.088, 0.040]])
    blob = np.zeros((30, 30), dtype=bool)
    blob[10:16, 10:16] = True
    assert len(skeleton_centres(blob, 10.0)) == 1  # shorter than a step: one centre
    assert len(skeleton_centres(blob, 10.0, min_region_px=40)) == 0
    assert skeleton_centres(np.zeros((5, 5), bool), 10.0).shape == (0, 2)


def test_centres_from_annotation_labels_and_offsets():
    yy, xx = _grid(400)
    labels = np.zeros((400, 400), dtype=np.int32)
    labels[(np.abs(yy - 100) < 30) & (xx > 40) & (xx < 360)] = 7
    labels[(np.abs(yy - 300) < 25) & (xx > 60) & (xx < 300)] = 3
    centres, ids = centres_from_annotation(labels, SPACING_UM, step_mm=1.0)
    assert set(ids.tolist()) == {3, 7}
    assert np.all(np.diff(ids) >= 0)  # areas in increasing id order
    for area in (3, 7):
        expected = skeleton_centres(labels == area, SPACING_UM, 1.0)
        np.testing.assert_allclose(centres[ids == area], expected, atol=1e-9)
        px = np.round(centres[ids == area] / PIXEL_MM - 0.5).astype(int)
        assert np.all(labels[px[:, 1], px[:, 0]] == area)
    with pytest.raises(CortexgraphError):
        centres_from_annotation(labels.astype(np.float32), SPACING_UM)


def test_balanced_resample_exact_counts():
    labels = np.array([1] * 3 + [2] * 50 + [5] * 17 + [9] * 1)
    idx = balanced_resample(labels, 40, np.random.default_rng(3))
    assert idx.shape == (160,)
    values, counts = np.unique(labels[idx], return_counts=True)
    np.testing.assert_array_equal(values, [1, 2, 5, 9])
    np.testing.assert_array_equal(counts, [40, 40, 40, 40])
    again = balanced_resample(labels, 40, np.random.default_rng(3))
    np.testing.assert_array_equal(idx, again)
    only = balanced_resample(labels, 5, np.random.default_rng(0), classes=[2, 9], shuffle=False)
    np.testing.assert_array_equal(labels[only], [2] * 5 + [9] * 5)
    with pytest.raises(CortexgraphError, match="class 4"):
        balanced_resample(labels, 5, np.random.default_rng(0), classes=[4])


def test_sampling_ratio_helpers():
    labels = np.array([1] * 4 + [2] * 10 + [3] * 20)
    assert median_class_count(labels) == 10
    ratios = sampling_ratios(labels, 10)
    assert ratios == {1: 2.5, 2: 1.0, 3: 0.5}
    assert np.median(list(ratios.values())) == 1.0


def test_prune_skeleton_removes_outline_spurs_only():
    yy, xx = np.mgrid[0:80, 0:300]
    band = (yy >= 20) & (yy < 60) & (xx >= 10) & (xx < 290)  # 40 px thick: radius 20 px
    mask = band | (np.hypot(yy - 20, xx - 150) < 12)  # a bump on the outline makes a spur
    skel = skeletonize(mask)
    dist = ndimage.distance_transform_edt(mask)

    def end_points(s):
        count = ndimage.convolve(s.astype(int), np.ones((3, 3), int), mode="constant")
        return int(np.sum(s & (count == 2)))

    assert end_points(skel) == 3
    pruned = prune_skeleton(skel, dist, spur_factor=2.0)
    assert end_points(pruned) == 2
    assert np.all(pruned <= skel)
    rows = np.nonzero(pruned)[0]
    assert rows.min() >= 37 and rows.max() <= 42  # only the midline (row 39.5) is left
    np.testing.assert_array_equal(prune_skeleton(skel, dist, spur_factor=0.0), skel)
