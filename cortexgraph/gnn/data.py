"""Graphs of a cohort as training data: which exist, load them with a feature selection.

Method: Schiffer, PhD thesis, Sects. 7.1.1-7.1.2 (Schiffer et al. 2021, MICCAI). Every brain has one graph per hemisphere (``build-graph``);
its node features come from the stages ``features@<encoder>`` (CY), ``node-priors`` (PM, CO) and
``node-labels`` (Y, train/test masks), each in files of its own and assembled by
:func:`cortexgraph.derivatives.graphs.load_brain_graph`. The transfer brain is held out entirely:
its nodes are never trained on, and evaluation uses all its labelled nodes; for the other brains
training uses ``train_mask & (y >= 0)`` and evaluation ``test_mask & (y >= 0)`` (every fifth
annotated section).

Loaded graphs are ``torch_geometric.data.Data`` with ``x_<type>`` attributes (the names
:class:`cortexgraph.gnn.models.NodeClassifier` reads) plus ``y``, ``train_mask``, ``test_mask``,
``edge_index``, ``num_nodes``; arrays the model does not need are not loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.graphs import (
    FEATURE_TYPES,
    graph_hemispheres,
    load_brain_graph,
    node_stages,
    parse_features,
)
from cortexgraph.derivatives.layout import cy_path, node_array_shapes, priors_path
from cortexgraph.errors import CortexgraphError

__all__ = [
    "FEATURE_TYPES",
    "HEMISPHERES",
    "GraphItem",
    "parse_features",
    "features_label",
    "graph_items",
    "feature_dims",
    "default_encoder",
    "training_stages",
    "load_graphs",
]

HEMISPHERES = ("lh", "rh")


@dataclass
class GraphItem:
    """One hemisphere graph of one brain and (once loaded) its ``Data``."""

    brain: str
    hemi: str
    data: Any = None  # torch_geometric.data.Data once loaded (untyped package)

    @property
    def key(self) -> str:
        return f"{self.brain}/{self.hemi}"


def features_label(features: Sequence[str]) -> str:
    """``("cy", "pm", "co")`` -> ``"CY/PM/CO"`` (the thesis's naming, Sect. 7.2.2)."""
    return "/".join(f.upper() for f in features)


def graph_items(store: Derivatives, brains: Sequence[str]) -> list[GraphItem]:
    """Every hemisphere graph of the given brains (in the order given, then lh, rh).

    Raises UpstreamError when a brain's build-graph output is missing or stale.
    """
    items = []
    for brain in brains:
        items += [GraphItem(brain, hemi) for hemi in graph_hemispheres(store, brain)]
    return items


def default_encoder(store: Derivatives, brains: Sequence[str]) -> str:
    """The encoder whose CY all ``brains`` have, when it is the only one; else CortexgraphError."""
    common: set[str] | None = None
    for brain in brains:
        folder = store.root / brain / "records"
        names = {p.stem.split("@", 1)[1] for p in folder.glob("features@*.json")}
        common = names if common is None else common & names
    if not common:
        raise CortexgraphError(
            f"no encoder has CY features on every brain ({', '.join(brains)})",
            file=str(store.root),
            fix="run `cortexgraph features BRAIN --encoder NAME` for each brain, or train "
            "without cy (--features pm,co)",
        )
    if len(common) > 1:
        raise CortexgraphError(
            f"several encoders have CY features on every brain ({', '.join(sorted(common))})",
            fix="choose one with --encoder NAME",
        )
    return next(iter(common))


def training_stages(
    brains: Sequence[str], features: Sequence[str], encoder: str | None, labels: bool = True
) -> list[StageId]:
    """The stage executions whose outputs a model over ``brains`` reads."""
    stages: list[StageId] = []
    for brain in brains:
        stages += node_stages(brain, features, encoder=encoder, labels=labels)
    return stages


def feature_dims(
    store: Derivatives, item: GraphItem, features: Sequence[str], encoder: str | None
) -> dict[str, int]:
    """Width of each selected node feature of one graph, without loading the arrays."""
    dims = {}
    if "cy" in features:
        dims["cy"] = node_array_shapes(cy_path(store.root, item.brain, encoder, item.hemi))["cy"][1]
    if "pm" in features or "co" in features:
        shapes = node_array_shapes(priors_path(store.root, item.brain, item.hemi))
        for name in ("pm", "co"):
            if name in features:
                dims[name] = int(shapes[name][1])
    return {name: int(dims[name]) for name in FEATURE_TYPES if name in dims}


def load_graphs(
    store: Derivatives,
    items: Sequence[GraphItem],
    features: Sequence[str],
    *,
    encoder: str | None,
    labels: bool = True,
) -> list[GraphItem]:
    """Load the ``Data`` of every item in place (only ``x_<type>``, labels and edges); returns
    ``items``."""
    for item in items:
        data = load_brain_graph(
            store, item.brain, item.hemi, features, encoder=encoder, labels=labels, geometry=False
        )
        if hasattr(data, "x"):
            del data.x  # the classifiers read x_<type>
        item.data = data
    return list(items)
