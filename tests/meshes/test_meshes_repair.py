"""Mesh repair, components, hemisphere split, Poisson and isotropic remeshing."""

from __future__ import annotations

import numpy as np
import trimesh

from cortexgraph.meshes.graph import edges_from_faces
from cortexgraph.meshes.repair import (
    keep_large_components,
    poisson_reconstruct,
    remesh_isotropic,
    repair_mesh,
    split_hemispheres,
)


def sphere(radius=10.0, centre=(0.0, 0.0, 0.0), subdivisions=4):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(mesh.vertices) + np.asarray(centre), np.asarray(mesh.faces, dtype=np.int64)


def faces_per_edge(faces):
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def test_remeshed_sphere_is_isotropic_and_on_the_sphere():
    vertices, faces = sphere(10.0, subdivisions=5)  # 0.6 mm edges, 0.005 mm chord error
    v, f = remesh_isotropic(vertices, faces, target_edge_mm=1.0, iterations=10)
    a, b = edges_from_faces(f)
    length = np.linalg.norm(v[a[a < b]] - v[b[a < b]], axis=1)
    assert np.mean(np.abs(length - 1.0) <= 0.3) >= 0.9
    assert np.abs(np.linalg.norm(v, axis=1) - 10.0).max() < 0.05  # 5% of the edge


def test_split_two_spheres():
    v1, f1 = sphere(5.0, (-20.0, 0.0, 0.0), 2)
    v2, f2 = sphere(5.0, (20.0, 0.0, 0.0), 2)
    vertices = np.concatenate([v1, v2])
    faces = np.concatenate([f1, f2 + len(v1)])
    halves = split_hemispheres(vertices, faces, midline_x_mm=0.0)
    left_v, left_f = halves["left"]
    right_v, right_f = halves["right"]
    assert len(left_f) == len(f1) and len(right_f) == len(f2)
    assert len(left_v) == len(v1) and len(right_v) == len(v2)
    np.testing.assert_array_equal(left_v, v1)
    assert left_v[:, 0].max() < 0 < right_v[:, 0].min()
    assert left_f.max() == len(left_v) - 1


def test_keep_large_components():
    v1, f1 = sphere(10.0, (0.0, 0.0, 0.0), 3)
    v2, f2 = sphere(1.0, (30.0, 0.0, 0.0), 1)
    vertices = np.concatenate([v1, v2])
    faces = np.concatenate([f1, f2 + len(v1)])
    v, f = keep_large_components(vertices, faces, min_fraction=0.5)
    assert len(f) == len(f1) and len(v) == len(v1)
    v, f = keep_large_components(vertices, faces, min_faces=len(f2))
    assert len(f) == len(faces)


def test_repair_removes_injected_defects():
    vertices, faces = sphere(10.0, subdivisions=2)
    n_faces = len(faces)
    extra_vertex = len(vertices)
    vertices = np.concatenate([vertices, [[0.0, 0.0, 20.0]]])
    a, b = faces[0, 0], faces[0, 1]
    bad = np.array(
        [
            [a, b, extra_vertex],  # third face on edge (a, b): non-manifold edge
            faces[5],  # duplicate face
            [faces[7, 0], faces[7, 0], faces[7, 1]],  # degenerate face
        ]
    )
    assert faces_per_edge(np.concatenate([faces, bad[:1]])).max() == 3
    v, f = repair_mesh(vertices, np.concatenate([faces, bad]))
    assert faces_per_edge(f).max() == 2
    assert np.all(f[:, 0] != f[:, 1]) and np.all(f[:, 1] != f[:, 2]) and np.all(f[:, 0] != f[:, 2])
    assert len(np.unique(np.sort(f, axis=1), axis=0)) == len(f)
    used = np.zeros(len(v), dtype=bool)
    used[f.ravel()] = True
    assert used.all()
    # at most the faces around the bad edge go; the sphere stays nearly whole
    assert n_faces - 2 <= len(f) <= n_faces


def test_poisson_reconstruct_sphere():
    vertices, faces = sphere(10.0, subdivisions=4)
    v, f = poisson_reconstruct(vertices, faces, depth=6)
    radius = np.linalg.norm(v, axis=1)
    assert len(f) > 100
    assert abs(radius.mean() - 10.0) < 0.3


def _grid_sheet(n=21, h=0.5):
    x, z = np.meshgrid(np.arange(n) * h, np.arange(n) * h, indexing="ij")
    v = np.column_stack([x.ravel(), np.zeros(x.size), z.ravel()])
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    return v, np.concatenate([np.column_stack([a, b, d]), np.column_stack([a, d, c])]), idx


def test_mesh_quality_counts_components_genus_boundary_curvature_and_spikes():
    from cortexgraph.meshes.repair import (
        close_small_holes,
        mesh_quality,
        smooth_spikes,
        vertex_mean_curvature,
    )

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=5.0)
    q = mesh_quality(sphere.vertices, sphere.faces)
    assert (q["components"], q["genus"], q["boundary_edges"], q["spikes"]) == (1, 0, 0, 0)
    h = vertex_mean_curvature(sphere.vertices, sphere.faces)
    assert np.abs(h - 0.2).max() < 0.03  # 1 / radius
    torus = trimesh.creation.torus(major_radius=5, minor_radius=1.5)
    assert mesh_quality(torus.vertices, torus.faces)["genus"] == 1
    # a sheet with a one-vertex hole, a far-away stray triangle and a needle
    v, f, idx = _grid_sheet()
    holed = f[~np.isin(f, [idx[10, 10]]).any(axis=1)]
    stray_v = np.vstack([v, [[50, 0, 50], [51, 0, 50], [50, 0, 51]]])
    stray_f = np.vstack([holed, [[len(v), len(v) + 1, len(v) + 2]]])
    q = mesh_quality(stray_v, stray_f)
    assert q["components"] == 2 and q["component_faces"] == [len(holed), 1]
    assert q["boundary_loops"] == 3  # the sheet's rim, the hole, the stray triangle
    closed_v, closed_f = close_small_holes(v, holed, 30)
    q = mesh_quality(closed_v, closed_f)
    assert q["boundary_loops"] == 1 and q["boundary_edges"] == 80  # the rim (80 edges) stays open
    needle = v.copy()
    needle[idx[5, 5], 1] = 2.0
    q = mesh_quality(needle, f)
    assert q["spikes"] == 1 and q["max_spike_ratio"] == 4.0 and q["max_curvature_per_mm"] > 1.0
    smoothed, info = smooth_spikes(needle, f, 1.0)
    assert info == {"spikes_before": 1, "spikes_after": 0, "rounds": 1}
    np.testing.assert_allclose(smoothed, v)  # back into the plane; nothing else moved


def test_hemisphere_faces_return_a_medial_strip_a_tilted_fissure_cut_off():
    """Two sheets left and right of x = 0; the left sheet's medial edge bends over the plane into
    x = 0.4 (a tilted fissure), where it forms a piece on the right side touching only the left
    sheet: it goes back to the left. A plane split alone leaves it on the right."""
    from cortexgraph.meshes.repair import hemisphere_faces

    def sheet(x0, x1, nx=8, nz=10, h=0.5):
        x, z = np.meshgrid(np.linspace(x0, x1, nx), np.arange(nz) * h, indexing="ij")
        v = np.column_stack([x.ravel(), np.zeros(x.size), z.ravel()])
        idx = np.arange(nx * nz).reshape(nx, nz)
        a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
        return v, np.concatenate([np.column_stack([a, b, d]), np.column_stack([a, d, c])])

    lv, lf = sheet(-3.5, 0.4)  # its last column of faces lies right of the plane
    rv, rf = sheet(1.0, 4.5)
    v = np.vstack([lv, rv])
    f = np.vstack([lf, rf + len(lv)])
    left = hemisphere_faces(v, f, 0.0)
    assert left[: len(lf)].all() and not left[len(lf) :].any()
    plane = v[f, 0].mean(axis=1) < 0.0
    assert (~plane[: len(lf)]).sum() > 0  # the plane alone cut the strip off


def test_mask_clusters_group_by_mesh_edges_and_name_their_component():
    from cortexgraph.meshes.repair import mask_clusters

    # a strip of 6 squares along x (vertices at x = 0, 2, ..., 12; y = 0, 2) and a separate square
    # at x = 40; 2 mm voxels centred at -0.5 + 2 i mm (no ties in rounding)
    xs = np.arange(0.0, 13.0, 2.0)
    strip = np.array([[x, y, 0.0] for x in xs for y in (0.0, 2.0)])
    square = np.array([[40.0, 0, 0], [42, 0, 0], [40, 2, 0], [42, 2, 0]])
    vertices = np.vstack([strip, square])
    faces = [[2 * i, 2 * i + 2, 2 * i + 1] for i in range(6)]
    faces += [[2 * i + 2, 2 * i + 3, 2 * i + 1] for i in range(6)]
    faces += [[14, 15, 16], [15, 17, 16]]
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -0.5
    mask = np.zeros((22, 4, 4), dtype=bool)  # x up to 42.5 mm
    mask[1, :, :] = True  # x = 2 (voxel centred at 1.5)
    mask[4:6, :, :] = True  # x = 8, 10 (voxels centred at 7.5, 9.5): not joined to x = 2
    mask[20:22, :, :] = True  # x = 40, 42: the separate square
    out = mask_clusters(vertices, np.array(faces), mask, affine)
    assert [c["vertices"] for c in out] == [4, 4, 2]
    strip_parts = [c for c in out if c["component_vertices"] == 14]
    assert len(strip_parts) == 2 and len({c["component"] for c in strip_parts}) == 1
    assert sorted(c["bbox_mm"][0][0] for c in strip_parts) == [2.0, 8.0]
    (separate,) = [c for c in out if c["component_vertices"] == 4]
    assert separate["bbox_mm"] == [[40.0, 0.0, 0.0], [42.0, 2.0, 0.0]]
    assert separate["component"] != strip_parts[0]["component"]
    assert mask_clusters(vertices, np.array(faces), np.zeros_like(mask), affine) == []
    assert mask_clusters(vertices[:0], np.zeros((0, 3), dtype=int), mask, affine) == []
