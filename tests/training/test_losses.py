"""Supervised contrastive loss against a direct numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexgraph.training.losses import supervised_contrastive_loss


def _numpy_supcon(f, y, t):
    z = f / np.linalg.norm(f, axis=1, keepdims=True)
    s = z @ z.T / t
    b = len(y)
    losses = []
    for i in range(b):
        pos = [j for j in range(b) if j != i and y[j] == y[i]]
        if not pos:
            continue
        denom = sum(np.exp(s[i, k]) for k in range(b) if k != i)
        losses.append(-np.mean([np.log(np.exp(s[i, j]) / denom) for j in pos]))
    return float(np.mean(losses))


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
def test_matches_numpy(temperature):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(9, 5)) * 3.0
    y = np.array([0, 1, 0, 2, 1, 1, 3, 0, 2])  # class 3 is a singleton: excluded as an anchor
    got = supervised_contrastive_loss(torch.tensor(f), torch.tensor(y), temperature)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(_numpy_supcon(f, y, temperature), rel=1e-5)


def test_scale_invariant_and_gradient_finite_with_singleton():
    rng = np.random.default_rng(1)
    f = torch.tensor(rng.normal(size=(6, 4)), dtype=torch.float32, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 3])
    loss = supervised_contrastive_loss(f, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(f.grad).all()
    assert float(supervised_contrastive_loss(f.detach() * 7.0, y)) == pytest.approx(
        float(loss.detach()), 1e-5
    )


@pytest.mark.parametrize("b", [1, 4])
def test_no_positive_pair_gives_zero_without_nan(b):
    f = torch.randn(b, 3, requires_grad=True)
    loss = supervised_contrastive_loss(f, torch.arange(b))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.equal(f.grad, torch.zeros_like(f))


def test_perfect_clusters_have_lower_loss():
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    good = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    bad = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 3)
    assert supervised_contrastive_loss(good, y) < supervised_contrastive_loss(bad, y)
