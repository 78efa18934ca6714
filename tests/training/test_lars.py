"""LARS: one and two steps against the update rule computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cortexgraph.training.lars import LARS, lars_param_groups


def _hand_step(p, g, buf, lr, mu, wd, eta, eps, lars):
    d = g + wd * p if lars else g.copy()
    if lars:
        pn, gn = np.linalg.norm(p), np.linalg.norm(g)
        d = d * (eta * pn / (gn + wd * pn + eps))
    buf = d.copy() if buf is None else mu * buf + d
    step = d + mu * buf
    return p - lr * step, buf


@pytest.mark.parametrize("lars", [True, False])
def test_two_steps_match_hand_formula(lars):
    p0 = np.array([[0.5, -1.0], [2.0, 0.25]])
    grads = [np.array([[0.1, 0.2], [-0.3, 0.05]]), np.array([[-0.2, 0.4], [0.1, 0.0]])]
    lr, mu, wd, eta, eps = 0.5, 0.9, 1e-2, 0.02, 1e-8
    w = nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = LARS(
        [{"params": [w], "lars": lars, "weight_decay": wd}],
        lr=lr,
        momentum=mu,
        weight_decay=wd,
        trust_coefficient=eta,
        eps=eps,
    )
    p, buf = p0.copy(), None
    for g in grads:
        w.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        p, buf = _hand_step(p, g, buf, lr, mu, wd if lars else 0.0, eta, eps, lars)
        np.testing.assert_allclose(w.detach().numpy(), p, rtol=1e-12, atol=1e-14)


def test_zero_weight_uses_trust_one():
    w = nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    opt = LARS([w], lr=0.1, momentum=0.9, weight_decay=0.0)
    w.grad = torch.ones(3, 2, dtype=torch.float64)
    opt.step()
    # trust = 1 when ||p|| = 0; nesterov first step: d + mu * d
    np.testing.assert_allclose(w.detach().numpy(), -0.1 * 1.9 * np.ones((3, 2)), rtol=1e-12)


def test_param_groups_exclude_bias_and_norm():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False))
    groups = lars_param_groups(model, weight_decay=1e-4)
    adapted = {id(p) for p in groups[0]["params"]}
    plain = {id(p) for p in groups[1]["params"]}
    assert groups[0]["lars"] and groups[0]["weight_decay"] == 1e-4
    assert not groups[1]["lars"] and groups[1]["weight_decay"] == 0.0
    assert adapted == {id(model[0].weight), id(model[2].weight)}
    assert plain == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}


def test_rejects_bad_arguments():
    w = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError):
        LARS([w], lr=-1.0)
    with pytest.raises(ValueError):
        LARS([w], lr=0.1, momentum=0.0, nesterov=True)
