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
