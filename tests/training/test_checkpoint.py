"""Checkpoints: round trip of model, optimizer, epoch and RNG state; atomic replacement."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from cortexgraph.errors import CortexgraphError
from cortexgraph.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from cortexgraph.training.lars import LARS, lars_param_groups
from cortexgraph.training.runtime import seed_everything


def _model_and_opt():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = LARS(lars_param_groups(model, 1e-4), lr=0.1)
    return model, opt


def _train_step(model, opt):
    x = torch.randn(8, 3)
    loss = model(x).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_round_trip_and_resume_continue_identically(tmp_path):
    seed_everything(3)
    model, opt = _model_and_opt()
    _train_step(model, opt)
    path = save_checkpoint(tmp_path, model, opt, epoch=1, extra={"history": {"loss": [0.5]}})
    assert path == tmp_path / "last.pt"
    # the uninterrupted continuation
    _train_step(model, opt)
    expected_params = [p.detach().clone() for p in model.parameters()]
    expected_draws = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002

    seed_everything(99)  # different state: must be replaced by the checkpoint's
    model2, opt2 = _model_and_opt()
    payload = load_checkpoint(tmp_path, model2, opt2)
    assert payload["epoch"] == 1
    assert payload["extra"]["history"]["loss"] == [0.5]
    _train_step(model2, opt2)
    for p, q in zip(model2.parameters(), expected_params, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)
    draws = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    assert draws[0] == expected_draws[0] and draws[1] == expected_draws[1]
    assert torch.equal(draws[2], expected_draws[2])


def test_atomic_write_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    model, opt = _model_and_opt()
    save_checkpoint(tmp_path / "last.pt", model, opt, epoch=4)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "last.pt", model, opt, epoch=5)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt", restore_rng=False)["epoch"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left


def test_latest_and_errors(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    model, _ = _model_and_opt()
    save_checkpoint(tmp_path / "epoch_0002.pt", model, epoch=2)
    save_checkpoint(tmp_path / "epoch_0010.pt", model, epoch=10)
    assert latest_checkpoint(tmp_path).name == "epoch_0010.pt"
    with pytest.raises(CortexgraphError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CortexgraphError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
