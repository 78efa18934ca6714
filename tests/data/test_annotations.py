from __future__ import annotations

import numpy as np

from cortexgraph.data.annotations import (
    contour_problems,
    label_image_to_contours,
    rasterize_contours,
)


def test_label_image_contour_round_trip():
    labels = np.zeros((60, 80), np.uint16)
    labels[10:30, 10:40] = 5
    labels[35:55, 20:70] = 7
    labels[40:50, 30:40] = 0  # a hole in area 7
    collection = label_image_to_contours(labels, spacing_um=25.0)
    assert {f["properties"]["area_id"] for f in collection["features"]} == {5, 7}
    hole_rings = [len(f["geometry"]["coordinates"]) for f in collection["features"]]
    assert sorted(hole_rings) == [1, 2]
    back = rasterize_contours(collection["features"], labels.shape, 25.0)
    assert (back != labels).sum() <= 0.02 * labels.size
    # areas in mm^2 agree to within the boundary half-pixel
    assert abs((back == 5).sum() - (labels == 5).sum()) <= 2 * (20 + 30)
    assert contour_problems(collection["features"]) == []


def test_contours_are_in_mm():
    labels = np.zeros((40, 40), np.uint8)
    labels[10:20, 10:20] = 1  # pixels 10..19 at 100 um: 1.0 mm .. 2.0 mm
    ring = np.array(
        label_image_to_contours(labels, 100.0)["features"][0]["geometry"]["coordinates"][0]
    )
    assert abs(ring[:, 0].min() - 1.0) <= 0.05 and abs(ring[:, 0].max() - 2.0) <= 0.05


def test_rasterize_contours_scan_lines_match_point_in_polygon():
    """The scan-line fill marks the pixels whose centre lies inside, as skimage's point-in-polygon
    fill does (random star-shaped and self-intersecting rings, no centre exactly on an edge)."""
    from skimage import draw

    from cortexgraph.data.annotations import rasterize_contours

    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(3, 40))
        angles = rng.random(n) * 2 * np.pi
        angles = np.sort(angles) if trial % 2 else angles  # odd: simple; even: self-intersecting
        radius = rng.uniform(2, 10, n)
        ring = np.column_stack([12 + radius * np.cos(angles), 11 + radius * np.sin(angles)])
        ring = np.vstack([ring, ring[:1]]) + 1e-7  # no vertex on a pixel centre line
        feature = {"properties": {"area_id": 3},
                   "geometry": {"type": "Polygon", "coordinates": [ring.tolist()]}}  # fmt: skip
        ours = rasterize_contours([feature], (100, 120), 250.0) == 3
        rr, cc = draw.polygon(ring[:, 1] * 4 - 0.5, ring[:, 0] * 4 - 0.5, (100, 120))
        reference = np.zeros((100, 120), bool)
        reference[rr, cc] = True
        np.testing.assert_array_equal(ours, reference)
