"""What a trained GAT attends to: its attention per layer, how far that is from the plain mean of
the neighbours, and the same model with its attention replaced by the mean.

A GAT layer of :class:`~cortexgraph.gnn.models.NodeClassifier` (GATv2, no self loops, a residual
root term) computes ``W_r x_i + sum_j alpha_ij W x_j`` with ``alpha_i`` a softmax over the
in-neighbours of node ``i``. With every ``alpha_ij = 1 / deg_i`` it is a SAGE layer with mean
aggregation (``W_r x_i + W mean_j x_j``). So what a GAT adds over SAGE is its attention, and the
questions this module answers are how far the learned attention is from uniform and how much the
model's predictions depend on the difference:

* :func:`attention_per_layer`: the coefficients ``alpha`` of every layer on a whole graph
  (evaluation mode);
* :func:`normalised_entropy`: per node, the entropy of its attention over its in-neighbours
  divided by that of the uniform distribution, ``log(deg)``: 1 for the mean, 0 for one neighbour;
* :func:`same_label_attention`: per node, the attention mass on neighbours of its own label and
  the share those neighbours have under the mean: at an area border, attention that helps puts
  more weight on the node's own area than the mean does;
* :func:`mean_attention`: a context in which every GAT layer of a model uses the mean of its
  neighbours instead of its learned attention (its attention vectors are set to zero, so every
  score is 0 and the softmax is uniform; the trained weights are put back on exit).

Method: GATv2 attention (Brody et al. 2022, ICLR), as the GNN of Schiffer et al. 2021 (MICCAI) uses
it; the comparison with mean aggregation is the GAT-vs-SAGE question of that paper.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch_geometric.nn import GATv2Conv

from cortexgraph.gnn.models import NodeClassifier

__all__ = [
    "attention_per_layer",
    "mean_attention",
    "normalised_entropy",
    "same_label_attention",
]


def attention_per_layer(model: NodeClassifier, graph) -> list[np.ndarray]:
    """Attention coefficients of every GAT layer of ``model`` on the whole ``graph``.

    Parameters
    ----------
    model : NodeClassifier of kind ``"gat"``; run in evaluation mode (its mode is restored).
    graph : torch_geometric ``Data`` with the model's ``x_<type>`` features and ``edge_index``.

    Returns
    -------
    list of float64 arrays (E, heads), one per layer, in the order of ``graph.edge_index``; for every
    target node the coefficients of its in-edges sum to 1 per head.
    """
    if model.kind != "gat":
        raise ValueError(f"attention needs a GAT model, not {model.kind!r}")
    was_training = model.training
    model.eval()
    coefficients: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            model(graph, attention_out=coefficients)
    finally:
        model.train(was_training)
    return [a.detach().to(torch.float64).reshape(a.shape[0], -1).numpy() for a in coefficients]


def normalised_entropy(target: np.ndarray, alpha: np.ndarray, num_nodes: int) -> np.ndarray:
    """Entropy of each node's attention over its in-neighbours, over that of the mean.

    Parameters
    ----------
    target : int array (E,), the target node of every edge.
    alpha : float array (E,) or (E, heads), attention coefficients (summing to 1 per target and head).
    num_nodes : number of nodes N.

    Returns
    -------
    float64 array (N,): ``H(alpha_i) / log(deg_i)`` averaged over heads, in [0, 1] (1: every
    neighbour weighted ``1 / deg_i``; 0: all weight on one neighbour); NaN for nodes with fewer
    than 2 in-neighbours, where attention has no choice.
    """
    target = np.asarray(target, dtype=np.int64)
    alpha = np.asarray(alpha, dtype=np.float64).reshape(target.size, -1)
    degree = np.bincount(target, minlength=num_nodes).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(alpha > 0, -alpha * np.log(alpha), 0.0)
    per_head = np.stack(
        [
            np.bincount(target, weights=terms[:, h], minlength=num_nodes)
            for h in range(terms.shape[1])
        ],
        axis=1,
    )
    ratio = np.full(num_nodes, np.nan)
    choice = degree >= 2
    ratio[choice] = per_head[choice].mean(axis=1) / np.log(degree[choice])
    return ratio


def same_label_attention(
    source: np.ndarray, target: np.ndarray, alpha: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Attention on neighbours of a node's own label, against the share those have under the mean.

    Only labelled neighbours count (``labels >= 0``); the attention on them is renormalised to sum to
    1 per node, so the two outputs are comparable.

    Parameters
    ----------
    source, target : int arrays (E,), the edges (messages flow source -> target).
    alpha : float array (E,) or (E, heads), attention coefficients; heads are averaged.
    labels : int array (N,), area per node, -1 where unlabelled.

    Returns
    -------
    (attended, uniform) : float64 arrays (N,). ``attended[i]``: the attention mass node ``i`` puts on
    labelled neighbours of its own label, over its mass on all labelled neighbours; ``uniform[i]``:
    the fraction of its labelled neighbours with its own label (the value under the mean). NaN
    where node ``i`` is unlabelled or has no labelled neighbour.
    """
    source = np.asarray(source, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    weight = np.asarray(alpha, dtype=np.float64).reshape(target.size, -1).mean(axis=1)
    n = labels.size
    counted = (labels[source] >= 0) & (labels[target] >= 0)
    same = counted & (labels[source] == labels[target])
    mass = np.bincount(target, weights=np.where(counted, weight, 0.0), minlength=n)
    mass_same = np.bincount(target, weights=np.where(same, weight, 0.0), minlength=n)
    count = np.bincount(target, weights=counted.astype(np.float64), minlength=n)
    count_same = np.bincount(target, weights=same.astype(np.float64), minlength=n)
    attended = np.full(n, np.nan)
    uniform = np.full(n, np.nan)
    ok = count > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        attended[ok] = mass_same[ok] / mass[ok]
    uniform[ok] = count_same[ok] / count[ok]
    return attended, uniform


@contextmanager
def mean_attention(model: NodeClassifier) -> Iterator[NodeClassifier]:
    """Within the context, every GAT layer of ``model`` averages its neighbours uniformly.

    GATv2 scores an edge with ``a . LeakyReLU(W_l x_j + W_r x_i)``; with the attention vector ``a``
    at zero every score is 0 and the softmax gives each in-neighbour ``1 / deg``. Everything else
    (the value transform ``W_l``, the root term, biases, norms) keeps its trained weights. The
    attention vectors are restored on exit, also after an error.

    Yields the model itself.
    """
    saved = []
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, GATv2Conv):
                saved.append((layer, layer.att.detach().clone()))
                layer.att.zero_()
    try:
        yield model
    finally:
        with torch.no_grad():
            for layer, att in saved:
                layer.att.copy_(att)
