"""Mesh -> graph: edges from triangles, and the graph file (HDF5, loadable as a PyG ``Data``).

Graph file layout (HDF5, written atomically):

- ``/pos``         float32 (N, 3), vertex positions in world mm (RAS)
- ``/face``        int64 (M, 3), triangles
- ``/edge_index``  int64 (2, E), undirected edges stored in both directions, unique, sorted
- ``/nodes/<name>`` one dataset per node array, first dimension N (build-graph writes ``section``,
  ``point_mm``, ``valid``; a graph file is never edited afterwards: node features and predictions go
  to files of their own, :mod:`cortexgraph.derivatives.layout`)
- attribute ``format = "cortexgraph-graph"``, ``version = 1``

:func:`load_graph` returns ``torch_geometric.data.Data(pos, edge_index, face, **node_arrays)`` with
``face`` transposed to PyG's (3, M) convention.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from cortexgraph.errors import DataFormatError
from cortexgraph.outputs import atomic_path, write_h5_dataset

__all__ = ["edges_from_faces", "save_graph_h5", "load_graph"]

_FORMAT = "cortexgraph-graph"
_VERSION = 1


def edges_from_faces(faces: np.ndarray, n_vertices: int | None = None) -> np.ndarray:
    """Undirected edges of a triangle mesh: int64 (2, E), both directions, unique, sorted by
    (source, target)."""
    faces = np.asarray(faces, dtype=np.int64)
    if faces.size == 0:
        return np.zeros((2, 0), dtype=np.int64)
    a = faces[:, [0, 1, 2]].ravel()
    b = faces[:, [1, 2, 0]].ravel()
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    keep = src != dst
    src, dst = src[keep], dst[keep]
    n = int(max(src.max(), dst.max())) + 1 if n_vertices is None else int(n_vertices)
    key = np.unique(src * n + dst)
    return np.stack([key // n, key % n]).astype(np.int64)


def _write_node_arrays(group: h5py.Group, n_nodes: int, arrays: dict) -> None:
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] != n_nodes:
            raise DataFormatError(
                f"node array {name!r} has shape {value.shape}, expected first dimension {n_nodes}"
            )
        if name in group:
            del group[name]
        write_h5_dataset(group, name, data=value, chunks=True if value.size > 1 else None)


def save_graph_h5(
    path: str | os.PathLike, pos_mm: np.ndarray, faces: np.ndarray, **node_arrays: np.ndarray
) -> Path:
    """Write a mesh graph (positions in mm, faces, derived edges, node arrays) atomically."""
    pos = np.asarray(pos_mm, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise DataFormatError(f"pos_mm must have shape (N, 3), got {pos.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(pos)):
        raise DataFormatError("faces reference vertices that do not exist")
    edge_index = edges_from_faces(faces, len(pos))
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["format"] = _FORMAT
            h5.attrs["version"] = _VERSION
            write_h5_dataset(h5, "pos", data=pos)
            write_h5_dataset(h5, "face", data=faces.reshape(-1, 3))
            write_h5_dataset(h5, "edge_index", data=edge_index)
            _write_node_arrays(h5.create_group("nodes"), len(pos), node_arrays)
    return path


def _check_graph_file(path: Path) -> None:
    if not path.is_file():
        raise DataFormatError("graph file not found", file=str(path))
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("format") != _FORMAT:
            raise DataFormatError(
                "not a cortexgraph graph file (missing format attribute)",
                file=str(path),
                fix="write graphs with cortexgraph.meshes.graph.save_graph_h5",
            )


def load_graph(path: str | os.PathLike):
    """Read a graph file into ``torch_geometric.data.Data`` (pos float32, edge_index int64,
    face int64 (3, M), plus every stored node array as a tensor)."""
    import torch
    from torch_geometric.data import Data

    path = Path(path)
    _check_graph_file(path)
    with h5py.File(path, "r") as h5:
        pos = torch.from_numpy(h5["pos"][...])
        edge_index = torch.from_numpy(h5["edge_index"][...].astype(np.int64))
        face = torch.from_numpy(np.ascontiguousarray(h5["face"][...].astype(np.int64).T))
        nodes = {name: torch.from_numpy(ds[...]) for name, ds in h5.get("nodes", {}).items()}
    return Data(pos=pos, edge_index=edge_index, face=face, num_nodes=pos.shape[0], **nodes)
