"""Layer-wise whole-graph inference equals the whole-graph forward pass (evaluation mode)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from cortexgraph.errors import CortexgraphError
from cortexgraph.gnn.inference import layerwise_proba, target_csr
from cortexgraph.gnn.models import NodeClassifier
from cortexgraph.gnn.synthetic import synthetic_mesh_graph

DIMS = {"cy": 24, "pm": 7, "co": 3}


def trained_like(kind: str, layers: int = 3, seed: int = 0) -> NodeClassifier:
    """A model whose batch-norm statistics and weights are not the initial ones."""
    torch.manual_seed(seed)
    model = NodeClassifier(DIMS, 5, kind=kind, num_layers=layers, hidden=16)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope="module")
def graph():
    g = synthetic_mesh_graph(23, 19, feature_dims=DIMS, num_classes=5, seed=3)
    # drop a few edges so some nodes have no in-neighbours
    keep = torch.ones(g.edge_index.shape[1], dtype=torch.bool)
    keep[g.edge_index[1] < 4] = False
    g.edge_index = g.edge_index[:, keep]
    return g


@pytest.mark.parametrize("kind", ["gat", "sage", "mlp", "linear"])
def test_layerwise_equals_the_whole_graph_pass(kind, graph):
    model = trained_like(kind)
    model.eval()
    with torch.no_grad():
        reference = torch.softmax(model(graph), 1).numpy()
    model.train()
    features = {name: getattr(graph, f"x_{name}") for name in DIMS}
    for batch_size in (37, 100_000):
        exact = layerwise_proba(
            model, features, graph.edge_index, graph.num_nodes, batch_size=batch_size,
            hidden_dtype=torch.float32,
        )  # fmt: skip
        np.testing.assert_allclose(exact, reference, atol=1e-5)
    half = layerwise_proba(model, features, graph.edge_index, graph.num_nodes, batch_size=50)
    np.testing.assert_allclose(half, reference, atol=5e-3)
    assert model.training  # mode restored
    assert half.dtype == np.float32 and np.allclose(half.sum(1), 1.0, atol=1e-5)


def test_features_read_range_by_range_from_a_graph_file(graph, tmp_path):
    model = trained_like("gat", layers=2, seed=1)
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as h5:
        for name in DIMS:
            h5[name] = getattr(graph, f"x_{name}").numpy().astype(np.float16)
    in_memory = {name: getattr(graph, f"x_{name}").half().float() for name in DIMS}
    expected = layerwise_proba(
        model, in_memory, graph.edge_index, graph.num_nodes, hidden_dtype=torch.float32
    )
    seen = []
    with h5py.File(path, "r") as h5:
        got = layerwise_proba(
            model, {name: h5[name] for name in DIMS}, graph.edge_index, graph.num_nodes,
            batch_size=64, hidden_dtype=torch.float32, progress=lambda d, t: seen.append((d, t)),
        )  # fmt: skip
    np.testing.assert_allclose(got, expected, atol=1e-6)
    batches = -(-graph.num_nodes // 64)
    assert seen[-1] == (batches * 3, batches * 3)  # 2 layers (encoders inside), classifier


def test_bad_features_are_named(graph):
    model = trained_like("sage", layers=1)
    features = {name: getattr(graph, f"x_{name}").clone() for name in DIMS}
    features["pm"][5, 2] = float("nan")
    with pytest.raises(CortexgraphError, match="'pm' holds NaN"):
        layerwise_proba(model, features, graph.edge_index, graph.num_nodes)
    with pytest.raises(CortexgraphError, match="co missing"):
        layerwise_proba(model, {"cy": features["cy"], "pm": features["pm"]}, graph.edge_index, 1)


def test_target_csr_groups_in_edges():
    edges = torch.tensor([[0, 2, 1, 2, 0], [1, 1, 2, 0, 2]])
    ptr, sources = target_csr(edges, 4)
    assert ptr.tolist() == [0, 1, 3, 5, 5]
    assert sources.tolist() == [2, 0, 2, 1, 0]


def test_predict_proba_layerwise_option_equals_the_khop_batches(graph):
    from cortexgraph.gnn.train import predict_proba

    model = trained_like("gat", layers=2, seed=2)
    wanted = torch.zeros(graph.num_nodes, dtype=torch.bool)
    wanted[::3] = True
    khop = predict_proba([graph], model, batch_size=40, nodes=[wanted], amp=False)[0]
    layered = predict_proba([graph], model, batch_size=40, nodes=[wanted], layerwise=True)[0]
    assert np.array_equal(np.isnan(khop), np.isnan(layered))
    np.testing.assert_allclose(layered[wanted.numpy()], khop[wanted.numpy()], atol=5e-3)
