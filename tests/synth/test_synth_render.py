"""Section rendering of the phantom: transition zones at area borders have the stated width."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.synth.render import laminar_fields


def _two_areas(width_px: int = 400, rows: int = 40):
    """Areas 1 (left) and 2 (right) meeting at column width_px / 2; one depth bin everywhere."""
    area = np.ones((rows, width_px), dtype=np.int64)
    area[:, width_px // 2 :] = 2
    depth_bin = np.zeros_like(area)
    luts = {
        "density": np.array([[0.0], [0.2], [1.0]], dtype=np.float32),
        "size_um": np.array([[0.0], [10.0], [20.0]], dtype=np.float32),
    }
    return area, depth_bin, luts


def _width_10_90_mm(profile: np.ndarray, low: float, high: float, spacing_um: float) -> float:
    """Distance between the columns where a monotonic profile crosses 10 % and 90 % of its step."""
    x = np.arange(len(profile))
    frac = (profile - low) / (high - low)
    x10 = np.interp(0.1, frac, x)
    x90 = np.interp(0.9, frac, x)
    return (x90 - x10) * spacing_um / 1000.0


def test_without_transition_the_border_is_abrupt():
    area, depth_bin, luts = _two_areas()
    density, size = laminar_fields(area, depth_bin, luts, 20.0, None)
    assert set(np.unique(density)) == {np.float32(0.2), np.float32(1.0)}
    zero = np.zeros(3)
    np.testing.assert_array_equal(laminar_fields(area, depth_bin, luts, 20.0, zero)[1], size)


@pytest.mark.parametrize("width_mm, spacing_um", [(1.0, 20.0), (2.0, 20.0), (1.0, 5.0)])
def test_the_transition_zone_has_the_stated_width(width_mm, spacing_um):
    """Across a straight border the density goes from 10 % to 90 % of its step over the stated
    width (within 10 %: the coarse grid and its interpolation), symmetric about the border."""
    area, depth_bin, luts = _two_areas(width_px=int(8 * width_mm * 1000 / spacing_um))
    widths = np.array([0.0, width_mm, width_mm])
    density, size = laminar_fields(area, depth_bin, luts, spacing_um, widths)
    profile = density.mean(axis=0)
    measured = _width_10_90_mm(profile, 0.2, 1.0, spacing_um)
    assert measured == pytest.approx(width_mm, rel=0.1)
    border = area.shape[1] // 2
    assert profile[border - 1] < 0.6 < profile[border]  # the midpoint lies at the border
    assert 0.2 - 1e-4 <= profile.min() and profile.max() <= 1.0 + 1e-4
    size_profile = size.mean(axis=0)
    assert _width_10_90_mm(size_profile, 10.0, 20.0, spacing_um) == pytest.approx(width_mm, rel=0.1)


def test_off_cortex_pixels_keep_their_own_values():
    area, depth_bin, luts = _two_areas()
    area[:5] = 0  # a strip off the cortex
    density, _ = laminar_fields(area, depth_bin, luts, 20.0, np.array([0.0, 1.0, 1.0]))
    assert np.all(density[:5] == 0.0)
