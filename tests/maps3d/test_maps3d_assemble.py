"""Sections placed into volume planes by nearest neighbour."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.errors import CortexgraphError
from cortexgraph.maps3d.assemble import assemble_area_volume


def _disc(n, c, r):
    rows, cols = np.mgrid[:n, :n]
    return (rows - c[0]) ** 2 + (cols - c[1]) ** 2 < r**2


def test_matrix_and_callable_place_sections_in_their_planes():
    # volume: 40 x 10 x 40 voxels of 0.5 mm, origin (-10, 0, -10) mm; sections every 1 mm in y
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = [-10.0, 0.0, -10.0]
    shape = (40, 10, 40)
    # section pixels 0.25 mm; column -> x, row -> -z (image rows run top to bottom)
    m = np.array([[0.25, 0.0, -10.0], [0.0, -0.25, 10.0], [0.0, 0.0, 1.0]])
    sec = _disc(80, (40, 40), 20)  # disc of radius 5 mm centred at x = 0, z = 0
    masks = {s: sec for s in range(5)}
    transforms = {s: m for s in range(5)}

    def call(cols, rows):
        return 0.25 * cols - 10.0, 10.0 - 0.25 * rows

    transforms[3] = call
    vol, known = assemble_area_volume(
        masks, transforms, shape, affine, section_y_mm=lambda s: 1.0 * s, excluded=[2]
    )
    np.testing.assert_array_equal(known, [1, 0, 1, 0, 0, 0, 1, 0, 1, 0])
    assert not vol[:, 4, :].any() and not vol[:, 1, :].any()
    area_mm2 = np.pi * 25.0
    for j in (0, 2, 6, 8):
        assert abs(vol[:, j, :].sum() * 0.25 - area_mm2) / area_mm2 < 0.05
    # pulled (matrix) and pushed (callable) planes agree up to boundary voxels
    assert (vol[:, 6, :] != vol[:, 0, :]).sum() <= 0.08 * vol[:, 0, :].sum()  # measured 6.9 %
    # centre of the disc lands at voxel (20, 20) (x = 0, z = 0)
    assert vol[20, 0, 20] and vol[19, 0, 19] and not vol[0, 0, 0]


def test_rejects_oblique_affine():
    affine = np.eye(4)
    affine[0, 1] = 0.3
    with pytest.raises(CortexgraphError):
        assemble_area_volume({}, {}, (4, 4, 4), affine, section_y_mm={})
