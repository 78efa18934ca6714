"""Surface file round trips (GIfTI, PLY)."""

from __future__ import annotations

import numpy as np
import trimesh

from cortexgraph.meshes.io import read_gifti_surface, write_gifti_surface, write_ply


def mesh():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=12.5)
    return np.asarray(sphere.vertices, dtype=np.float32), np.asarray(sphere.faces)


def test_gifti_round_trip(tmp_path):
    vertices, faces = mesh()
    path = write_gifti_surface(tmp_path / "mid.surf.gii", vertices, faces)
    v, f = read_gifti_surface(path)
    np.testing.assert_array_equal(v, vertices)
    np.testing.assert_array_equal(f, faces)
    assert v.dtype == np.float64 and f.dtype == np.int64
    assert not list(tmp_path.glob(".mid*"))


def test_ply_readable_by_trimesh(tmp_path):
    vertices, faces = mesh()
    colors = np.zeros((len(vertices), 3))
    colors[:, 0] = 1.0
    path = write_ply(tmp_path / "mid.ply", vertices, faces, vertex_colors=colors)
    loaded = trimesh.load(path, process=False)
    np.testing.assert_allclose(loaded.vertices, vertices)
    np.testing.assert_array_equal(loaded.faces, faces)
    rgb = np.asarray(loaded.visual.vertex_colors)[:, :3]
    np.testing.assert_array_equal(rgb, np.tile([255, 0, 0], (len(vertices), 1)))


def test_gifti_vertex_labels_round_trip(tmp_path):
    import numpy as np

    from cortexgraph.meshes.io import read_gifti_vertex_labels

    vertices = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    faces = np.array([[0, 1, 2]])
    path = write_gifti_surface(tmp_path / "lab.surf.gii", vertices, faces, vertex_labels=[3, 7, 7])
    assert read_gifti_vertex_labels(path).tolist() == [3, 7, 7]
    v, f = read_gifti_surface(path)
    assert np.array_equal(f, faces)
