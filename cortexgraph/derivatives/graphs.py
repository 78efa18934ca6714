"""A brain's graph with the node features asked for, assembled from the files of their stages.

The graph file of ``build-graph`` holds the geometry and the node <-> section mapping; CO/PM, Y and
CY (one set per encoder) and each model run's predictions live in files of their own
(:mod:`cortexgraph.derivatives.layout`). :func:`load_brain_graph` requires each of these outputs to be
current (:meth:`cortexgraph.derivatives.Derivatives.require`), checks that every node-array file was
computed for this very graph (its ``graph_key``), and returns one PyG ``Data``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.layout import (
    cy_path,
    graph_path,
    node_labels_path,
    prediction_path,
    priors_path,
    read_node_arrays,
)
from cortexgraph.errors import CortexgraphError, UpstreamError

__all__ = ["FEATURE_TYPES", "parse_features", "node_stages", "load_brain_graph", "graph_hemispheres"]

FEATURE_TYPES = ("cy", "pm", "co")


def parse_features(features: str | Sequence[str]) -> tuple[str, ...]:
    """A feature selection as a tuple in the canonical order (cy, pm, co).

    ``"cy,pm,co"``, ``"cy+co"``, ``"CY/PM"`` or a list such as ``["pm", "cy"]``; a non-empty subset of
    :data:`FEATURE_TYPES`, else CortexgraphError.
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


def node_stages(
    brain: str,
    features: Sequence[str] = (),
    *,
    encoder: str | None = None,
    labels: bool = False,
    run: str | None = None,
) -> list[StageId]:
    """The stage executions whose outputs :func:`load_brain_graph` reads for these arguments."""
    stages = [StageId("build-graph", brain)]
    if "cy" in features:
        if not encoder:
            raise CortexgraphError(
                "CY features need an encoder name", fix="pass the encoder (--encoder NAME)"
            )
        stages.append(StageId("features", brain, (encoder,)))
    if "pm" in features or "co" in features:
        stages.append(StageId("node-priors", brain))
    if labels:
        stages.append(StageId("node-labels", brain))
    if run:
        stages.append(StageId("predict", brain, (run,)))
    return stages


def graph_hemispheres(store: Derivatives, brain: str) -> list[str]:
    """The hemispheres with a graph in the current build-graph record of ``brain``."""
    record = store.require(StageId("build-graph", brain))
    return [
        hemi
        for hemi in ("lh", "rh")
        if store.namer.name(graph_path(store.root, brain, hemi)) in record.outputs
    ]


def load_brain_graph(
    store: Derivatives,
    brain: str,
    hemi: str,
    features: str | Sequence[str] = (),
    *,
    encoder: str | None = None,
    labels: bool = False,
    run: str | None = None,
    geometry: bool = True,
):
    """One hemisphere graph of a brain as ``torch_geometric.data.Data``.

    Parameters
    ----------
    store : the cohort's :class:`~cortexgraph.derivatives.Derivatives`.
    brain, hemi : which graph.
    features : feature types to attach (subset of cy, pm, co; may be empty).
    encoder : the encoder whose CY to attach (needed when ``cy`` is asked for).
    labels : attach ``y`` (int64 class index, -1 unlabelled), ``train_mask`` and ``test_mask``.
    run : attach the predictions of this model run (``proba`` float32 (N, K), ``pred`` int64).
    geometry : attach ``pos`` (N, 3) mm, ``face`` (3, M) and the node arrays ``section``,
        ``point_mm``, ``valid``; without it only ``edge_index`` and ``num_nodes``.

    Returns
    -------
    ``Data`` with ``edge_index``, ``num_nodes``, ``x_<type>`` float32 for each feature type and
    ``x`` (their concatenation in the order cy, pm, co), plus what the flags ask for.

    Raises
    ------
    UpstreamError when an output is missing, stale, or was computed for another graph.
    """
    import h5py
    import torch
    from torch_geometric.data import Data

    features = parse_features(features) if features else ()
    memo: dict = {}
    records = {
        sid.stage: store.require(sid, memo)
        for sid in node_stages(brain, features, encoder=encoder, labels=labels, run=run)
    }
    graph_key = records["build-graph"].key
    path = graph_path(store.root, brain, hemi)
    if store.namer.name(path) not in records["build-graph"].outputs:
        raise UpstreamError(
            f"brain {brain} has no {hemi} graph",
            file=str(path),
            fix=f"pick one of the hemispheres build-graph wrote for {brain}",
        )
    with h5py.File(path, "r") as h5:
        n = int(h5["pos"].shape[0])
        data = Data(edge_index=torch.from_numpy(h5["edge_index"][...].astype(np.int64)), num_nodes=n)
        if geometry:
            data.pos = torch.from_numpy(h5["pos"][...])
            data.face = torch.from_numpy(np.ascontiguousarray(h5["face"][...].astype(np.int64).T))
            for name, ds in h5.get("nodes", {}).items():
                setattr(data, name, torch.from_numpy(ds[...]))

    def arrays(file, names, what):
        return read_node_arrays(file, names, graph_key=graph_key, what=what)

    parts = {}
    if "cy" in features:
        parts["cy"] = arrays(cy_path(store.root, brain, encoder, hemi), ["cy"], f"CY of {encoder}")[
            "cy"
        ]
    if "pm" in features or "co" in features:
        priors = arrays(priors_path(store.root, brain, hemi), ["co", "pm"], "CO/PM")
        parts.update({k: priors[k] for k in ("pm", "co") if k in features})
    xs = []
    for name in FEATURE_TYPES:
        if name not in parts:
            continue
        x = np.ascontiguousarray(parts[name], dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != n or not np.isfinite(x).all():
            raise UpstreamError(
                f"node array {name!r} of {brain}/{hemi} is not a finite (N={n}, D) array",
                fix=f"recompute it: `cortexgraph features {brain} --overwrite`",
            )
        tensor = torch.from_numpy(x)
        setattr(data, f"x_{name}", tensor)
        xs.append(tensor)
    if xs:
        data.x = torch.cat(xs, dim=1)
    if labels:
        lab = arrays(node_labels_path(store.root, brain, hemi), ["y", "train_mask", "test_mask"], "Y")
        data.y = torch.from_numpy(lab["y"].astype(np.int64))
        data.train_mask = torch.from_numpy(lab["train_mask"].astype(bool))
        data.test_mask = torch.from_numpy(lab["test_mask"].astype(bool))
    if run:
        pred = arrays(prediction_path(store.root, brain, run, hemi), ["proba", "pred"], run)
        data.proba = torch.from_numpy(pred["proba"])
        data.pred = torch.from_numpy(pred["pred"].astype(np.int64))
    return data
