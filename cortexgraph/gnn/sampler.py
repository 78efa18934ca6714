"""k-hop neighbour sampling on a CSR adjacency, vectorised in torch (runs on CPU or GPU).

Method: Schiffer, PhD thesis, Sect. 2.2.2 (mini-batch subgraph, eq. 2.44; k-hop neighbourhood,
eq. 2.39) and Sects. 7.1.3-7.1.4 (batches of 2048 output nodes; SAGE samples 3 neighbours).

Conventions: ``edge_index[0]`` is the source ``j``, ``edge_index[1]`` the target ``i``; messages flow
``j -> i`` (PyG's ``source_to_target``), so the neighbours of ``i`` are the sources of its incoming
edges. Every hop is a handful of tensor operations over the whole frontier; there is no Python loop
over nodes.

* ``fanout=None`` (full mode): the exact k-hop neighbourhood ``V_B`` of the seed nodes and all edges of
  the graph between nodes of ``V_B`` (the induced subgraph, as ``torch_geometric.utils.k_hop_subgraph``).
* ``fanout=k``: at each hop, each frontier node keeps at most ``k`` of its incoming edges, drawn
  uniformly without replacement; the subgraph holds exactly the sampled edges (as PyG's
  ``NeighborLoader``), so every node aggregates over at most ``k`` neighbours.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CSR",
    "build_csr",
    "sample_subgraph",
    "NodeBatch",
    "NodeBatcher",
    "pyg_sampler_available",
]


@dataclass
class CSR:
    """Incoming-edge adjacency: the neighbours of node ``i`` are ``col[rowptr[i]:rowptr[i+1]]``."""

    rowptr: torch.Tensor  # (N + 1,) int64
    col: torch.Tensor  # (E,) int64, source node of each incoming edge, grouped by target
    num_nodes: int

    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    @property
    def device(self) -> torch.device:
        return self.col.device

    def to(self, device: torch.device | str) -> CSR:
        return CSR(self.rowptr.to(device), self.col.to(device), self.num_nodes)

    def degree(self) -> torch.Tensor:
        """In-degree of every node, (N,) int64."""
        return self.rowptr[1:] - self.rowptr[:-1]


def build_csr(edge_index: torch.Tensor, num_nodes: int) -> CSR:
    """Group edges by target node.

    Parameters
    ----------
    edge_index : LongTensor (2, E)
        Directed edges source -> target. Mesh graphs hold both directions of every mesh edge.
    num_nodes : int

    Returns
    -------
    CSR
    """
    edge_index = torch.as_tensor(edge_index)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    src, dst = edge_index[0].long(), edge_index[1].long()
    if src.numel() and (
        int(torch.minimum(src.min(), dst.min())) < 0
        or int(torch.maximum(src.max(), dst.max())) >= num_nodes
    ):
        raise ValueError(f"edge_index refers to nodes outside [0, {num_nodes})")
    order = torch.argsort(dst * num_nodes + src)  # by target, then source: deterministic
    col = src[order].contiguous()
    counts = torch.bincount(dst, minlength=num_nodes)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=edge_index.device)
    rowptr[1:] = torch.cumsum(counts, 0)
    return CSR(rowptr, col, int(num_nodes))


def _segment_edges(csr: CSR, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions in ``csr.col`` of all incoming edges of ``nodes`` and the owning node's index."""
    start = csr.rowptr[nodes]
    deg = csr.rowptr[nodes + 1] - start
    owner = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), deg)
    offsets = torch.cumsum(deg, 0) - deg  # exclusive prefix sum
    pos = start[owner] + (torch.arange(owner.numel(), device=nodes.device) - offsets[owner])
    return pos, owner


def _sample_edges(
    csr: CSR, nodes: torch.Tensor, fanout: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``fanout`` incoming edges per node, uniformly without replacement."""
    pos, owner = _segment_edges(csr, nodes)
    deg = csr.rowptr[nodes + 1] - csr.rowptr[nodes]
    if deg.numel() == 0 or int(deg.max()) <= fanout:
        return pos, owner
    # random key per candidate edge; rank within each node's segment by sorting (owner, key)
    gen_device = generator.device if generator is not None else pos.device
    key = torch.rand(pos.numel(), generator=generator, device=gen_device).to(pos.device)
    order = torch.argsort(owner.double() + key.double())
    offsets = torch.cumsum(deg, 0) - deg
    rank = torch.arange(pos.numel(), device=pos.device) - offsets[owner[order]]
    keep = order[rank < fanout]
    keep, _ = torch.sort(keep)
    return pos[keep], owner[keep]


def sample_subgraph(
    csr: CSR,
    seed_nodes: torch.Tensor,
    num_hops: int,
    fanout: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    return_hop_offsets: bool = False,
):
    """Subgraph that a ``num_hops``-layer GNN needs to compute outputs at ``seed_nodes``.

    Parameters
    ----------
    csr : CSR
        From :func:`build_csr` (on the device where sampling should run).
    seed_nodes : LongTensor (B,)
        Output nodes (duplicates are merged).
    num_hops : int
        Number of hops (= message-passing layers). 0 gives the seed nodes alone.
    fanout : None, int or sequence of int
        None: exact k-hop neighbourhood with its induced edges. int ``k``: at most ``k`` sampled
        neighbours per node and hop (a sequence gives one value per hop; -1 = all).
    generator : torch.Generator, optional
        CPU generator for the sampling keys (reproducible batches).

    Returns
    -------
    node_ids : LongTensor (M,)
        Global ids of the subgraph's nodes; the unique seeds come first, in their input order.
    sub_edge_index : LongTensor (2, E_B)
        Edges in local indices (into ``node_ids``), source -> target.
    seed_positions : LongTensor (B,)
        Local index of each entry of ``seed_nodes`` (so ``out[seed_positions]`` aligns with seeds).
    hop_offsets : (list of int, list of int), only with ``return_hop_offsets=True``
        ``node_offsets[h]`` = number of nodes within ``h`` hops (nodes are ordered by hop, so they are
        the first ``node_offsets[h]`` of ``node_ids``); ``edge_offsets[h]`` = number of edges whose
        target is within ``h`` hops (edges are sorted by target, so they are a prefix too). Both have
        ``num_hops + 1`` entries. A GNN layer ``l`` of ``L`` only needs outputs within ``L - 1 - l``
        hops; :class:`cortexgraph.gnn.models.NodeClassifier` uses the offsets to skip the rest.
    """
    device = csr.device
    seed_nodes = torch.as_tensor(seed_nodes, dtype=torch.long, device=device).reshape(-1)
    if num_hops < 0:
        raise ValueError(f"num_hops must be >= 0, got {num_hops}")
    if fanout is None or isinstance(fanout, int):
        fanouts = [fanout] * num_hops
    else:
        fanouts = [None if (f is None or f < 0) else int(f) for f in fanout]
        if len(fanouts) != num_hops:
            raise ValueError(f"{len(fanouts)} fanout values for {num_hops} hops")
    if any(f is not None and f < 1 for f in fanouts):
        raise ValueError("fanout must be >= 1 (or None / -1 for all neighbours)")

    # local index of every global node; -1 = not in the subgraph yet
    local = torch.full((csr.num_nodes,), -1, dtype=torch.long, device=device)
    # unique seeds in first-occurrence order
    uniq, inverse = torch.unique(seed_nodes, return_inverse=True)
    first = torch.full((uniq.numel(),), seed_nodes.numel(), dtype=torch.long, device=device)
    first.scatter_reduce_(0, inverse, torch.arange(seed_nodes.numel(), device=device), "amin")
    seeds = seed_nodes[torch.sort(first).values]
    local[seeds] = torch.arange(seeds.numel(), device=device)
    node_parts = [seeds]
    n_nodes = seeds.numel()
    frontier = seeds
    sampled_src, sampled_dst = [], []
    for hop in range(num_hops):
        k = fanouts[hop]
        if k is None:
            pos, owner = _segment_edges(csr, frontier)
        else:
            pos, owner = _sample_edges(csr, frontier, k, generator)
        nbr = csr.col[pos]
        if k is not None:
            sampled_src.append(nbr)
            sampled_dst.append(frontier[owner])
        # new nodes as sorted global ids (deterministic order); a mark-and-scan over all nodes is
        # cheaper than sorting the candidates on mesh graphs
        mark = torch.zeros(csr.num_nodes, dtype=torch.bool, device=device)
        mark[nbr[local[nbr] < 0]] = True
        new = torch.nonzero(mark).reshape(-1)
        local[new] = torch.arange(n_nodes, n_nodes + new.numel(), device=device)
        n_nodes += new.numel()
        node_parts.append(new)
        frontier = new
        if new.numel() == 0 and k is None:
            break
    node_ids = torch.cat(node_parts)
    node_offsets = np.cumsum([part.numel() for part in node_parts]).tolist()
    node_offsets += [node_offsets[-1]] * (num_hops + 1 - len(node_offsets))
    if all(f is None for f in fanouts):
        # induced subgraph: every incoming edge of every node whose source is in the subgraph
        pos, owner = _segment_edges(csr, node_ids)
        src = csr.col[pos]
        keep = local[src] >= 0
        sub_edge_index = torch.stack([local[src[keep]], owner[keep]])
    elif sampled_src:
        src = torch.cat(sampled_src)
        dst = torch.cat(sampled_dst)
        sub_edge_index = torch.stack([local[src], local[dst]])
    else:
        sub_edge_index = torch.empty((2, 0), dtype=torch.long, device=device)
    seed_positions = local[seed_nodes]
    if not return_hop_offsets:
        return node_ids, sub_edge_index, seed_positions
    # targets are non-decreasing along sub_edge_index (grouped by target in hop order)
    bounds = torch.tensor(node_offsets, dtype=torch.long, device=device)
    edge_offsets = torch.searchsorted(sub_edge_index[1].contiguous(), bounds).tolist()
    return node_ids, sub_edge_index, seed_positions, (node_offsets, edge_offsets)


def pyg_sampler_available() -> bool:
    """True when PyG's compiled neighbour sampling (pyg-lib or torch-sparse) is importable."""
    return any(importlib.util.find_spec(m) is not None for m in ("pyg_lib", "torch_sparse"))


@dataclass
class NodeBatch:
    """One mini-batch: a subgraph of graph ``graph_index`` around ``seed_nodes``."""

    graph_index: int  # -1: ids are ids of the union of all graphs (NodeBatcher(mix_graphs=True))
    seed_nodes: torch.Tensor  # (B,) global ids of the output nodes
    node_ids: torch.Tensor  # (M,) global ids of all subgraph nodes (seeds first)
    edge_index: torch.Tensor  # (2, E_B) local ids
    seed_positions: torch.Tensor  # (B,) local ids of the seed nodes
    hop_offsets: tuple[list[int], list[int]] | None = None  # see sample_subgraph
    global_seeds: int | None = None  # output nodes of the global batch (all processes); None: B

    @property
    def num_seeds(self) -> int:
        return int(self.seed_nodes.numel())

    @property
    def num_global_seeds(self) -> int:
        """Output nodes of the whole data-parallel batch (this batch's own count without DDP)."""
        return self.num_seeds if self.global_seeds is None else int(self.global_seeds)


class NodeBatcher:
    """Iterate mini-batches of output nodes over several graphs, reshuffled every epoch.

    Without ``mix_graphs``, each epoch the selected nodes of every graph are permuted, cut into
    batches of ``batch_size`` (the last batch of a graph may be smaller; a last batch of one node is
    merged into the one before, since batch norm needs two values), and the batches of all graphs
    are interleaved in a random order; a batch never mixes graphs. With ``mix_graphs`` the selected
    nodes of all graphs are permuted together and cut into batches (training). Shuffling uses
    ``seed + epoch`` so every epoch is reproducible (also after a resume).

    Parameters
    ----------
    graphs : sequence of torch_geometric.data.Data
        Graphs with ``edge_index`` and ``num_nodes``.
    node_masks : sequence of BoolTensor (N_g,), optional
        Nodes to iterate per graph (e.g. ``train_mask & (y >= 0)``); default all nodes.
    batch_size : int
        Output nodes per batch (2048 in the method).
    num_hops : int
        Hops per subgraph (the model's number of message-passing layers).
    fanout : None or int
        See :func:`sample_subgraph`.
    shuffle : bool
        False iterates nodes in order (prediction).
    seed : int
    device : torch.device, optional
        Where adjacency and sampling live (the GPU when training there).
    use_pyg : bool
        Use ``torch_geometric.loader.NeighborLoader`` for sampling (needs pyg-lib or torch-sparse).
    rank, world_size : int
        Data-parallel sharding: every process plans the same global batches (as one process would)
        and process ``rank`` takes every ``world_size``-th output node of each, so all processes
        step equally often and the global batches do not depend on the number of processes;
        ``NodeBatch.global_seeds`` gives the size of the global batch (to weight the loss).
    mix_graphs : bool
        Sample from the disjoint union of all graphs, so one batch holds output nodes of several
        graphs (i.i.d. batches over all nodes, as training needs: batch-norm statistics of a batch
        from one graph would differ from the running statistics used in evaluation, e.g. the sign of
        the CO x coordinate per hemisphere or a brain's CY offset). Node ids of the batches are then
        *union* ids, ``graph_offsets[g] + local id``, and ``graph_index`` is -1.
    """

    def __init__(
        self,
        graphs: Sequence,
        node_masks: Sequence[torch.Tensor] | None = None,
        *,
        batch_size: int = 2048,
        num_hops: int = 3,
        fanout: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str | None = None,
        use_pyg: bool = False,
        rank: int = 0,
        world_size: int = 1,
        mix_graphs: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if use_pyg and not pyg_sampler_available():
            raise RuntimeError("use_pyg=True needs pyg-lib or torch-sparse, neither is installed")
        self.graphs = list(graphs)
        self.batch_size = int(batch_size)
        self.num_hops = int(num_hops)
        self.fanout = fanout
        self.shuffle = shuffle
        self.seed = int(seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.use_pyg = use_pyg
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.mix_graphs = bool(mix_graphs)
        sizes = [int(g.num_nodes) for g in self.graphs]
        self.graph_offsets = torch.tensor([0, *np.cumsum(sizes).tolist()], dtype=torch.long)
        if node_masks is None:
            node_masks = [torch.ones(n, dtype=torch.bool) for n in sizes]
        node_ids = [torch.nonzero(torch.as_tensor(m).cpu()).reshape(-1) for m in node_masks]
        if self.mix_graphs:
            # the disjoint union of all graphs: node ids shifted by graph_offsets, no edge between
            # graphs, so every k-hop neighbourhood stays inside its own graph
            from types import SimpleNamespace

            starts = self.graph_offsets[:-1].tolist()
            edge_index = torch.cat(
                [g.edge_index.cpu() + off for g, off in zip(self.graphs, starts, strict=True)], 1
            )
            self.sample_graphs = [
                SimpleNamespace(edge_index=edge_index, num_nodes=int(self.graph_offsets[-1]))
            ]
            node_ids = [torch.cat([ids + off for ids, off in zip(node_ids, starts, strict=True)])]
        else:
            self.sample_graphs = self.graphs
        self.node_ids = node_ids
        self.csrs = (
            []
            if use_pyg
            else [
                build_csr(g.edge_index, int(g.num_nodes)).to(self.device)
                for g in self.sample_graphs
            ]
        )

    @property
    def num_nodes(self) -> int:
        """Output nodes per epoch (all processes together)."""
        return int(sum(n.numel() for n in self.node_ids))

    def set_epoch(self, epoch: int) -> None:
        """Fix the shuffle of the next iteration (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def _plan(self) -> list[tuple[int, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        plan: list[tuple[int, torch.Tensor]] = []
        for g, ids in enumerate(self.node_ids):
            if self.shuffle:
                ids = ids[torch.from_numpy(rng.permutation(ids.numel()))]
            chunks = [chunk for chunk in torch.split(ids, self.batch_size) if chunk.numel()]
            if len(chunks) > 1 and chunks[-1].numel() < 2:
                # a lone output node would give batch norm a single value per channel
                chunks[-2:] = [torch.cat(chunks[-2:])]
            plan.extend((g, chunk) for chunk in chunks)
        if self.shuffle:
            plan = [plan[i] for i in rng.permutation(len(plan))]
        return plan

    def _shards(self) -> list[tuple[int, torch.Tensor, int]]:
        """This process's share of every global batch: ``(graph, seeds, global batch size)``."""
        if self.world_size <= 1:
            return [(g, seeds, int(seeds.numel())) for g, seeds in self._plan()]
        return [
            (g, seeds[self.rank :: self.world_size], int(seeds.numel()))
            for g, seeds in self._plan()
        ]

    def __len__(self) -> int:
        n = sum(
            max(ids.numel() // self.batch_size + (ids.numel() % self.batch_size >= 2), 1)
            if ids.numel()
            else 0
            for ids in self.node_ids
        )
        return n

    def __iter__(self) -> Iterator[NodeBatch]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        for g, seeds, global_seeds in self._shards():
            if self.use_pyg:
                batch = self._pyg_batch(g, seeds)
                if self.mix_graphs:
                    batch.graph_index = -1
                batch.global_seeds = global_seeds
                yield batch
                continue
            seeds_dev = seeds.to(self.device, non_blocking=True)
            node_ids, edge_index, seed_pos, offsets = sample_subgraph(
                self.csrs[g],
                seeds_dev,
                self.num_hops,
                self.fanout,
                generator,
                return_hop_offsets=True,
            )
            yield NodeBatch(
                -1 if self.mix_graphs else g,
                seeds_dev,
                node_ids,
                edge_index,
                seed_pos,
                offsets,
                global_seeds,
            )

    def _pyg_loader(self, g: int):
        """One ``NeighborLoader`` per graph (its CSC adjacency is built once), used through
        ``collate_fn`` so the batches follow this batcher's plan."""
        if not hasattr(self, "_pyg_loaders"):
            self._pyg_loaders: dict[int, object] = {}
        if g not in self._pyg_loaders:
            from torch_geometric.data import Data
            from torch_geometric.loader import NeighborLoader

            graph = self.sample_graphs[g]
            skeleton = Data(edge_index=graph.edge_index.cpu(), num_nodes=int(graph.num_nodes))
            k = -1 if self.fanout is None else int(self.fanout)
            self._pyg_loaders[g] = NeighborLoader(
                skeleton, num_neighbors=[k] * self.num_hops, batch_size=1, shuffle=False
            )
        return self._pyg_loaders[g]

    def _pyg_batch(self, g: int, seeds: torch.Tensor) -> NodeBatch:
        from torch_geometric.data import Data

        loader = self._pyg_loader(g)
        sub = loader.collate_fn(seeds.cpu())
        if not isinstance(sub, Data):
            sub = loader.filter_fn(sub)
        node_ids = sub.n_id.to(self.device)
        offsets = None
        n_nodes = getattr(sub, "num_sampled_nodes", None)
        n_edges = getattr(sub, "num_sampled_edges", None)
        if n_nodes is not None and n_edges is not None and len(n_edges) == self.num_hops:
            # PyG orders nodes by hop and edges by the hop of their target, like sample_subgraph
            node_off = np.cumsum([int(v) for v in n_nodes]).tolist()
            edge_off = np.cumsum([int(v) for v in n_edges]).tolist() + [int(sum(n_edges))]
            node_off += [node_off[-1]] * (self.num_hops + 1 - len(node_off))
            offsets = (node_off[: self.num_hops + 1], edge_off[: self.num_hops + 1])
        return NodeBatch(
            g,
            seeds.to(self.device),
            node_ids,
            sub.edge_index.to(self.device),
            torch.arange(seeds.numel(), device=self.device),
            offsets,
        )
