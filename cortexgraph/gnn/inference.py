"""Whole-graph inference one layer at a time: bounded memory for brain-sized graphs.

A whole-graph forward pass of a :class:`~cortexgraph.gnn.models.NodeClassifier` holds the inputs of
every node, the activations of every layer and the per-edge temporaries of every edge at once
(5.5 GB for a 200k-node GAT3 at width 512). Sampled k-hop batches
(:func:`cortexgraph.gnn.train.predict_proba`) bound the memory but recompute every node once per
batch whose neighbourhood reaches it. Here each layer is computed for all nodes before the next one,
in batches of target nodes:

1. the first graph layer computes the targets ``a:b`` from the encoder outputs of the targets and
   their in-neighbours, encoded on the spot from their feature rows (numpy arrays, torch tensors or
   h5py datasets: a graph file's features are read row block by row block and never held whole, and
   the 512 x n_types wide encoder outputs of all nodes are never stored);
2. every further layer computes the targets from the stored activations of their in-neighbours
   (edges sorted by target once; PyG's bipartite ``layer((h_src, h_dst), edges)`` call, the same call
   the sampled path uses), and its activations replace the previous layer's;
3. the classifier and the softmax run over node ranges.

Only two layers' activations are held at a time (``hidden_dtype``, float16 by default: 0.78 GB per
512-wide layer for 760k nodes). The encoders run once per node and batch that needs it: about 1.2x
per node when node numbers follow the surface (neighbours have nearby numbers), up to the mean
degree otherwise. In evaluation mode (no dropout, batch-norm running statistics) the result equals
the whole-graph forward pass: to float32 rounding with ``hidden_dtype=torch.float32``, to the
rounding of the stored activations with float16.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from cortexgraph.errors import CortexgraphError
from cortexgraph.gnn.models import NodeClassifier

__all__ = ["layerwise_proba", "target_csr"]


def target_csr(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges grouped by target: ``(ptr (N + 1,), sources (E,))``, int64.

    The in-neighbours of node ``i`` are ``sources[ptr[i]:ptr[i + 1]]`` (the edge order within a
    target is kept).
    """
    edge_index = torch.as_tensor(edge_index, dtype=torch.int64)
    target = edge_index[1]
    order = torch.argsort(target, stable=True)
    sources = edge_index[0][order]
    counts = torch.bincount(target, minlength=num_nodes)
    ptr = torch.zeros(num_nodes + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr, sources


def _check(t: torch.Tensor, name: str, dim: int, where: str) -> torch.Tensor:
    if t.ndim != 2 or t.shape[1] != dim:
        raise CortexgraphError(
            f"node feature {name!r} has rows of shape {tuple(t.shape[1:])}, the model expects ({dim},)"
        )
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise CortexgraphError(
            f"node feature {name!r} holds NaN or infinite values ({where})",
            fix="rerun `cortexgraph features` (features must be finite for every node)",
        )
    return t


def _as_tensor(block) -> torch.Tensor:
    return block if isinstance(block, torch.Tensor) else torch.as_tensor(np.asarray(block))


def _read_range(features: Mapping, name: str, start: int, stop: int, dim: int) -> torch.Tensor:
    block = _as_tensor(features[name][start:stop])
    return _check(block, name, dim, f"nodes {start}-{stop - 1}")


def _read_rows(features: Mapping, name: str, rows: torch.Tensor, dim: int) -> torch.Tensor:
    """Rows ``rows`` (sorted, unique) of one feature: one block read when they are dense enough."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if hi - lo <= 2 * len(rows) + 4096:
        block = _as_tensor(features[name][lo:hi])[rows - lo]
    else:  # scattered (e.g. a torus seam): a point selection, increasing as h5py wants
        block = _as_tensor(features[name][rows.numpy()])
    return _check(block, name, dim, f"{len(rows)} nodes from {lo} to {hi - 1}")


def _encode(base: NodeClassifier, read) -> torch.Tensor:
    """Concatenated per-type encoder outputs (float32) of the rows ``read(name, dim)`` returns."""
    return torch.cat(
        [enc(read(name, base.feature_dims[name])) for name, enc in base.encoders.items()], dim=1
    )


@torch.no_grad()
def layerwise_proba(
    model: NodeClassifier,
    features: Mapping,
    edge_index: torch.Tensor | np.ndarray,
    num_nodes: int,
    *,
    batch_size: int = 8192,
    hidden_dtype: torch.dtype = torch.float16,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Class probabilities of every node, computed one layer at a time over node batches.

    Parameters
    ----------
    model : NodeClassifier
        Run in evaluation mode (restored afterwards); CPU.
    features : mapping str -> (N, d_t) array-like
        One entry per feature type of the model; anything whose ``[start:stop]`` gives rows
        (numpy array, torch tensor, h5py dataset). Read once, range by range.
    edge_index : (2, E) int
        Directed edges source -> target.
    num_nodes : int
    batch_size : int
        Target nodes per step. A step holds the per-edge temporaries of the targets' in-edges
        (GATv2: a few (E_batch, hidden) float32 tensors, about 0.4 GB for 8192 targets of degree 6
        at width 512) and the encoder inputs of their in-neighbours.
    hidden_dtype : torch.dtype
        Storage type of the per-layer activations (float16 halves the memory; float32 gives the
        whole-graph pass to rounding).
    progress : callable (done, total), optional
        Called after every batch; ``total`` counts the batches of all layers.

    Returns
    -------
    numpy.ndarray float32 (N, num_classes)
        Softmax probabilities.
    """
    base = model
    n = int(num_nodes)
    if batch_size < 1:
        raise CortexgraphError(f"batch_size must be >= 1, got {batch_size}")
    missing = [name for name in base.feature_dims if name not in features]
    if missing:
        raise CortexgraphError(
            f"node feature(s) {', '.join(missing)} missing (model expects {list(base.feature_dims)})",
            fix="compute these features for this graph or train without them",
        )
    was_training = base.training
    base.eval()
    base.to("cpu")
    ranges = [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]
    graph_layers = base.num_layers if base.kind != "linear" else 0
    total = len(ranges) * (graph_layers + 1)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    proba = np.empty((n, base.num_classes), dtype=np.float32)
    try:
        if base.kind == "linear":
            for a, b in ranges:
                x = torch.cat(
                    [_read_range(features, k, a, b, d) for k, d in base.feature_dims.items()], 1
                )
                proba[a:b] = torch.softmax(base.classifier(x), 1).numpy()
                tick()
            return proba

        if base.kind in ("gat", "sage"):
            ptr, sources = target_csr(torch.as_tensor(edge_index), n)
        h = None  # activations of the previous layer (None: the encoders, computed on the fly)
        for layer, norm in zip(base.layers, base.norms, strict=True):
            h_next = torch.empty((n, base.hidden), dtype=hidden_dtype)
            for a, b in ranges:
                if base.kind == "mlp":
                    if h is None:
                        x = _encode(base, lambda k, d, a=a, b=b: _read_range(features, k, a, b, d))
                    else:
                        x = h[a:b].to(torch.float32)
                    out = layer(x)
                else:
                    lo, hi = int(ptr[a]), int(ptr[b])
                    src = sources[lo:hi]
                    targets = torch.repeat_interleave(
                        torch.arange(b - a, dtype=torch.int64), ptr[a + 1 : b + 1] - ptr[a:b]
                    )
                    if h is None:
                        own = torch.arange(a, b, dtype=torch.int64)
                        nodes = torch.unique(torch.cat([src, own]))  # sorted
                        h_src = _encode(
                            base, lambda k, d, nodes=nodes: _read_rows(features, k, nodes, d)
                        )
                        h_dst = h_src[torch.searchsorted(nodes, own)]
                        local = torch.searchsorted(nodes, src)
                    else:
                        nodes, local = torch.unique(src, return_inverse=True)
                        h_src = h[nodes].to(torch.float32)
                        h_dst = h[a:b].to(torch.float32)
                    out = layer((h_src, h_dst), torch.stack([local, targets]))
                h_next[a:b] = torch.relu(norm(out)).to(hidden_dtype)
                tick()
            h = h_next
            del h_next
        assert h is not None  # gat and sage have at least one layer
        for a, b in ranges:
            logits = base.classifier(h[a:b].to(torch.float32))
            proba[a:b] = torch.softmax(logits, 1).numpy()
            tick()
        return proba
    finally:
        base.train(was_training)
