"""Section geometry of the phantom: the non-rigid distortion of mounted sections."""

from __future__ import annotations

import numpy as np

from cortexgraph.synth.sectioning import SectionGeometry, distortion_rows


def _geometry(distortion=None) -> SectionGeometry:
    return SectionGeometry(
        thickness_mm=0.02,
        first_y_mm=-50.0,
        digitized=[1, 61],
        missing=set(),
        mirrored=set(),
        annotated=set(),
        width_mm=100.0,
        height_mm=80.0,
        centre_xz_mm=(0.0, 10.0),
        misalignment={1: np.eye(3), 61: np.eye(3)},
        distortion=distortion or {},
    )


def test_an_identity_distortion_changes_nothing():
    x, y = np.meshgrid(np.linspace(0, 100, 11), np.linspace(0, 80, 9))
    plain = _geometry().raw_to_block(1, x, y)
    identity = _geometry({1: np.array([1.0, 1.0, 0.0, 0.3, 0.1, 0.0, 1.2, 2.0])})
    np.testing.assert_allclose(identity.raw_to_block(1, x, y), plain, atol=1e-12)


def test_shrinkage_and_wave_move_points_by_the_stated_amounts():
    """A 2 % stretch along x moves a point 40 mm right of the centre by 40 / 1.02 - 40 = -0.784
    mm; a 0.5 mm wave along y (direction along x, phase 0) moves it by 0.5 sin(2 pi 40 / 30)."""
    params = np.array([1.02, 1.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0])
    geometry = _geometry({1: params})
    plain = _geometry()
    x, y = np.array([90.0]), np.array([40.0])  # 40 mm right of the canvas centre (50, 40)
    moved = geometry.raw_to_block(1, x, y) - plain.raw_to_block(1, x, y)
    assert np.isclose(moved[0, 0], 40 / 1.02 - 40)
    # block z = zc - (v - H/2): a wave of +dv in v is -dv in z
    assert np.isclose(moved[0, 2], -0.5 * np.sin(2 * np.pi * 40 / 30))
    assert moved[0, 1] == 0  # the section stays in its plane
    # the other section is not distorted
    np.testing.assert_array_equal(geometry.raw_to_block(61, x, y), plain.raw_to_block(61, x, y))


def test_the_ground_truth_rows_hold_every_parameter():
    params = np.array([1.01, 0.99, 0.3, np.pi / 2, 1.0, 0.2, np.pi, 2.0])
    rows = distortion_rows(_geometry({61: params}))
    assert len(rows) == 1 and rows[0][0] == 61
    assert [float(v) for v in rows[0][1:]] == [
        1.01, 0.99, 0.3, 90.0, 1.0, 0.2, 180.0, 2.0, 30.0
    ]  # fmt: skip
