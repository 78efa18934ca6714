"""Node labels -> a section's label image (cortexgraph.mapping.projection), on the annulus section
of tests/mapping/conftest.py whose labels are known in closed form; smoothing along the graph;
contours; grouping points by section."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.data.annotations import label_image_to_contours
from cortexgraph.data.manifest import Area, AreaTable
from cortexgraph.errors import DataFormatError
from cortexgraph.mapping.projection import (
    classes_to_area_ids,
    label_contours,
    merge_section_points,
    project_points_to_image,
    section_points,
    smooth_node_labels,
)
from tests.mapping.conftest import (
    N_POINTS,
    SPACING_UM,
    annulus,
    circle_points,
    sector_of,
)


# -- one section -----------------------------------------------------------------------------------
def test_every_gray_pixel_takes_the_label_of_the_nearest_point():
    tissue, _, angle = annulus()
    labels = np.arange(1, N_POINTS + 1) * 3  # area ids 3, 6, ..., 36
    out = project_points_to_image(tissue, circle_points(), labels, SPACING_UM, max_distance_mm=10.0)
    gray = tissue == 2
    expected = np.zeros_like(out)
    expected[gray] = labels[sector_of(angle[gray])]
    assert out.dtype == np.uint16
    assert gray.sum() > 4000
    np.testing.assert_array_equal(out, expected)  # every pixel, white matter and glass stay 0
    # each sector got pixels
    assert set(np.unique(out[gray]).tolist()) == set(labels.tolist())


def test_distance_bound_is_inclusive_and_leaves_far_pixels_unlabelled():
    spacing = 125.0  # pixel centres and distances below are exact binary fractions
    tissue, _, _ = annulus(spacing, 96)
    rows, cols = np.nonzero(tissue == 2)
    r0, c0 = rows[0], cols[0]
    point = np.array([[(c0 + 0.5) * 0.125, (r0 + 0.5) * 0.125]])
    out = project_points_to_image(tissue, point, [7], spacing, max_distance_mm=1.0)
    centres_x = (np.arange(96) + 0.5) * 0.125
    y, x = np.meshgrid(centres_x, centres_x, indexing="ij")
    distance = np.hypot(x - point[0, 0], y - point[0, 1])
    expected = np.where((tissue == 2) & (distance <= 1.0), 7, 0)
    np.testing.assert_array_equal(out, expected)
    # a pixel exactly 8 pixels (1.0 mm) away on the same row is gray and labelled
    exact = (distance == 1.0) & (tissue == 2)
    assert exact.any()
    assert (out[exact] == 7).all()
    assert (out[(tissue == 2) & (distance > 1.0)] == 0).all()


def test_unlabelled_and_nan_points():
    tissue, radius, angle = annulus()
    points = circle_points()
    labels = np.arange(1, N_POINTS + 1)
    labels[0] = 0  # a point without a label: its sector stays unlabelled
    points[1] = np.nan  # a missing point: its sector goes to the neighbours
    out = project_points_to_image(tissue, points, labels, SPACING_UM, max_distance_mm=10.0)
    gray = tissue == 2
    sector = sector_of(angle)
    assert (out[gray & (sector == 0)] == 0).all()
    assert set(np.unique(out[gray & (sector == 1)]).tolist()) <= {0, 3}
    assert (out[gray & (sector == 1)] == 3).any()  # the far half of sector 1 goes to point 2
    assert (out[gray & (sector >= 2)] == labels[sector[gray & (sector >= 2)]]).all()
    assert (out[~gray] == 0).all()


def test_rejects_negative_labels():
    tissue, _, _ = annulus()
    with pytest.raises(ValueError):
        project_points_to_image(tissue, circle_points(2), [-1, 2], SPACING_UM)


def test_contours_traced_per_area_box_equal_the_whole_image_tracing():
    tissue, _, _ = annulus()
    labels = project_points_to_image(tissue, circle_points(), np.arange(1, 13), SPACING_UM)
    labels[60:64, 10:20] = 5  # a second region of area 5
    whole = label_image_to_contours(labels, SPACING_UM, {5: "five"})["features"]
    boxed = label_contours(labels, SPACING_UM, {5: "five"})["features"]

    def key(feature):
        return feature["properties"]["area_id"], feature["geometry"]["coordinates"][0][0]

    assert len(whole) == len(boxed) == 13
    for a, b in zip(sorted(whole, key=key), sorted(boxed, key=key), strict=True):
        assert a["properties"] == b["properties"]
        for ring_a, ring_b in zip(
            a["geometry"]["coordinates"], b["geometry"]["coordinates"], strict=True
        ):
            np.testing.assert_allclose(ring_a, ring_b, atol=1e-6)


# -- node labels -----------------------------------------------------------------------------------
def _chain(n: int) -> np.ndarray:
    a = np.arange(n - 1)
    return np.concatenate([np.stack([a, a + 1]), np.stack([a + 1, a])], axis=1)


def test_smoothing_removes_a_lone_label_and_keeps_unknowns():
    labels = np.array([0, 0, 0, 1, 0, 0, -1, 2, 2])
    out = smooth_node_labels(labels, _chain(len(labels)), hops=1)
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 0, 0, -1, 2, 2])
    # node 5 has neighbours 4 (label 0) and 6 (unknown: no vote) -> stays 0; node 7: own 2 + 8 -> 2
    np.testing.assert_array_equal(smooth_node_labels(labels, _chain(9), hops=0), labels)


def test_smoothing_ties_keep_the_own_label():
    out = smooth_node_labels(np.array([4, 1]), _chain(2), hops=1)
    np.testing.assert_array_equal(out, [4, 1])


def test_smoothing_two_hops_weights_walks():
    # chain 0-1-2-3-4; (A + I)^2 rows: 0 -> [2, 2, 1, 0, 0], 2 -> [1, 2, 3, 2, 1]
    labels = np.array([1, 1, 2, 2, 2])
    out = smooth_node_labels(labels, _chain(5), hops=2)
    # node 0: label 1 gets 2 + 2, label 2 gets 1 -> 1
    # node 2: label 1 gets 1 + 2, label 2 gets 3 + 2 + 1 -> 2
    np.testing.assert_array_equal(out, [1, 1, 2, 2, 2])
    out = smooth_node_labels(np.array([1, 2, 2, 2, 2]), _chain(5), hops=2)
    # row 0: label 1 (node 0): 2, label 2 (nodes 1, 2): 2 + 1 = 3 -> 2
    np.testing.assert_array_equal(out, [2, 2, 2, 2, 2])


def test_classes_to_area_ids():
    areas = AreaTable([Area(5, "a", "#ff0000"), Area(2, "b", "#00ff00"), Area(9, "c", "#0000ff")])
    np.testing.assert_array_equal(classes_to_area_ids([0, 1, 2, -1], areas), [2, 5, 9, 0])
    with pytest.raises(DataFormatError):
        classes_to_area_ids([3], areas)


def test_section_points_groups_valid_points():
    section = np.array([10, 10, -1, 12, 10, 12])
    points = np.array([[1, 1], [2, 2], [np.nan, np.nan], [3, 3], [np.nan, 4], [5, 5]], float)
    valid = np.array([True, False, False, True, True, True])
    groups = section_points(section, points, valid, np.array([1, 2, 3, 4, 5, 6]))
    assert sorted(groups) == [10, 12]
    np.testing.assert_array_equal(groups[10].area_ids, [1])
    np.testing.assert_array_equal(groups[12].area_ids, [4, 6])
    np.testing.assert_array_equal(groups[12].points_mm, [[3, 3], [5, 5]])


def test_merge_section_points_joins_hemispheres():
    lh = section_points(
        np.array([1, 2]), np.array([[0.0, 1.0], [2.0, 3.0]]), np.ones(2, bool), [5, 6]
    )
    rh = section_points(np.array([2]), np.array([[4.0, 5.0]]), np.ones(1, bool), [7])
    merged = merge_section_points([lh, rh])
    assert sorted(merged) == [1, 2]
    np.testing.assert_array_equal(merged[2].points_mm, [[2.0, 3.0], [4.0, 5.0]])
    np.testing.assert_array_equal(merged[2].area_ids, [6, 7])
    np.testing.assert_array_equal(merged[1].area_ids, [5])
