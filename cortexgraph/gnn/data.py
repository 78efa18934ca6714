"""Graph files of a cohort as training data: find them, load them with a feature selection, split.

Method: graph-pipeline.md sections 6-7. Every brain has one graph per hemisphere,
``<cohort>/derivatives/cortexgraph/<brain>/graph/<hemi>.h5`` (docs/derivatives.md), whose node arrays
``cy`` (N, D), ``pm`` (N, P), ``co`` (N, 3) (float32), ``y`` (N,) int64 (class index, -1 unknown),
``train_mask`` and ``test_mask`` (N,) bool are written by the ``features`` stage. The transfer brain
(default B07) is held out entirely: its nodes are never trained on, and evaluation uses all its
labelled nodes; for the other brains training uses ``train_mask & (y >= 0)`` and evaluation
``test_mask & (y >= 0)`` (every fifth annotated section).

Loaded graphs are ``torch_geometric.data.Data`` with ``x_<type>`` attributes (the names
:class:`cortexgraph.gnn.models.NodeClassifier` reads) plus ``y``, ``train_mask``, ``test_mask``,
``edge_index``, ``num_nodes``; arrays the model does not need are dropped to save memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cortexgraph.data.manifest import DERIVATIVES, find_cohort
from cortexgraph.errors import CortexgraphError, DataFormatError

__all__ = [
    "FEATURE_TYPES",
    "HEMISPHERES",
    "GraphItem",
    "parse_features",
    "features_label",
    "graph_file",
    "find_graph_files",
    "read_feature_dims",
    "load_node_graph",
    "load_graphs",
]

FEATURE_TYPES = ("cy", "pm", "co")
HEMISPHERES = ("lh", "rh")


@dataclass
class GraphItem:
    """One hemisphere graph of one brain: where it lives and (once loaded) its ``Data``."""

    brain: str
    hemi: str
    path: Path
    data: object | None = None

    @property
    def key(self) -> str:
        return f"{self.brain}/{self.hemi}"


def parse_features(features: str | Iterable[str]) -> tuple[str, ...]:
    """A feature selection as a tuple in the canonical order (cy, pm, co).

    Parameters
    ----------
    features : str or iterable of str
        ``"cy,pm,co"``, ``"cy+co"``, ``"CY/PM"``, or a list such as ``["pm", "cy"]``.

    Returns
    -------
    tuple of str
        A non-empty subset of ``FEATURE_TYPES``, ordered as ``FEATURE_TYPES``.
    """
    if isinstance(features, str):
        for sep in "+/ ":
            features = features.replace(sep, ",")
        items = [f for f in features.split(",") if f]
    else:
        items = list(features)
    chosen = {str(f).strip().lower() for f in items}
    unknown = chosen - set(FEATURE_TYPES)
    if unknown or not chosen:
        raise CortexgraphError(
            f"bad feature selection {features!r}",
            fix=f"give a non-empty comma-separated subset of {', '.join(FEATURE_TYPES)}",
        )
    return tuple(f for f in FEATURE_TYPES if f in chosen)


def features_label(features: Sequence[str]) -> str:
    """``("cy", "pm", "co")`` -> ``"CY/PM/CO"`` (the seeds' naming)."""
    return "/".join(f.upper() for f in features)


def graph_file(cohort_root: str | os.PathLike, brain: str, hemi: str) -> Path:
    """``<cohort_root>/derivatives/cortexgraph/<brain>/graph/<hemi>.h5``."""
    return Path(cohort_root) / DERIVATIVES / brain / "graph" / f"{hemi}.h5"


def find_graph_files(
    cohort_root: str | os.PathLike, brains: Sequence[str] | None = None
) -> list[GraphItem]:
    """Every existing hemisphere graph of the given brains (default: all brains of the cohort).

    Returns
    -------
    list of GraphItem
        Sorted by brain (cohort order) then hemisphere (lh, rh); ``data`` is None.

    Raises
    ------
    CortexgraphError
        When a brain has no graph file at all.
    """
    cohort_root = Path(cohort_root)
    if brains is None:
        brains = find_cohort(cohort_root).brain_ids
    items = []
    for brain in brains:
        found = [
            GraphItem(brain, h, graph_file(cohort_root, brain, h))
            for h in HEMISPHERES
            if graph_file(cohort_root, brain, h).is_file()
        ]
        if not found:
            raise CortexgraphError(
                f"brain {brain} has no graph file",
                file=graph_file(cohort_root, brain, "lh").parent,
                fix=f"run `cortexgraph build-graph {brain}` and `cortexgraph features {brain}` first",
            )
        items.extend(found)
    return items


def read_feature_dims(path: str | os.PathLike, features: Sequence[str]) -> dict[str, int]:
    """Width of each selected node feature in a graph file, without loading the arrays."""
    path = Path(path)
    with h5py.File(path, "r") as h5:
        nodes = h5.get("nodes", {})
        dims = {}
        for name in features:
            if name not in nodes:
                raise DataFormatError(
                    f"graph has no node array {name!r}",
                    file=path,
                    fix="run `cortexgraph features` for this brain (or train without "
                    f"{name!r}: --features)",
                )
            shape = nodes[name].shape
            if len(shape) != 2:
                raise DataFormatError(f"node array {name!r} must be (N, D), got {shape}", file=path)
            dims[name] = int(shape[1])
    return dims


def load_node_graph(
    path: str | os.PathLike,
    features: Sequence[str],
    *,
    labels: bool = True,
):
    """Load one graph file for the node classifiers.

    Parameters
    ----------
    path : path-like
        A graph file (``cortexgraph.meshes.graph.save_graph_h5`` layout).
    features : sequence of str
        Feature types to load (subset of ``FEATURE_TYPES``); each becomes ``x_<type>`` (float32).
    labels : bool
        Also load ``y`` (int64), ``train_mask`` and ``test_mask`` (bool); required for training and
        evaluation, not for prediction.

    Returns
    -------
    torch_geometric.data.Data
        ``edge_index`` (2, E) int64, ``num_nodes``, ``x_<type>`` for every selected feature, and the
        label arrays when ``labels``.
    """
    import torch
    from torch_geometric.data import Data

    from cortexgraph.meshes.graph import _check_graph_file

    path = Path(path)
    _check_graph_file(path)
    wanted = list(features) + (["y", "train_mask", "test_mask"] if labels else [])
    with h5py.File(path, "r") as h5:
        n = int(h5["pos"].shape[0])
        edge_index = torch.from_numpy(h5["edge_index"][...].astype(np.int64))
        nodes = h5.get("nodes", {})
        missing = [name for name in wanted if name not in nodes]
        if missing:
            raise DataFormatError(
                f"graph has no node array(s) {', '.join(missing)}",
                file=path,
                fix="run `cortexgraph features` for this brain first",
            )
        arrays = {name: nodes[name][...] for name in wanted}
    data = Data(edge_index=edge_index, num_nodes=n)
    for name in features:
        x = arrays[name]
        if x.ndim != 2 or x.shape[0] != n or x.dtype.kind != "f":
            raise DataFormatError(
                f"node array {name!r} must be float (N={n}, D), got {x.dtype} {x.shape}", file=path
            )
        if not np.isfinite(x).all():
            raise DataFormatError(
                f"node array {name!r} holds NaN or infinite values",
                file=path,
                fix="rerun `cortexgraph features` (features must be finite for every node)",
            )
        setattr(data, f"x_{name}", torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    if labels:
        y = arrays["y"]
        if y.shape != (n,) or y.dtype.kind not in "iu":
            raise DataFormatError(f"node array 'y' must be int (N={n},), got {y.dtype}", file=path)
        data.y = torch.from_numpy(y.astype(np.int64))
        for name in ("train_mask", "test_mask"):
            m = arrays[name]
            if m.shape != (n,):
                raise DataFormatError(f"node array {name!r} must be (N={n},)", file=path)
            setattr(data, name, torch.from_numpy(m.astype(bool)))
    return data


def load_graphs(items: Sequence[GraphItem], features: Sequence[str], *, labels: bool = True):
    """Load the ``Data`` of every item in place (see :func:`load_node_graph`); returns ``items``."""
    for item in items:
        item.data = load_node_graph(item.path, features, labels=labels)
    return list(items)
