"""NodeClassifier: output shapes for every kind and depth, overfitting a tiny labelled graph."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GATv2Conv, SAGEConv

from cortexgraph.errors import CortexgraphError
from cortexgraph.gnn.models import NodeClassifier
from cortexgraph.gnn.synthetic import synthetic_mesh_graph
from cortexgraph.training.lars import LARS, lars_param_groups

DIMS = {"cy": 12, "pm": 5, "co": 3}


@pytest.fixture(scope="module")
def graph():
    return synthetic_mesh_graph(6, 10, DIMS, num_classes=4, labelled_fraction=0.5, seed=0)


@pytest.mark.parametrize("kind", ["gat", "sage", "mlp", "linear"])
@pytest.mark.parametrize("num_layers", [3, 5, 7])
def test_output_shapes(graph, kind, num_layers):
    torch.manual_seed(0)
    model = NodeClassifier(DIMS, 4, kind=kind, num_layers=num_layers, hidden=16)
    out = model(graph)
    assert out.shape == (graph.num_nodes, 4)
    assert torch.isfinite(out).all()
    if kind in ("gat", "sage"):
        assert model.num_hops == num_layers
        assert len(model.layers) == num_layers
        conv = GATv2Conv if kind == "gat" else SAGEConv
        assert all(isinstance(layer, conv) for layer in model.layers)
    else:
        assert model.num_hops == 0


def test_parameter_count_of_gat3_matches_the_architecture():
    hidden, dims, c = 512, {"cy": 2048, "pm": 152, "co": 3}, 113
    model = NodeClassifier(dims, c, kind="gat", num_layers=3, hidden=hidden)
    encoders = sum(d * hidden + 2 * hidden for d in dims.values())  # FC without bias + BN
    first_in = 3 * hidden
    # GATv2 (1 head): lin_l, lin_r (+bias each), att, bias, residual (no bias); then BN
    gat = lambda i: 2 * (i * hidden + hidden) + hidden + hidden + i * hidden + 2 * hidden  # noqa: E731
    expected = encoders + gat(first_in) + 2 * gat(hidden) + hidden * c + c
    assert sum(p.numel() for p in model.parameters()) == expected


def test_input_regularisation_only_in_training(graph):
    torch.manual_seed(0)
    model = NodeClassifier(DIMS, 4, kind="mlp", num_layers=3, hidden=16)
    model.eval()
    a, b = model(graph), model(graph)
    assert torch.equal(a, b)
    model.train()
    assert not torch.equal(model(graph), model(graph))


def test_missing_feature_raises(graph):
    model = NodeClassifier({"cy": 12, "xx": 2}, 4, kind="sage", hidden=8)
    with pytest.raises(CortexgraphError, match="'xx' missing"):
        model(graph)
    model = NodeClassifier({"cy": 11}, 4, kind="sage", hidden=8)
    with pytest.raises(CortexgraphError, match="shape"):
        model(graph)


@pytest.mark.parametrize("kind", ["gat", "sage", "mlp"])
def test_overfits_tiny_graph(kind):
    # 4 areas; features are pure noise, so the model must memorise the labelled nodes
    g = synthetic_mesh_graph(
        6, 8, DIMS, num_classes=4, labelled_fraction=0.6, seed=1, informative=False
    )
    torch.manual_seed(0)
    model = NodeClassifier(
        DIMS,
        4,
        kind=kind,
        num_layers=3,
        hidden=32,
        input_dropout={},
        input_noise_sigma={},
        dropout=0.0,
        attention_dropout=0.0,
    )
    opt = LARS(lars_param_groups(model, 1e-4), lr=0.5, trust_coefficient=0.02)
    mask = g.train_mask
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(g)[mask], g.y[mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    acc = (model(g)[mask].argmax(1) == g.y[mask]).float().mean()
    assert float(acc) == 1.0


@pytest.mark.parametrize("kind", ["gat", "sage"])
@pytest.mark.parametrize("fanout", [None, 2])
def test_trimmed_forward_equals_full_forward_at_seeds(kind, fanout):
    from cortexgraph.gnn.sampler import build_csr, sample_subgraph

    g = synthetic_mesh_graph(9, 9, DIMS, num_classes=4, labelled_fraction=0.5, seed=2)
    torch.manual_seed(0)
    model = NodeClassifier(DIMS, 4, kind=kind, num_layers=3, hidden=16).eval()
    csr = build_csr(g.edge_index, g.num_nodes)
    seeds = torch.tensor([0, 40, 13, 77])
    nodes, ei, pos, offsets = sample_subgraph(
        csr, seeds, 3, fanout, torch.Generator().manual_seed(0), return_hop_offsets=True
    )
    assert offsets[0][0] == 4 and offsets[0][-1] == nodes.numel()
    assert offsets[1][-1] <= ei.shape[1]
    x = {k: getattr(g, f"x_{k}")[nodes] for k in DIMS}
    with torch.no_grad():
        full = model(x, ei)[pos]
        trimmed = model(x, ei, offsets)
    assert trimmed.shape == (4, 4)
    torch.testing.assert_close(trimmed[pos], full, rtol=1e-5, atol=1e-5)
    if fanout is None:  # exact neighbourhood: equals the whole-graph forward
        with torch.no_grad():
            whole = model(g)[seeds]
        torch.testing.assert_close(trimmed[pos], whole, rtol=1e-5, atol=1e-5)
