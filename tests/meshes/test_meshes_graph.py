"""Mesh graphs: edges from faces and the HDF5 graph file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import trimesh

from cortexgraph.errors import DataFormatError
from cortexgraph.meshes.graph import edges_from_faces, load_graph, save_graph_h5


@pytest.fixture(scope="module")
def icosphere():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)


def test_edges_from_faces_icosphere(icosphere):
    vertices, faces = icosphere
    edge_index = edges_from_faces(faces)
    n = len(vertices)
    assert edge_index.dtype == np.int64 and edge_index.shape == (2, 3 * len(faces))
    degree = np.bincount(edge_index[0], minlength=n)
    assert degree.mean() == pytest.approx((6 * n - 12) / n)  # Euler: closed genus-0 mesh
    assert set(np.unique(degree)) == {5, 6}
    pairs = set(map(tuple, edge_index.T))
    assert all((b, a) in pairs for a, b in pairs)  # symmetric
    key = edge_index[0] * n + edge_index[1]
    assert np.all(np.diff(key) > 0)  # unique and sorted


def test_round_trip_and_append(tmp_path, icosphere):
    vertices, faces = icosphere
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(vertices), 4)).astype(np.float32)
    labels = rng.integers(0, 5, size=len(vertices))
    path = save_graph_h5(tmp_path / "g.h5", vertices, faces, x=features, y=labels)
    data = load_graph(path)
    assert data.num_nodes == len(vertices)
    np.testing.assert_array_equal(data.pos.numpy(), vertices.astype(np.float32))
    np.testing.assert_array_equal(data.face.numpy(), faces.T)
    np.testing.assert_array_equal(data.edge_index.numpy(), edges_from_faces(faces))
    np.testing.assert_array_equal(data.x.numpy(), features)
    np.testing.assert_array_equal(data.y.numpy(), labels)
    assert data.edge_index.dtype == torch.int64

    assert not list(tmp_path.glob(".g.h5*"))  # no temporary files left
    with pytest.raises(DataFormatError, match="first dimension"):
        save_graph_h5(tmp_path / "bad.h5", vertices, faces, bad=np.zeros(3))
    assert not (tmp_path / "bad.h5").exists()


def test_rejects_foreign_file(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["pos"] = np.zeros((3, 3))
    with pytest.raises(DataFormatError, match="not a cortexgraph graph"):
        load_graph(tmp_path / "other.h5")
