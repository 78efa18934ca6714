"""Isosurfaces: shell midsurface radius, orientation, NaN handling, both back ends."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.meshes.isosurface import extract_isosurface
from cortexgraph.meshes.laplace import solve_laplace_depth

R_IN, R_OUT = 1.0, 4.0
MID = 2 * R_IN * R_OUT / (R_IN + R_OUT)  # 1.6 mm
METHODS = ["flying_edges", "lewiner"]


def shell(voxel_mm: float):
    half = int(np.ceil((R_OUT + 2 * voxel_mm) / voxel_mm))
    axis = voxel_mm * np.arange(-half, half + 1)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    radius = np.sqrt(x**2 + y**2 + z**2)
    labels = np.zeros(radius.shape, dtype=np.uint8)
    labels[radius < R_OUT] = 2
    labels[radius < R_IN] = 1
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = axis[0]
    return labels, radius, affine


def outward_fraction(vertices, faces, centre):
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return float(np.mean(np.einsum("ij,ij->i", tri.mean(axis=1) - centre, normal) > 0))


@pytest.fixture(scope="module")
def depth_fine():
    labels, _, affine = shell(0.1)
    depth, _ = solve_laplace_depth(labels, 0.1)
    return depth, affine


@pytest.mark.parametrize("method", METHODS)
def test_midsurface_radius_of_depth_field(method, depth_fine):
    depth, affine = depth_fine
    vertices, faces = extract_isosurface(depth, 0.5, affine, method=method)
    radius = np.linalg.norm(vertices, axis=1)
    assert abs(radius.mean() - MID) <= 0.1 * 0.1  # within 0.1 voxel (measured 0.017 voxel)
    assert radius.std() < 0.1
    assert outward_fraction(vertices, faces, np.zeros(3)) == 1.0  # towards lower depth = pial


@pytest.mark.parametrize("method", METHODS)
def test_midsurface_at_coarse_voxels_follows_voxelised_shell(method):
    # at 0.3 mm the voxelised balls have volume-equivalent radii 1.033 and 3.988 mm, so the
    # discrete midsurface lies at 2ab/(a+b) = 1.641 mm (0.14 voxel from 1.6): a property of
    # the labels, not of the solver or the extraction
    labels, _, affine = shell(0.3)
    a = (3 * (labels == 1).sum() * 0.3**3 / (4 * np.pi)) ** (1 / 3)
    b = (3 * (labels >= 1).sum() * 0.3**3 / (4 * np.pi)) ** (1 / 3)
    depth, _ = solve_laplace_depth(labels, 0.3)
    vertices, _ = extract_isosurface(depth, 0.5, affine, method=method)
    assert abs(np.linalg.norm(vertices, axis=1).mean() - 2 * a * b / (a + b)) <= 0.1 * 0.3


@pytest.mark.parametrize("method", METHODS)
def test_analytic_field_and_mirrored_affine(method):
    labels, radius, affine = shell(0.3)
    field = R_IN / (R_OUT - R_IN) * (R_OUT / np.maximum(radius, 1e-6) - 1.0)
    vertices, faces = extract_isosurface(field, 0.5, affine, method=method)
    assert abs(np.linalg.norm(vertices, axis=1).mean() - MID) <= 0.02 * 0.3
    mirror = affine.copy()
    mirror[0] *= -1.0
    v2, f2 = extract_isosurface(field, 0.5, mirror, method=method)
    centre = (mirror @ np.array([*(np.array(field.shape) // 2), 1.0]))[:3]
    assert outward_fraction(v2, f2, centre) == 1.0
    np.testing.assert_allclose(v2[:, 0], -vertices[:, 0])


@pytest.mark.parametrize("method", METHODS)
def test_nan_voxels_are_outside(method):
    labels, radius, affine = shell(0.3)
    field = radius.astype(np.float32)
    field[: field.shape[0] // 2] = np.nan  # i < 15 -> x < 0 mm
    vertices, faces = extract_isosurface(field, 2.0, affine, method=method)
    assert len(faces) > 0 and np.all(np.isfinite(vertices))
    # no triangle in a cell with a NaN corner: x of every vertex >= x of the first valid plane
    assert vertices[:, 0].min() >= affine[0, 3] + 0.3 * (field.shape[0] // 2) - 1e-9
    assert outward_fraction(vertices, faces, np.zeros(3)) == 0.0  # lower values inside
    mask = np.ones(field.shape, dtype=bool)
    mask[:, :, : field.shape[2] // 2] = False
    v3, _ = extract_isosurface(field, 2.0, affine, method=method, mask=mask)
    assert v3[:, 2].min() >= affine[2, 3] + 0.3 * (field.shape[2] // 2) - 1e-9


def test_level_outside_range_gives_empty_mesh():
    vertices, faces = extract_isosurface(np.zeros((4, 4, 4)), 0.5)
    assert vertices.shape == (0, 3) and faces.shape == (0, 3) and faces.dtype == np.int64


def fill_and_drop(volume, level, mask):
    """The definition of the restricted surface: invalid voxels filled below ``level``, marching
    cubes on the filled copy, then every triangle whose cell has an invalid corner removed."""
    from cortexgraph.meshes.isosurface import _drop_faces, _flying_edges

    valid = np.isfinite(volume) & (True if mask is None else mask)
    filled = np.where(valid, volume, level - 1.0).astype(np.float32)
    points, faces = _flying_edges(filled, level)
    cell_ok = np.ones(np.array(volume.shape) - 1, dtype=bool)
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                cell_ok &= valid[di : di + cell_ok.shape[0], dj : dj + cell_ok.shape[1], dk:][
                    :, :, : cell_ok.shape[2]
                ]
    cell = np.floor(points[faces].mean(axis=1, dtype=np.float64)[:, ::-1]).astype(int)
    np.clip(cell, 0, np.array(cell_ok.shape) - 1, out=cell)
    points, faces = _drop_faces(points, faces, cell_ok[tuple(cell.T)])
    return points[:, ::-1].astype(np.float64), faces


@pytest.mark.parametrize("with_mask", [False, True])
def test_in_place_path_equals_fill_and_drop(with_mask):
    # smooth random field with NaN blobs and infinities: the in-place run (no copy, NaN handed to
    # VTK) keeps exactly the triangles and vertices of the fill-and-drop definition, in order
    from scipy import ndimage

    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.standard_normal((40, 36, 44)), 3).astype(np.float32)
    blobs = ndimage.gaussian_filter(rng.standard_normal(field.shape), 2) > 0.12
    field[blobs] = np.nan
    field[5, 5:30, 20] = np.inf
    mask = None
    if with_mask:
        mask = ndimage.gaussian_filter(rng.standard_normal(field.shape), 2) < 0.1
    level = float(np.nanmedian(field[np.isfinite(field)]))
    vertices, faces = extract_isosurface(field, level, mask=mask)
    ref_vertices, ref_faces = fill_and_drop(field, level, mask)
    assert len(faces) > 1000 and np.all(np.isfinite(vertices))
    np.testing.assert_array_equal(vertices, ref_vertices)
    # same triangles up to the one global flip the orientation vote may apply
    assert np.array_equal(faces, ref_faces) or np.array_equal(faces, ref_faces[:, ::-1])


def test_finite_float32_volume_is_not_copied_or_changed():
    labels, radius, affine = shell(0.3)
    field = np.ascontiguousarray(radius, dtype=np.float32)
    before = field.copy()
    v1, f1 = extract_isosurface(field, 2.0, affine)
    v2, f2 = extract_isosurface(field, 2.0, affine, check_finite=False)
    v3, f3 = extract_isosurface(radius, 2.0, affine)  # float64: converted
    np.testing.assert_array_equal(field, before)
    for v, f in ((v2, f2), (v3, f3)):
        np.testing.assert_array_equal(v, v1)
        np.testing.assert_array_equal(f, f1)
