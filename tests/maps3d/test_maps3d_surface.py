"""Marching-cubes surfaces in mm: closed, outward, area of a sphere, previews."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.maps3d.morphometry import triangle_areas_mm2
from cortexgraph.maps3d.surface import downsample_fraction, mask_surface, signed_mesh_volume


def _ball(n, h, radius, origin):
    g = np.mgrid[:n, :n, :n] * h + np.asarray(origin, dtype=float)[:, None, None, None]
    return np.sqrt((g**2).sum(0)) < radius


def test_sphere_area_and_vertices_in_mm():
    h, radius, n = 0.5, 8.0, 40
    origin = (-9.75, -9.75, -9.75)
    affine = np.diag([h, h, h, 1.0])
    affine[:3, 3] = origin
    ball = _ball(n, h, radius, origin)
    verts, faces = mask_surface(ball, affine)
    r = np.linalg.norm(verts, axis=1)
    assert np.abs(r - radius).max() < 0.6 * h  # vertices near the analytic sphere, in mm
    area = triangle_areas_mm2(verts, faces).sum()
    assert abs(area / (4 * np.pi * radius**2) - 1) < 0.02
    assert signed_mesh_volume(verts, faces) > 0  # closed, outward normals
    # plain marching cubes on the binary mask overestimates the area (staircase)
    v0, f0 = mask_surface(ball, affine, smooth_sigma_vox=0.0)
    assert triangle_areas_mm2(v0, f0).sum() / area > 1.05


def test_negative_determinant_affine_keeps_outward_orientation():
    ball = _ball(20, 1.0, 6.0, (-9.5, -9.5, -9.5))
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    verts, faces = mask_surface(ball, affine)
    assert signed_mesh_volume(verts, faces) > 0
    assert abs(verts[:, 0].mean() + 9.5) < 0.1  # x = -i: centre voxel 9.5 at x = -9.5


def test_surface_closes_at_volume_border():
    cube = np.ones((6, 6, 6), bool)
    verts, faces = mask_surface(cube, np.eye(4), smooth_sigma_vox=0.0)
    vol = signed_mesh_volume(verts, faces)
    # marching cubes at 0.5 between the last voxel and the zero pad: a 6 x 6 x 6 mm box with
    # its 12 edges chamfered (0.5 mm legs: 0.125 mm^2 per mm of edge) -> ~216 - 12 * 6 * 0.125
    assert np.allclose(verts.min(axis=0), -0.5) and np.allclose(verts.max(axis=0), 5.5)
    assert 205.0 < vol < 6.0**3


def test_preview_fraction_and_affine():
    h = 0.02
    affine = np.diag([h, h, h, 1.0])
    affine[:3, 3] = [1.0, 2.0, 3.0]
    mask = np.zeros((23, 20, 20), bool)
    mask[:7, :7, :7] = True
    frac, aff5 = downsample_fraction(mask, 5, affine)
    assert frac.shape == (5, 4, 4)
    assert frac[0, 0, 0] == 1.0 and frac[2, 0, 0] == 0.0
    assert frac[1, 1, 1] == pytest.approx((2 / 5) ** 3)  # voxels 5, 6 of block 5..9 inside
    assert frac[1, 0, 0] == pytest.approx(2 / 5)
    assert frac.sum() * 125 == mask.sum()
    # preview voxel 0 sits at the centre of original voxels 0..4, i.e. original index 2
    np.testing.assert_allclose(aff5[:3, 3], [1.04, 2.04, 3.04])
    np.testing.assert_allclose(np.diag(aff5)[:3], [0.1, 0.1, 0.1])


def test_preview_surface_area_close_to_full():
    h, radius, n = 0.25, 6.0, 56
    origin = (-6.875,) * 3
    affine = np.diag([h, h, h, 1.0])
    affine[:3, 3] = origin
    ball = _ball(n, h, radius, origin)
    full = triangle_areas_mm2(*mask_surface(ball, affine)).sum()
    prev = triangle_areas_mm2(*mask_surface(ball, affine, downsample=4)).sum()
    exact = 4 * np.pi * radius**2
    assert abs(full / exact - 1) < 0.02
    assert abs(prev / exact - 1) < 0.02  # 1 mm preview voxels on a 6 mm sphere (-0.6 %)


def test_chunked_surface_equals_in_memory():
    from scipy import ndimage

    from cortexgraph.maps3d.surface import mask_surface_chunked

    rng = np.random.default_rng(0)
    mask = ndimage.gaussian_filter(rng.random((50, 45, 40)), 3) > 0.5
    mask[0:5, 0:5, 0:5] = True  # touches the volume border
    affine = np.diag([0.5, 0.4, 0.3, 1.0])
    affine[:3, 3] = [1.0, 2.0, 3.0]
    v, f = mask_surface(mask, affine)
    v2, f2 = mask_surface_chunked(mask, affine, chunk_vox=16)
    assert len(v2) == len(v) and len(f2) == len(f)  # face vertices merged exactly
    area, area2 = triangle_areas_mm2(v, f).sum(), triangle_areas_mm2(v2, f2).sum()
    assert area2 == pytest.approx(area, rel=1e-9)
    assert signed_mesh_volume(v2, f2) == pytest.approx(signed_mesh_volume(v, f), rel=1e-9)
    np.testing.assert_allclose(np.sort(v2, axis=0), np.sort(v, axis=0), atol=1e-9)
