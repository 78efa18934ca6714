"""cortexgraph.gnn.attention: entropy and same-label share against hand-computed values, attention
that sums to 1 per node, and a GAT under mean attention equal to the SAGE model with its weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexgraph.gnn.attention import (
    attention_per_layer,
    mean_attention,
    normalised_entropy,
    same_label_attention,
)
from cortexgraph.gnn.models import NodeClassifier
from cortexgraph.gnn.synthetic import synthetic_mesh_graph

DIMS = {"cy": 12, "pm": 5}


@pytest.fixture(scope="module")
def graph():
    return synthetic_mesh_graph(6, 10, DIMS, num_classes=4, labelled_fraction=0.5, seed=3)


def _gat(heads: int = 1, layers: int = 3) -> NodeClassifier:
    torch.manual_seed(5)
    model = NodeClassifier(DIMS, 4, kind="gat", num_layers=layers, hidden=16, heads=heads)
    with torch.no_grad():  # attention vectors far from zero, so attention is far from the mean
        for layer in model.layers:
            layer.att.normal_(0.0, 3.0)
    return model.eval()


def test_normalised_entropy_of_hand_made_attention():
    # node 0: 4 in-edges, uniform -> 1; node 1: 4 in-edges, two at 1/2 -> log 2 / log 4 = 0.5;
    # node 2: 2 in-edges, one-hot -> 0; node 3: 1 in-edge -> NaN (no choice); node 4: no in-edge -> NaN
    target = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3])
    alpha = np.array([0.25] * 4 + [0.5, 0.5, 0.0, 0.0] + [1.0, 0.0] + [1.0])
    ratio = normalised_entropy(target, alpha, 5)
    np.testing.assert_allclose(ratio[:3], [1.0, 0.5, 0.0], atol=1e-12)
    assert np.isnan(ratio[3]) and np.isnan(ratio[4])
    # two heads are averaged: uniform (1) and one-hot (0) -> 0.5
    two_heads = np.stack([np.full(4, 0.25), np.array([1.0, 0.0, 0.0, 0.0])], axis=1)
    assert normalised_entropy(np.zeros(4, int), two_heads, 1)[0] == pytest.approx(0.5, abs=1e-12)


def test_same_label_attention_of_hand_made_attention():
    # node 0 (area 1) hears from 1 (area 1), 2 (area 2), 3 (area 2), 4 (unlabelled)
    labels = np.array([1, 1, 2, 2, -1])
    source = np.array([1, 2, 3, 4, 0])
    target = np.array([0, 0, 0, 0, 1])
    alpha = np.array([0.6, 0.1, 0.1, 0.2, 1.0])
    attended, uniform = same_label_attention(source, target, alpha, labels)
    # the unlabelled neighbour's 0.2 is left out: 0.6 / 0.8 on its own area, against 1 of 3
    assert attended[0] == pytest.approx(0.75, abs=1e-12)
    assert uniform[0] == pytest.approx(1 / 3, abs=1e-12)
    assert attended[1] == pytest.approx(1.0) and uniform[1] == pytest.approx(1.0)
    assert np.isnan(attended[2:]).all() and np.isnan(uniform[2:]).all()


@pytest.mark.parametrize("heads", [1, 4])
def test_attention_per_layer_sums_to_one_per_node_and_head(graph, heads):
    model = _gat(heads)
    coefficients = attention_per_layer(model, graph)
    target = graph.edge_index[1].numpy()
    degree = np.bincount(target, minlength=graph.num_nodes)
    assert len(coefficients) == 3
    for alpha in coefficients:
        assert alpha.shape == (graph.edge_index.shape[1], heads)
        for h in range(heads):
            sums = np.bincount(target, weights=alpha[:, h], minlength=graph.num_nodes)
            np.testing.assert_allclose(sums[degree > 0], 1.0, atol=1e-5)
        # scaled-up attention vectors: clearly not the mean
        assert np.nanmean(normalised_entropy(target, alpha, graph.num_nodes)) < 0.95
    assert not model.training


def test_attention_needs_a_gat(graph):
    sage = NodeClassifier(DIMS, 4, kind="sage", num_layers=2, hidden=16)
    with pytest.raises(ValueError, match="GAT"):
        attention_per_layer(sage, graph)


def test_mean_attention_is_uniform_and_restores_the_trained_attention(graph):
    model = _gat(heads=2)
    target = graph.edge_index[1].numpy()
    degree = np.bincount(target, minlength=graph.num_nodes)
    before = model(graph).detach()
    with mean_attention(model):
        for alpha in attention_per_layer(model, graph):
            np.testing.assert_allclose(
                alpha, (1.0 / degree[target])[:, None].repeat(2, 1), atol=1e-6
            )
        assert (model(graph).detach() - before).abs().max() > 1e-3
    torch.testing.assert_close(model(graph).detach(), before)
    with pytest.raises(RuntimeError), mean_attention(model):
        raise RuntimeError("interrupted")
    torch.testing.assert_close(model(graph).detach(), before)


def test_a_gat_under_mean_attention_is_the_sage_model_with_its_weights(graph):
    """GATv2 with uniform attention computes W_r x_i + W mean_j x_j + b: SAGE with mean aggregation.
    Copy the weights into a SAGE NodeClassifier and the logits agree to float32 rounding."""
    gat = _gat()
    torch.manual_seed(0)
    sage = NodeClassifier(DIMS, 4, kind="sage", num_layers=3, hidden=16).eval()
    with torch.no_grad():
        sage.encoders.load_state_dict(gat.encoders.state_dict())
        sage.norms.load_state_dict(gat.norms.state_dict())
        sage.classifier.load_state_dict(gat.classifier.state_dict())
        for s, g in zip(sage.layers, gat.layers, strict=True):
            s.lin_l.weight.copy_(g.lin_l.weight)
            s.lin_l.bias.copy_(g.lin_l.bias + g.bias)
            s.lin_r.weight.copy_(g.res.weight)
    with mean_attention(gat):
        torch.testing.assert_close(gat(graph), sage(graph), atol=1e-5, rtol=1e-5)
    assert (gat(graph) - sage(graph)).abs().max() > 1e-3  # learned attention: not SAGE
