"""Train node classifiers on many graphs with LARS and cross-entropy; predict class probabilities.

Method: Schiffer, PhD thesis, Sect. 7.1.3 (Schiffer et al. 2021, MICCAI): 100 epochs (one epoch = one pass over all labelled training
nodes of all graphs), categorical cross-entropy, LARS with Nesterov momentum 0.9, weight decay 1e-4 on
non-bias parameters, trust coefficient 0.02, batches of 2048 output nodes, constant learning rate
0.001 * 2048 / 256 = 0.008, mixed precision, data parallel. Batches are random subsets of the
training nodes of *all* graphs (sampled on their disjoint union), so batch-norm statistics in
training match the running statistics used in evaluation.

Graph conventions (``torch_geometric.data.Data`` attributes): ``pos`` (N, 3) mm; ``edge_index``
(2, E) source -> target; ``x_cy`` (N, Dcy), ``x_pm`` (N, Dpm), ``x_co`` (N, 3) float; ``y`` (N,) int64
class index, -1 = unknown; ``train_mask`` / ``test_mask`` (N,) bool. A feature type the model does not
use may be absent.

Speed design (goal: 100 epochs of GAT3 over 16 graphs of 760k nodes in < 10 min on one H100): no
Python loop over nodes; adjacency, labels and (when they fit, in float16) node features live on the
GPU, so sampling, feature gathering and the model all run there; otherwise features stay in pinned
host memory and each batch's rows are gathered on the CPU and copied asynchronously. Losses and
accuracies are accumulated on the device and read once per epoch (no per-step synchronisation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.gnn.models import NodeClassifier
from cortexgraph.gnn.sampler import NodeBatch, NodeBatcher
from cortexgraph.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    plain,
    save_checkpoint,
)
from cortexgraph.training.lars import LARS, lars_param_groups
from cortexgraph.training.runtime import (
    all_reduce_sum,
    autocast,
    get_rank,
    get_world_size,
    is_distributed,
    is_main_process,
    make_grad_scaler,
    pick_device,
    seed_everything,
    unwrap_model,
)
from cortexgraph.training.syncbn import convert_sync_batchnorm

__all__ = ["train_node_classifier", "predict_proba", "FeatureStore", "train_nodes_mask"]

HISTORY_KEYS = ("epoch", "loss", "train_acc", "seconds", "nodes_per_s", "cpu_seconds")


class FeatureStore:
    """Node features of several graphs, placed where batches can be gathered fastest.

    Parameters
    ----------
    graphs : sequence of Data
    names : sequence of str
        Feature types to hold (``x_<name>`` attributes).
    device : torch.device
        The compute device.
    dtype : torch.dtype, optional
        Storage dtype (e.g. float16 halves memory); None keeps each tensor's dtype.
    max_device_fraction : float
        On CUDA, features are moved to the GPU when they need less than this fraction of its free
        memory; otherwise they stay on the host in pinned memory.
    """

    def __init__(
        self,
        graphs: Sequence,
        names: Sequence[str],
        device: torch.device,
        dtype: torch.dtype | None = None,
        max_device_fraction: float = 0.85,
    ) -> None:
        self.names = list(names)
        self.device = device
        tensors: list[dict[str, torch.Tensor]] = []
        for gi, g in enumerate(graphs):
            entry = {}
            for name in self.names:
                t = getattr(g, f"x_{name}", None)
                if t is None:
                    raise CortexgraphError(
                        f"graph {gi} has no node feature x_{name}",
                        fix=f"compute the {name} features or train a model without {name!r}",
                    )
                t = torch.as_tensor(t)
                if t.shape[0] != int(g.num_nodes):
                    raise CortexgraphError(
                        f"graph {gi}: x_{name} has {t.shape[0]} rows for {int(g.num_nodes)} nodes"
                    )
                entry[name] = t if dtype is None else t.to(dtype)
            tensors.append(entry)
        total = sum(t.numel() * t.element_size() for e in tensors for t in e.values())
        self.on_device = device.type != "cuda"
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            self.on_device = total < max_device_fraction * free
        if device.type == "cuda" and not self.on_device:
            tensors = [{k: v.pin_memory() for k, v in e.items()} for e in tensors]
        elif device.type == "cuda":
            tensors = [{k: v.to(device) for k, v in e.items()} for e in tensors]
        self.tensors = tensors
        self.nbytes = total

    def gather(self, graph_index: int, node_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows ``node_ids`` of every feature type of one graph, on the compute device."""
        entry = self.tensors[graph_index]
        if self.on_device:
            idx = node_ids.to(next(iter(entry.values())).device)
            return {k: v.index_select(0, idx) for k, v in entry.items()}
        idx = node_ids.cpu()
        out = {}
        for k, v in entry.items():
            rows = v.index_select(0, idx)
            if self.device.type == "cuda":
                rows = rows.pin_memory().to(self.device, non_blocking=True)
            out[k] = rows
        return out

    def gather_union(
        self, node_ids: torch.Tensor, graph_offsets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Rows of the disjoint union of all graphs: ``node_ids`` are union ids
        (``graph_offsets[g] + local id``, see ``NodeBatcher(mix_graphs=True)``); rows keep their
        order. Features stay stored per graph (no concatenated copy)."""
        ids = node_ids
        offsets = graph_offsets.to(ids.device)
        graph_of = torch.searchsorted(offsets, ids, right=True) - 1
        out: dict[str, torch.Tensor] = {}
        for g in torch.unique(graph_of).tolist():
            where = torch.nonzero(graph_of == g).reshape(-1)
            rows = self.gather(g, ids[where] - offsets[g])
            for k, v in rows.items():
                if k not in out:
                    out[k] = torch.empty((ids.numel(), v.shape[1]), dtype=v.dtype, device=v.device)
                out[k].index_copy_(0, where.to(v.device), v)
        return out

    def full(self, graph_index: int) -> dict[str, torch.Tensor]:
        """All rows of one graph on the compute device."""
        return {
            k: v.to(self.device, non_blocking=True) for k, v in self.tensors[graph_index].items()
        }


def train_nodes_mask(graph, mask_name: str = "train_mask") -> torch.Tensor:
    """Nodes that supervise training: ``mask & (y >= 0)``, as a CPU bool tensor."""
    y = getattr(graph, "y", None)
    mask = getattr(graph, mask_name, None)
    if y is None or mask is None:
        raise CortexgraphError(
            f"graph has no {'y' if y is None else mask_name}",
            fix="attach annotations (y, -1 = unknown) and the train/test split masks to the graph",
        )
    return (torch.as_tensor(mask).bool() & (torch.as_tensor(y) >= 0)).cpu()


def _resolve_feature_dtype(feature_dtype, device: torch.device) -> torch.dtype | None:
    if feature_dtype == "auto":
        return torch.float16 if device.type == "cuda" else None
    return feature_dtype


def train_node_classifier(
    graphs: Sequence,
    model: NodeClassifier,
    *,
    epochs: int = 100,
    batch_size: int = 2048,
    lr: float = 0.008,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    trust_coefficient: float = 0.02,
    fanout: int | None | str = "auto",
    full_batch: bool = False,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    feature_dtype: torch.dtype | str | None = "auto",
    use_pyg: bool = False,
) -> dict[str, list]:
    """Train ``model`` on the labelled training nodes of ``graphs``.

    Parameters
    ----------
    graphs : sequence of torch_geometric.data.Data
        See the module docstring for the attributes. Supervising nodes: ``train_mask & (y >= 0)``.
    model : NodeClassifier
        Trained in place (moved to ``device``).
    epochs : int
        Total epochs (a resumed run continues up to this number).
    batch_size : int
        Output (labelled) nodes per step; the sampled neighbourhood adds input nodes.
    lr, momentum, weight_decay, trust_coefficient : float
        LARS settings (constant learning rate; Nesterov momentum).
    fanout : "auto", None or int
        Neighbours sampled per node and hop; "auto" = 3 for SAGE and all (None) otherwise.
    full_batch : bool
        One step per epoch on the union of all graphs (all nodes forward, loss on the training
        nodes); for graphs that fit in memory. Mini-batches (default) mix nodes of all graphs.
    seed : int
        Seeds model-independent randomness (dropout, sampling, batch order).
    checkpoint_dir : path, optional
        Where ``last.pt`` is written after every epoch (rank 0 only).
    resume : bool
        Continue from ``checkpoint_dir/last.pt`` when it exists.
    progress : callable, optional
        Called with the epoch record (dict with ``HISTORY_KEYS``) after every epoch on rank 0.
    device : str or torch.device, optional
        Default: CUDA when available.
    amp : bool
        Mixed precision on CUDA (bfloat16, or float16 with gradient scaling); ignored on CPU.
    feature_dtype : torch.dtype, None or "auto"
        Storage dtype of node features ("auto": float16 on CUDA, unchanged on CPU).
    use_pyg : bool
        Sample with PyG's NeighborLoader (needs pyg-lib or torch-sparse).

    Returns
    -------
    dict of lists
        ``epoch`` (1-based), ``loss`` (mean cross-entropy), ``train_acc`` (fraction of supervising
        nodes predicted correctly during the epoch, with dropout active), ``seconds`` (wall time),
        ``nodes_per_s`` (labelled nodes per second), ``cpu_seconds`` (CPU time of this process, all
        threads: on a shared machine a load-independent measure of the work), one entry per epoch,
        including epochs loaded from a resumed checkpoint.
    """
    if not graphs:
        raise ValueError("no graphs to train on")
    device = pick_device(device)
    seed_everything(seed)
    base = cast(NodeClassifier, unwrap_model(model))
    names = list(base.feature_dims)
    if fanout == "auto":
        fanout = 3 if base.kind == "sage" else None
    elif isinstance(fanout, str):
        raise ParameterError(
            f"fanout {fanout!r}: not a number", fix='give "auto", None or a positive integer'
        )
    rank, world = get_rank(), get_world_size()

    store = FeatureStore(graphs, names, device, _resolve_feature_dtype(feature_dtype, device))
    labels = [torch.as_tensor(g.y).long().to(device) for g in graphs]
    masks = [train_nodes_mask(g) for g in graphs]
    n_labelled = int(sum(int(m.sum()) for m in masks))
    if n_labelled == 0:
        raise CortexgraphError(
            "no labelled training nodes (train_mask & y >= 0 is empty in every graph)",
            fix="check the annotations and the train/test split",
        )

    model.to(device)
    net: torch.nn.Module = model  # what the steps call: the model, or its DDP wrapper
    if is_distributed() and not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        # batch norm over the global batch (every device), so N processes train as one does
        convert_sync_batchnorm(base, device)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = LARS(
        lars_param_groups(base, weight_decay),
        lr=lr,
        momentum=momentum,
        nesterov=True,
        weight_decay=weight_decay,
        trust_coefficient=trust_coefficient,
    )
    scaler = make_grad_scaler(device, enabled=amp)

    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    start_epoch = 0
    last = latest_checkpoint(checkpoint_dir) if resume and checkpoint_dir is not None else None
    if last is not None:
        payload = load_checkpoint(last, base, optimizer, scaler=scaler, map_location=device)
        start_epoch = int(payload["epoch"])
        saved = payload["extra"].get("history", {})
        history = {k: list(saved.get(k, [float("nan")] * start_epoch)) for k in HISTORY_KEYS}

    union_labels = torch.cat(labels)
    sizes = [int(g.num_nodes) for g in graphs]
    if full_batch:
        # one step per epoch on the disjoint union of this process's graphs (all of them without
        # DDP), so batch norm sees every graph at once, as in evaluation
        mine = list(range(len(graphs)))[rank::world]
        if not mine:
            raise CortexgraphError(
                f"full-batch training needs at least one graph per process ({world} processes)"
            )
        base_off = np.concatenate([[0], np.cumsum([sizes[g] for g in mine])[:-1]]).tolist()
        full_edges = torch.cat(
            [graphs[g].edge_index + o for g, o in zip(mine, base_off, strict=True)], 1
        ).to(device)
        full_idx = torch.cat(
            [torch.nonzero(masks[g]).reshape(-1) + o for g, o in zip(mine, base_off, strict=True)]
        ).to(device)
        full_target = torch.cat([labels[g] for g in mine])[full_idx]
        batcher = None
    else:
        batcher = NodeBatcher(
            graphs,
            masks,
            batch_size=batch_size,
            num_hops=base.num_hops,
            fanout=fanout,
            shuffle=True,
            seed=seed,
            device=device,
            use_pyg=use_pyg,
            rank=rank,
            world_size=world,
            mix_graphs=True,
        )

    for epoch in range(start_epoch, epochs):
        net.train()
        t0, c0 = time.perf_counter(), time.process_time()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = torch.zeros((), dtype=torch.int64, device=device)
        steps: Sequence[NodeBatch | None] | NodeBatcher
        if full_batch:
            steps = [None]
        else:
            assert batcher is not None  # made above when not full_batch
            batcher.set_epoch(epoch)
            steps = batcher
        for step in steps:
            if step is None:  # full batch
                parts = [store.full(g) for g in mine]
                x = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
                edge_index, out_idx, target = full_edges, full_idx, full_target
                n_global = target.numel()
            else:
                assert batcher is not None
                if step.graph_index < 0:  # batch over the union of all graphs
                    x = store.gather_union(step.node_ids, batcher.graph_offsets)
                    edge_index, out_idx = step.edge_index, step.seed_positions
                    target = union_labels[step.seed_nodes]
                else:
                    g = step.graph_index
                    x = store.gather(g, step.node_ids)
                    edge_index, out_idx = step.edge_index, step.seed_positions
                    target = labels[g][step.seed_nodes]
                n_global = step.num_global_seeds
            if n_global < 2 and base.kind != "linear":
                continue  # a graph with a single training node: batch norm cannot train on it
            with autocast(device, enabled=amp):
                if step is None:
                    logits = net(x, edge_index)[out_idx]
                else:
                    logits = net(x, edge_index, step.hop_offsets)[out_idx]
            if full_batch or world == 1:
                loss = F.cross_entropy(logits.float(), target)
                objective = loss
            else:
                # this process's share of the global mean: DDP averages the gradients of the
                # processes, so each contributes sum(local losses) * world / global count
                loss_local = F.cross_entropy(logits.float(), target, reduction="sum")
                objective = loss_local * (world / max(n_global, 1))
                loss = loss_local.detach() / max(target.numel(), 1)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(objective).backward()
            scaler.step(optimizer)
            scaler.update()
            n = target.numel()
            loss_sum += loss.detach().double() * n
            correct += (logits.detach().argmax(1) == target).sum()
            seen += n
        totals = all_reduce_sum(torch.stack([loss_sum, correct.double(), seen.double()]))
        loss_total, correct_total, seen_total = (float(v) for v in totals.cpu())
        seconds = time.perf_counter() - t0
        if seen_total == 0:
            raise CortexgraphError("an epoch saw no labelled node", fix="check the train masks")
        record = {
            "epoch": epoch + 1,
            "loss": loss_total / seen_total,
            "train_acc": correct_total / seen_total,
            "seconds": seconds,
            "cpu_seconds": time.process_time() - c0,
            "nodes_per_s": seen_total / max(seconds, 1e-9),
        }
        for k in HISTORY_KEYS:
            history[k].append(record[k])
        if is_main_process():
            if checkpoint_dir is not None:
                save_checkpoint(
                    Path(checkpoint_dir),
                    base,
                    optimizer,
                    epoch=epoch + 1,
                    scaler=scaler,
                    extra={"history": history, "model_config": plain(base.config)},
                )
            if progress is not None:
                progress(dict(record))
    return history


@torch.no_grad()
def predict_proba(
    graphs: Sequence,
    model: NodeClassifier,
    *,
    batch_size: int = 8192,
    device: str | torch.device | None = None,
    amp: bool = True,
    full_graph: bool = False,
    feature_dtype: torch.dtype | str | None = "auto",
    nodes: Sequence[torch.Tensor] | None = None,
    layerwise: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[np.ndarray]:
    """Class probabilities of every node of every graph (model in evaluation mode).

    Each batch of output nodes is computed on its exact (unsampled) k-hop neighbourhood, so the
    result equals a whole-graph forward pass; ``full_graph=True`` does that pass directly (faster
    when the graph fits in memory and every node is wanted); ``layerwise=True`` computes one layer
    for all nodes at a time (:func:`cortexgraph.gnn.inference.layerwise_proba`, CPU, float16
    activations: every node once per layer, bounded memory; the choice for whole brains).

    Parameters
    ----------
    nodes : sequence of BoolTensor (N_g,), optional
        Compute only these nodes of each graph (e.g. the evaluated ones); other rows are NaN.
    progress : callable (done, total), optional
        Called after every batch with the batches done and the total of the graph being computed
        (restarting for each graph; with ``layerwise``, the batches of all its layers). Not called
        by the whole-graph pass.

    Returns
    -------
    list of numpy.ndarray, float32, shape (N_g, num_classes)
        Softmax probabilities; rows sum to 1 (NaN rows for nodes not asked for).
    """
    base = cast(NodeClassifier, unwrap_model(model))
    if layerwise:
        from cortexgraph.gnn.inference import layerwise_proba

        results = []
        for gi, g in enumerate(graphs):
            feats = {name: getattr(g, f"x_{name}") for name in base.feature_dims}
            proba = layerwise_proba(
                base, feats, g.edge_index, int(g.num_nodes), batch_size=batch_size,
                progress=progress,
            )  # fmt: skip
            if nodes is not None:
                proba[~torch.as_tensor(nodes[gi]).bool().cpu().numpy()] = np.nan
            results.append(proba)
        return results
    device = pick_device(device)
    base.to(device)
    was_training = base.training
    base.eval()
    store = FeatureStore(
        graphs, list(base.feature_dims), device, _resolve_feature_dtype(feature_dtype, device)
    )
    results = []
    for gi, g in enumerate(graphs):
        n = int(g.num_nodes)
        wanted = None if nodes is None else torch.as_tensor(nodes[gi]).bool().cpu()
        if full_graph and wanted is None:
            with autocast(device, enabled=amp):
                logits = base(store.full(gi), g.edge_index.to(device))
            results.append(torch.softmax(logits.float(), 1).cpu().numpy().astype(np.float32))
            continue
        out = torch.full((n, base.num_classes), float("nan"), dtype=torch.float32)
        batcher = NodeBatcher(
            [g],
            None if wanted is None else [wanted],
            batch_size=batch_size,
            num_hops=base.num_hops,
            fanout=None,
            shuffle=False,
            device=device,
        )
        batches = len(batcher)
        for done, b in enumerate(batcher, 1):
            with autocast(device, enabled=amp):
                x = store.gather(gi, b.node_ids)
                logits = base(x, b.edge_index, b.hop_offsets)[b.seed_positions]
            out[b.seed_nodes.cpu()] = torch.softmax(logits.float(), 1).cpu()
            if progress is not None:
                progress(done, batches)
        results.append(out.numpy())
    base.train(was_training)
    return results
