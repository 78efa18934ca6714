"""Neighbour sampler: exact k-hop neighbourhoods, fan-out limits, batching over several graphs."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import k_hop_subgraph

from cortexgraph.gnn.sampler import (
    NodeBatcher,
    build_csr,
    pyg_sampler_available,
    sample_subgraph,
)
from cortexgraph.gnn.synthetic import synthetic_mesh_graph, triangulated_grid_edges


def _edge_set(edge_index):
    return set(map(tuple, edge_index.T.tolist()))


@pytest.mark.parametrize("num_hops", [1, 2, 3])
@pytest.mark.parametrize("periodic", [False, True])
def test_full_mode_equals_k_hop_subgraph(num_hops, periodic):
    rows, cols = 9, 11
    ei = triangulated_grid_edges(rows, cols, periodic=periodic)
    n = rows * cols
    csr = build_csr(ei, n)
    seeds = torch.tensor([0, 17, 54, 17, 98])
    nodes, sub, pos = sample_subgraph(csr, seeds, num_hops)
    subset, ref_edges, _, _ = k_hop_subgraph(seeds, num_hops, ei, num_nodes=n)
    assert sorted(nodes.tolist()) == sorted(subset.tolist())
    assert nodes.unique().numel() == nodes.numel()
    assert _edge_set(nodes[sub]) == _edge_set(ref_edges)
    assert sub.shape[1] == ref_edges.shape[1]
    assert torch.equal(nodes[pos], seeds)
    assert nodes[:4].tolist() == [0, 17, 54, 98]  # unique seeds first, in input order


def test_one_hop_interior_vertex_has_six_neighbours():
    ei = triangulated_grid_edges(7, 7, periodic=False)
    csr = build_csr(ei, 49)
    nodes, sub, _ = sample_subgraph(csr, torch.tensor([24]), 1)  # centre vertex
    assert nodes.numel() == 7
    assert int((sub[1] == 0).sum()) == 6


@pytest.mark.parametrize("fanout", [1, 3])
def test_sampled_mode_respects_fanout(fanout):
    ei = triangulated_grid_edges(20, 20)
    csr = build_csr(ei, 400)
    seeds = torch.arange(0, 400, 37)
    gen = torch.Generator().manual_seed(0)
    nodes, sub, pos = sample_subgraph(csr, seeds, 3, fanout=fanout, generator=gen)
    in_deg = torch.bincount(sub[1], minlength=nodes.numel())
    assert int(in_deg.max()) == fanout
    assert (in_deg[: seeds.numel()] == fanout).all()  # every seed has degree 6 > fanout
    # sampled edges are real edges, drawn without replacement (no duplicates)
    global_edges = _edge_set(nodes[sub])
    assert global_edges <= _edge_set(ei)
    assert len(global_edges) == sub.shape[1]
    # same generator seed -> same subgraph
    again = sample_subgraph(
        csr, seeds, 3, fanout=fanout, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(again[0], nodes) and torch.equal(again[1], sub)
    # every node reached within 3 hops of a seed through sampled edges
    subset, *_ = k_hop_subgraph(seeds, 3, ei, num_nodes=400)
    assert set(nodes.tolist()) <= set(subset.tolist())


def test_fanout_not_smaller_than_degree_equals_full_neighbours():
    ei = triangulated_grid_edges(10, 10)
    csr = build_csr(ei, 100)
    seeds = torch.tensor([5, 50])
    a = sample_subgraph(csr, seeds, 2, fanout=6, generator=torch.Generator().manual_seed(1))
    subset, *_ = k_hop_subgraph(seeds, 2, ei, num_nodes=100)
    assert sorted(a[0].tolist()) == sorted(subset.tolist())


def test_node_batcher_covers_every_node_once_per_epoch():
    graphs = [
        synthetic_mesh_graph(6, 8, {"cy": 4}, labelled_fraction=0.7, seed=s) for s in range(3)
    ]
    masks = [g.train_mask for g in graphs]
    batcher = NodeBatcher(graphs, masks, batch_size=5, num_hops=2, fanout=3, seed=4)
    seen = {g: [] for g in range(3)}
    for b in batcher:
        assert 2 <= b.num_seeds <= 6  # a last batch of one node is merged into the previous one
        assert torch.equal(b.node_ids[b.seed_positions], b.seed_nodes)
        seen[b.graph_index].extend(b.seed_nodes.tolist())
    for g, m in enumerate(masks):
        assert sorted(seen[g]) == torch.nonzero(m).reshape(-1).tolist()
    order0 = [b.seed_nodes.tolist() for b in batcher]
    batcher.set_epoch(1)
    order1 = [b.seed_nodes.tolist() for b in batcher]
    batcher.set_epoch(0)
    assert [b.seed_nodes.tolist() for b in batcher] == order0 != order1
    assert len(batcher) == len(order0)


def test_node_batcher_shards_every_global_batch_for_data_parallel():
    graphs = [synthetic_mesh_graph(6, 8, {"cy": 4}, labelled_fraction=1.0, seed=0)]
    single = [b.seed_nodes.tolist() for b in NodeBatcher(graphs, batch_size=7, num_hops=1, seed=2)]
    parts = [
        list(NodeBatcher(graphs, batch_size=7, num_hops=1, seed=2, rank=r, world_size=2))
        for r in range(2)
    ]
    # every process steps once per global batch: the same batches as one process, split in two
    assert len(parts[0]) == len(parts[1]) == len(single) == 7
    for k, batch in enumerate(single):
        a, b = parts[0][k], parts[1][k]
        assert sorted(a.seed_nodes.tolist() + b.seed_nodes.tolist()) == sorted(batch)
        assert a.num_global_seeds == b.num_global_seeds == len(batch)
        assert not set(a.seed_nodes.tolist()) & set(b.seed_nodes.tolist())
        assert abs(a.num_seeds - b.num_seeds) <= 1


@pytest.mark.skipif(
    not pyg_sampler_available(), reason="pyg-lib / torch-sparse not installed (PyG sampler option)"
)
def test_pyg_neighbor_loader_option_matches_full_mode():
    graphs = [synthetic_mesh_graph(8, 8, {"cy": 4}, labelled_fraction=1.0, seed=0)]
    ours = NodeBatcher(graphs, batch_size=16, num_hops=2, shuffle=False)
    pyg = NodeBatcher(graphs, batch_size=16, num_hops=2, shuffle=False, use_pyg=True)
    for a, b in zip(ours, pyg, strict=True):
        assert set(a.node_ids.tolist()) == set(b.node_ids.tolist())
        assert torch.equal(b.node_ids[b.seed_positions], a.seed_nodes)


@pytest.mark.parametrize("n,batch,sizes", [(11, 5, [5, 6]), (12, 5, [5, 5, 2]), (1, 5, [1])])
def test_lone_last_node_is_merged_into_the_batch_before(n, batch, sizes):
    g = synthetic_mesh_graph(4, 4, {"cy": 2}, labelled_fraction=1.0, seed=0)
    mask = torch.zeros(16, dtype=torch.bool)
    mask[:n] = True
    batcher = NodeBatcher([g], [mask], batch_size=batch, num_hops=1, shuffle=False)
    assert [b.num_seeds for b in batcher] == sizes
    assert len(batcher) == len(sizes)


def test_mixed_batches_cover_the_union_and_stay_inside_each_graph():
    graphs = [
        synthetic_mesh_graph(6, 7 + s, {"cy": 2}, labelled_fraction=0.6, seed=s) for s in range(3)
    ]
    masks = [g.train_mask for g in graphs]
    batcher = NodeBatcher(graphs, masks, batch_size=9, num_hops=2, seed=1, mix_graphs=True)
    off = batcher.graph_offsets
    assert off.tolist() == [0, 42, 90, 144]
    seen, mixed = [], 0
    for b in batcher:
        assert b.graph_index == -1
        graph_of = torch.searchsorted(off, b.node_ids, right=True) - 1
        mixed += int(torch.unique(graph_of[b.seed_positions]).numel() > 1)
        seen.extend(b.seed_nodes.tolist())
        # the subgraph is the exact 2-hop neighbourhood of the seed nodes, graph by graph
        for g in range(3):
            local = b.seed_nodes[(b.seed_nodes >= off[g]) & (b.seed_nodes < off[g + 1])] - off[g]
            in_g = b.node_ids[graph_of == g] - off[g]
            if local.numel():
                subset, *_ = k_hop_subgraph(
                    local, 2, graphs[g].edge_index, num_nodes=graphs[g].num_nodes
                )
                assert sorted(in_g.tolist()) == sorted(subset.tolist())
            else:
                assert in_g.numel() == 0
        src, dst = graph_of[b.edge_index[0]], graph_of[b.edge_index[1]]
        assert torch.equal(src, dst)  # no edge between graphs
    expected = [
        int(off[g]) + i for g, m in enumerate(masks) for i in torch.nonzero(m).reshape(-1).tolist()
    ]
    assert sorted(seen) == sorted(expected)
    assert mixed >= len(batcher) - 1  # batches hold nodes of several graphs
