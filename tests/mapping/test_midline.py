"""Midline refinement on an analytic annulus: gray matter between r = 3 mm and r = 5 mm."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.errors import ConvergenceError
from cortexgraph.mapping.midline import midline_field, refine_points, tissue_share

SPACING_UM = 50.0


def annulus(spacing_um=SPACING_UM, r_in=3.0, r_out=5.0, size_mm=14.0):
    n = int(size_mm * 1000 / spacing_um)
    y, x = (np.mgrid[0:n, 0:n] + 0.5) * spacing_um / 1000.0 - size_mm / 2
    r = np.hypot(x, y)
    return (r >= r_in) & (r < r_out), size_mm / 2


def test_points_move_onto_the_midline_circle():
    gray, centre = annulus()
    field, skeleton, info = midline_field(gray, SPACING_UM)
    assert info["iterations"] > 1
    sk_r = np.hypot(*((np.argwhere(skeleton) + 0.5) * 0.05 - centre).T)
    assert abs(np.median(sk_r) - 4.0) < 0.05  # the skeleton of an annulus is its mid circle
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    radii = np.where(np.arange(24) % 2 == 0, 3.3, 4.7)
    points = np.column_stack([centre + radii * np.cos(angles), centre + radii * np.sin(angles)])
    refined, moved = refine_points(points, field, SPACING_UM)
    new_r = np.hypot(*(refined - centre).T)
    # every point ends within one pixel (50 um) of the skeleton, the discrete midline ...
    skeleton_mm = (np.argwhere(skeleton)[:, ::-1] + 0.5) * 0.05
    to_skeleton = np.min(np.linalg.norm(refined[:, None] - skeleton_mm[None], axis=2), axis=1)
    assert to_skeleton.max() <= 0.05
    # ... which itself deviates from the true mid circle by up to 1.5 px on a 40 px wide band
    assert np.abs(new_r - 4.0).max() < 2.5 * 0.05
    assert np.allclose(moved, np.abs(radii - 4.0), atol=0.125)
    # radial motion only: angles are preserved (spacing along the cortex kept)
    new_angles = np.arctan2(refined[:, 1] - centre, refined[:, 0] - centre) % (2 * np.pi)
    assert np.abs(np.angle(np.exp(1j * (new_angles - angles)))).max() < 0.02


def test_movement_is_capped_at_2mm():
    gray, centre = annulus()
    field, _, _ = midline_field(gray, SPACING_UM)
    far = np.array(
        [[centre + 6.5, centre]]
    )  # 1.5 mm outside the pial side, 2.5 mm from the midline
    refined, moved = refine_points(far, field, SPACING_UM, max_move_mm=2.0)
    assert moved[0] == pytest.approx(2.0, abs=1e-9)
    assert np.hypot(*(refined[0] - centre)) == pytest.approx(4.5, abs=0.06)


def test_sor_failure_is_loud():
    gray, _ = annulus()
    with pytest.raises(ConvergenceError, match="did not converge"):
        midline_field(gray, SPACING_UM, max_iter=2, tol=1e-12)


def test_tissue_share_of_a_half_plane():
    tissue = np.zeros((200, 200), np.uint8)
    tissue[:, 100:] = 2
    points = np.array([[5.0, 5.0], [7.5, 5.0], [2.5, 5.0], [5.0, 0.0]])  # mm at 50 um
    share = tissue_share(tissue, points, 50.0, patch_mm=2.0)
    assert share[0] == pytest.approx(0.5, abs=0.03)
    assert share[1] == pytest.approx(1.0)
    assert share[2] == pytest.approx(0.0)
    assert share[3] == pytest.approx(0.25, abs=0.03)  # top border: outside counts as background


def blobs(shape=(90, 120), seed=4, threshold=0.15):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), 4) > threshold


def test_skeleton_and_distance_equal_scikit_image_and_scipy():
    from scipy import ndimage
    from skimage.morphology import skeletonize

    from cortexgraph.mapping.midline import distance_to, skeleton_of

    for seed in range(4):
        mask = blobs(seed=seed)
        mask[0, 10:30] = True  # touching the image border
        np.testing.assert_array_equal(skeleton_of(mask), skeletonize(mask))
        np.testing.assert_allclose(
            distance_to(mask, 0.16), ndimage.distance_transform_edt(~mask, sampling=0.16), atol=1e-9
        )
    assert not skeleton_of(np.zeros((5, 5), bool)).any()
    assert np.all(np.isinf(distance_to(np.zeros((5, 5), bool), 1.0)))


@pytest.mark.parametrize("gray_kind", ["annulus", "blobs"])
def test_multigrid_field_equals_the_direct_solve_and_the_sor(gray_kind):
    import scipy.sparse.linalg as spla

    from cortexgraph.mapping.midline import skeleton_of
    from cortexgraph.meshes.laplace import laplace_system

    gray = annulus(spacing_um=100.0)[0] if gray_kind == "annulus" else blobs()
    if gray_kind == "blobs":
        gray[0, 10:30] = gray[1, 10:30] = True  # gray on the image border sees u = 1 beyond it
    field, skeleton, info = midline_field(gray, 100.0)
    assert info["method"] == "multigrid" and info["residual"] <= 1e-5
    # the 5-point system written out: free pixels = gray minus skeleton, u = 0 on the skeleton,
    # u = 1 on every other pixel and beyond the image border; solved directly in float64
    labels = np.ones((gray.shape[0] + 2, gray.shape[1] + 2, 1), np.uint8)
    labels[1:-1, 1:-1, 0][gray] = 2
    labels[1:-1, 1:-1, 0][skeleton_of(gray)] = 0
    matrix, rhs, index = laplace_system(labels, 1.0, boundary="centre")
    assert np.all(matrix.diagonal() == 4.0)  # every free pixel has four coupled neighbours
    exact = spla.spsolve(matrix.tocsc(), rhs)
    np.testing.assert_allclose(field[index[:, 0] - 1, index[:, 1] - 1], exact, atol=1e-4)
    assert np.all(field[skeleton] == 0.0)
    # the SOR reference (previous implementation) stops at updates of 1e-4: within 5e-3
    sor, sor_skeleton, sor_info = midline_field(gray, 100.0, method="sor")
    np.testing.assert_array_equal(sor_skeleton, skeleton)
    assert np.abs(sor - field).max() < 5e-3
    np.testing.assert_allclose(sor[~gray], field[~gray], rtol=1e-6)  # 1 + distance outside
    # refined points: the same up to one integration step (0.5 px) for a few, < 1 um for most
    rng = np.random.default_rng(0)
    pixels = np.argwhere(gray)[rng.choice(int(gray.sum()), 400)]
    points = (pixels[:, ::-1] + rng.random((400, 2))) * 0.1
    new, _ = refine_points(points, field, 100.0)
    old, _ = refine_points(points, sor, 100.0)
    gap = np.linalg.norm(new - old, axis=1)
    assert gap.max() <= 0.5 * 0.1 + 1e-9 and np.mean(gap < 1e-3) >= 0.95
