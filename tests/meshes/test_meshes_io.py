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


def test_bad_mesh_is_named_with_each_callers_error_class(tmp_path):
    """One check (``mesh_problem``) serves the writers (a ``DataFormatError``) and the repair
    functions (a plain ``CortexgraphError``), with the same words."""
    import pytest

    from cortexgraph.errors import CortexgraphError, DataFormatError
    from cortexgraph.meshes.io import mesh_problem
    from cortexgraph.meshes.repair import keep_large_components

    vertices, faces = mesh()
    assert mesh_problem(np.asarray(vertices), np.asarray(faces)) is None
    bad = np.asarray(faces).copy()
    bad[0, 0] = len(vertices)
    assert mesh_problem(np.asarray(vertices), bad) == "faces reference vertices that do not exist"
    assert mesh_problem(np.asarray(vertices)[:, :2], bad) == (
        f"vertices must have shape (N, 3), got ({len(vertices)}, 2)"
    )
    with pytest.raises(DataFormatError, match="faces reference vertices") as written:
        write_ply(tmp_path / "bad.ply", vertices, bad)
    assert type(written.value) is DataFormatError
    with pytest.raises(CortexgraphError, match="faces reference vertices") as repaired:
        keep_large_components(vertices, bad, min_faces=1)
    assert type(repaired.value) is CortexgraphError
    assert not (tmp_path / "bad.ply").exists()
