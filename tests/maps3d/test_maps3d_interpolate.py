"""Gap filling between known section planes: ball, cone, exact harmonic field, the continuum
solution of the Laplace equation, the default method."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.maps3d.interpolate import (
    harmonic_gap_field,
    interpolate_missing_sections,
    interpolation_method,
    signed_distance_plane,
)


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _ball(n=64, radius=25.0):
    g = np.mgrid[:n, :n, :n] - (n - 1) / 2.0
    return np.sqrt((g**2).sum(0)) < radius


@pytest.mark.parametrize(("method", "min_dice"), [("linear", 0.99), ("laplace", 0.99)])
def test_ball_every_other_plane_removed(method, min_dice):
    ball = _ball()
    known = np.zeros(ball.shape[1], bool)
    known[::2] = True
    known[-1] = True
    damaged = ball & known[None, :, None]
    out = interpolate_missing_sections(damaged, known, method=method)
    assert _dice(out, ball) > min_dice  # measured 0.993 (linear), 0.995 (laplace)
    np.testing.assert_array_equal(out[:, known, :], ball[:, known, :])


def test_cone_interpolates_to_intermediate_radius():
    # radius grows linearly along y: R(y) = 8 + 0.5 y voxels; only planes 0, 20, 40 known
    x = np.arange(60) - 29.5
    xx, yy, zz = np.meshgrid(x, np.arange(41), x, indexing="ij")
    radius = 8.0 + 0.5 * yy
    cone = np.hypot(xx, zz) < radius
    known = np.zeros(41, bool)
    known[[0, 20, 40]] = True
    out = interpolate_missing_sections(cone & known[None, :, None], known, voxel_size_mm=0.5)
    r_equiv = np.sqrt(out.sum(axis=(0, 2)) / np.pi)
    r_true = radius[0, :, 0]
    # equivalent-disc radius within 0.5 voxel of the analytic radius on every plane
    assert np.abs(r_equiv - r_true).max() < 0.5
    assert _dice(out, cone) > 0.99


def test_planes_outside_known_range_stay_empty():
    ball = _ball(32, 12.0)
    known = np.zeros(32, bool)
    known[10:20:3] = True
    out = interpolate_missing_sections(ball, known)
    assert not out[:, :10, :].any() and not out[:, 20:, :].any()
    assert out[:, 11, :].any()


def test_signed_distance_zero_level_midway():
    plane = np.zeros((20, 20), bool)
    plane[5:15, :] = True
    f = signed_distance_plane(plane, (0.5, 0.5))
    np.testing.assert_allclose(f[4, 10], -0.25)
    np.testing.assert_allclose(f[5, 10], 0.25)
    np.testing.assert_allclose(f[9, 10], 2.25)
    assert (signed_distance_plane(np.zeros((4, 4), bool)) < 0).all()


def test_harmonic_gap_field_solves_discrete_laplace():
    rng = np.random.default_rng(1)
    f0, f1 = rng.random((10, 12)), rng.random((10, 12))
    hx, hy, hz = 1.0, 2.0, 0.5
    gap = harmonic_gap_field(f0, f1, 4, (hx, hy, hz)).astype(np.float64)
    full = np.concatenate([f0[:, None], gap, f1[:, None]], axis=1)
    p = np.pad(full, ((1, 1), (0, 0), (1, 1)), mode="edge")  # Neumann in-plane borders
    c = full[:, 1:-1]
    lap = (
        (p[2:, 1:-1, 1:-1] - 2 * c + p[:-2, 1:-1, 1:-1]) / hx**2
        + (full[:, 2:] - 2 * c + full[:, :-2]) / hy**2
        + (p[1:-1, 1:-1, 2:] - 2 * c + p[1:-1, 1:-1, :-2]) / hz**2
    )
    assert np.abs(lap).max() < 1e-5
    # constant in-plane data: harmonic along y alone = linear interpolation
    lin = harmonic_gap_field(np.zeros((3, 3)), np.full((3, 3), 5.0), 4)
    np.testing.assert_allclose(lin[0, :, 0], [1, 2, 3, 4], atol=1e-6)


def test_interpolate_into_memmap_in_place(tmp_path):
    ball = _ball(32, 12.0)
    known = np.zeros(32, bool)
    known[::3] = True
    expected = interpolate_missing_sections(ball & known[None, :, None], known)
    mm = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=bool, shape=ball.shape)
    mm[:] = ball & known[None, :, None]
    interpolate_missing_sections(mm, known, out=mm)
    np.testing.assert_array_equal(np.asarray(mm), expected)


def test_area_ends_midway_between_a_section_with_it_and_one_without():
    # a disc on planes 0 and 8, none on plane 16 (all three known): the area ends half-way
    disc = np.hypot(*(np.mgrid[:30, :30] - 14.5)) < 8
    vol = np.zeros((30, 17, 30), bool)
    vol[:, 0, :] = disc
    vol[:, 8, :] = disc
    known = np.zeros(17, bool)
    known[[0, 8, 16]] = True
    mid = interpolate_missing_sections(vol, known)
    assert [mid[:, j, :].any() for j in range(9, 17)] == [True] * 3 + [False] * 5
    np.testing.assert_array_equal(mid[:, 11, :], disc)  # a cylinder up to the midpoint
    linear = interpolate_missing_sections(vol, known, method="linear")
    np.testing.assert_array_equal(mid, linear)  # the same amount and, for a disc, shape
    # with the empty plane's own field (-plane diagonal) the area stops sooner: measured 1 plane
    # (linear) and 0 planes (laplace)
    far = interpolate_missing_sections(vol, known, empty_planes="far", method="linear")
    assert 0 < sum(far[:, j, :].any() for j in range(9, 17)) < 3
    far = interpolate_missing_sections(vol, known, empty_planes="far")
    assert sum(far[:, j, :].any() for j in range(9, 17)) < 3
    np.testing.assert_array_equal(mid[:, 1:8, :], np.repeat(disc[:, None, :], 7, axis=1))


def test_area_level_keeps_a_moving_band_that_the_zero_level_loses():
    # a band 4 voxels wide shifted by 6 voxels between planes 0 and 6 (thin oblique cortex)
    vol = np.zeros((40, 7, 30), bool)
    vol[10:14, 0, :] = True
    vol[16:20, 6, :] = True
    known = np.zeros(7, bool)
    known[[0, 6]] = True
    zero = interpolate_missing_sections(vol, known, level="zero")
    area = interpolate_missing_sections(vol, known)  # level='area'
    assert zero[:, 3, :].sum() < 0.5 * 4 * 30  # half-way the zero level keeps < half the band
    counts = [int(area[:, j, :].sum()) for j in range(1, 6)]
    # every plane keeps the band's area (4 rows), exactly but half-way, where the field is flat
    # over 6 rows and the tie is kept whole (measured [120, 120, 180, 120, 120])
    assert counts[:2] == [120, 120] and counts[3:] == [120, 120] and 120 <= counts[2] <= 180
    # the band moves: its centre passes through the intermediate positions
    centres = [np.flatnonzero(area[:, j, 0]).mean() for j in range(7)]
    assert np.all(np.diff(centres) >= 0) and centres[3] == 14.5 and centres[6] > centres[0]


def test_extend_planes_copies_the_end_planes():
    ball = _ball(32, 12.0)
    known = np.zeros(32, bool)
    known[10:21:5] = True
    out = interpolate_missing_sections(ball, known, extend_planes=2)
    for j in (8, 9):
        np.testing.assert_array_equal(out[:, j, :], ball[:, 10, :])
    for j in (21, 22):
        np.testing.assert_array_equal(out[:, j, :], ball[:, 20, :])
    assert not out[:, 7, :].any() and not out[:, 23, :].any()


def _mode_error(n_plane: int, n_gap: int) -> float:
    """Largest error of the discrete Laplacian field against the continuum solution for one
    in-plane cosine mode on a (10 mm x 8 mm) plane and a 4 mm gap, at ``n_plane`` voxels per mm."""
    lx, lz, gap_mm = 10.0, 8.0, 4.0
    nx, nz = int(lx * n_plane), int(lz * n_plane)
    hx, hz = lx / nx, lz / nz
    hy = gap_mm / (n_gap + 1)
    x = (np.arange(nx) + 0.5) * hx  # voxel centres; zero flux at 0 and lx (cell faces)
    z = (np.arange(nz) + 0.5) * hz
    mode = np.cos(2 * np.pi * x / lx)[:, None] * np.cos(np.pi * z / lz)[None, :]
    k = np.pi * np.hypot(2 / lx, 1 / lz)
    f0, f1 = 3.0 * mode + 1.0, -2.0 * mode  # a mode and a constant on each plane
    field = harmonic_gap_field(f0, f1, n_gap, (hx, hy, hz)).astype(np.float64)
    y = hy * np.arange(1, n_gap + 1)
    exact = (
        1.0 * (1 - y / gap_mm)[None, :, None]
        + mode[:, None, :]
        * (
            3.0 * np.sinh(k * (gap_mm - y)) / np.sinh(k * gap_mm)
            - 2.0 * np.sinh(k * y) / np.sinh(k * gap_mm)
        )[None, :, None]
    )
    return float(np.abs(field - exact).max())


def test_laplace_gap_field_converges_to_the_continuum_solution():
    """The Laplacian field between two planes with data ``c + a cos(kx x) cos(kz z)`` is
    ``c (1 - y/L) + a cos cos sinh(k (L - y)) / sinh(k L)`` (zero flux at the plane borders); the
    7-point discretisation converges to it at second order. Linear interpolation would give the
    weights ``1 - y / L`` for the mode as well: 0.37 instead of 0.15 at mid-gap here."""
    coarse = _mode_error(4, 7)  # 0.25 mm in-plane, 0.5 mm between planes
    fine = _mode_error(8, 15)  # both halved
    assert coarse < 0.02
    assert fine < coarse / 3.0  # second order: ratio ~4


def test_laplace_is_the_default_and_differs_from_linear():
    from cortexgraph.maps3d.stage import MapOptions

    assert MapOptions().interpolation == "laplace"
    assert MapOptions(interpolation="harmonic").interpolation == "laplace"  # the former name
    assert interpolation_method("harmonic") == "laplace"
    with pytest.raises(ValueError, match="laplace, linear"):
        interpolation_method("spline")
    # a disc on one section and a shifted, smaller disc 13 planes further: the default is the
    # Laplacian field, which is not the linear blend
    g = np.mgrid[:48, :14, :48].astype(float)
    known = np.zeros(14, bool)
    known[[0, 13]] = True
    mask = np.zeros((48, 14, 48), bool)
    mask[:, 0] = np.hypot(g[0, :, 0] - 20, g[2, :, 0] - 24) < 12
    mask[:, 13] = np.hypot(g[0, :, 0] - 28, g[2, :, 0] - 24) < 7
    default = interpolate_missing_sections(mask, known, level="zero")
    laplace = interpolate_missing_sections(mask, known, method="laplace", level="zero")
    linear = interpolate_missing_sections(mask, known, method="linear", level="zero")
    np.testing.assert_array_equal(default, laplace)
    assert (laplace != linear).sum() > 20
