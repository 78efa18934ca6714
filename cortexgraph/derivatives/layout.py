"""Where the outputs shared between stages live, and the node-array file format.

One writer per file: the graph written by ``build-graph`` is never edited afterwards; node arrays
that other stages compute go to files of their own, one folder per stage and scope, each recording the
key of the graph it belongs to::

    <brain>/graph/<hemi>.h5                    build-graph     geometry + section, point_mm, valid
    <brain>/features/priors/<hemi>.h5          node-priors     co (N, 3), pm (N, P)
    <brain>/features/labels/<hemi>.h5          node-labels     y (N,), train_mask, test_mask
    <brain>/features/cy-<encoder>/<hemi>.h5    features@enc    cy (N, D), cy_measured (N,)
    <brain>/predictions/<run>/<hemi>.h5        predict@run     proba (N, K), pred (N,)
    <brain>/labels/gnn-<run>/sNNNN.h5          project@run     per-section area ids of one run
    <brain>/render/<source>/                   render@source   pictures and exports of one source
    <brain>/maps3d/<source>/<area>.nii.gz      map3d@source@area

Node-array files are HDF5 with the attributes ``format = "cortexgraph-node-arrays"``, ``version``,
``num_nodes`` and ``graph_key`` (the key of the ``build-graph`` record whose graph they describe), and
one dataset per array (first dimension ``num_nodes``).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from cortexgraph.data.names import check_name
from cortexgraph.errors import UpstreamError
from cortexgraph.outputs import atomic_path, write_h5_dataset

__all__ = [
    "HEMISPHERES",
    "NODE_ARRAYS_FORMAT",
    "graph_path",
    "priors_path",
    "node_labels_path",
    "cy_path",
    "prediction_path",
    "label_source_dir",
    "render_dir",
    "maps3d_dir",
    "write_node_arrays",
    "read_node_arrays",
    "node_array_shapes",
]

HEMISPHERES = ("lh", "rh")
NODE_ARRAYS_FORMAT = "cortexgraph-node-arrays"
NODE_ARRAYS_VERSION = 1


def _hemi(hemi: str) -> str:
    if hemi not in HEMISPHERES:
        raise ValueError(f"hemisphere must be one of {HEMISPHERES}, got {hemi!r}")
    return hemi


def graph_path(derivatives: Path, brain: str, hemi: str) -> Path:
    """``<brain>/graph/<hemi>.h5``: the graph of one hemisphere (build-graph)."""
    return Path(derivatives) / check_name(brain, "brain id") / "graph" / f"{_hemi(hemi)}.h5"


def priors_path(derivatives: Path, brain: str, hemi: str) -> Path:
    """``<brain>/features/priors/<hemi>.h5``: CO and PM (node-priors)."""
    return Path(derivatives) / check_name(brain, "brain id") / "features" / "priors" / f"{hemi}.h5"


def node_labels_path(derivatives: Path, brain: str, hemi: str) -> Path:
    """``<brain>/features/labels/<hemi>.h5``: Y and the split masks (node-labels)."""
    return Path(derivatives) / check_name(brain, "brain id") / "features" / "labels" / f"{hemi}.h5"


def cy_path(derivatives: Path, brain: str, encoder: str | None, hemi: str) -> Path:
    """``<brain>/features/cy-<encoder>/<hemi>.h5``: CY of one encoder (features@encoder).

    ``encoder`` None (no encoder chosen) raises the DataFormatError of :func:`check_name`.
    """
    folder = f"cy-{check_name(encoder, 'encoder name')}"
    return Path(derivatives) / check_name(brain, "brain id") / "features" / folder / f"{hemi}.h5"


def prediction_path(derivatives: Path, brain: str, run: str, hemi: str) -> Path:
    """``<brain>/predictions/<run>/<hemi>.h5``: proba and pred of one model run (predict@run)."""
    return (
        Path(derivatives)
        / check_name(brain, "brain id")
        / "predictions"
        / check_name(run, "run name")
        / f"{_hemi(hemi)}.h5"
    )


def label_source_dir(derivatives: Path, brain: str, source: str) -> Path:
    """``<brain>/labels/<source>/``: per-section labels of one source (``gnn-<run>``)."""
    return Path(derivatives) / check_name(brain, "brain id") / "labels" / check_name(source, "source")


def render_dir(derivatives: Path, brain: str, source: str) -> Path:
    """``<brain>/render/<source>/``: pictures and exports of one label source."""
    return Path(derivatives) / check_name(brain, "brain id") / "render" / check_name(source, "source")


def maps3d_dir(derivatives: Path, brain: str, source: str) -> Path:
    """``<brain>/maps3d/<source>/``: 3D area maps and statistics of one label source."""
    return Path(derivatives) / check_name(brain, "brain id") / "maps3d" / check_name(source, "source")


def write_node_arrays(
    path: str | os.PathLike, graph_key: str, num_nodes: int, **arrays: np.ndarray
) -> Path:
    """Write a node-array file atomically (module docstring). Every array has first dim N."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["format"] = NODE_ARRAYS_FORMAT
            h5.attrs["version"] = NODE_ARRAYS_VERSION
            h5.attrs["num_nodes"] = int(num_nodes)
            h5.attrs["graph_key"] = str(graph_key)
            for name, value in arrays.items():
                value = np.asarray(value)
                if value.ndim == 0 or value.shape[0] != num_nodes:
                    raise ValueError(
                        f"node array {name!r} has shape {value.shape}, expected first dim {num_nodes}"
                    )
                write_h5_dataset(h5, name, data=value, chunks=True if value.size > 1 else None)
    return path


def _open_checked(path: Path, graph_key: str | None, h5: h5py.File, what: str) -> None:
    if h5.attrs.get("format") != NODE_ARRAYS_FORMAT:
        raise UpstreamError(
            f"not a cortexgraph node-array file ({what})",
            file=str(path),
            fix="recompute it with the stage that writes it",
        )
    if graph_key is not None and h5.attrs.get("graph_key") != graph_key:
        raise UpstreamError(
            f"{what} was computed for another version of the graph",
            file=str(path),
            fix="recompute it (the stage's command is in the error of `cortexgraph status`)",
        )


def read_node_arrays(
    path: str | os.PathLike,
    names: list[str] | tuple[str, ...] | None = None,
    *,
    graph_key: str | None = None,
    what: str = "node arrays",
) -> dict[str, np.ndarray]:
    """Arrays of a node-array file (all, or ``names``); refuses a file of another graph."""
    path = Path(path)
    with h5py.File(path, "r") as h5:
        _open_checked(path, graph_key, h5, what)
        wanted = list(h5.keys()) if names is None else list(names)
        missing = [n for n in wanted if n not in h5]
        if missing:
            raise UpstreamError(
                f"{what} lack the array(s) {', '.join(missing)}",
                file=str(path),
                fix="recompute them with the stage that writes them",
            )
        return {n: h5[n][...] for n in wanted}


def node_array_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in a node-array file, without reading them."""
    with h5py.File(path, "r") as h5:
        return {n: tuple(h5[n].shape) for n in h5.keys()}
