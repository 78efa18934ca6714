"""Runtime helpers: seeding, device choice, and no-op AMP / DDP on a single CPU process."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from cortexgraph.training import runtime


def test_seed_everything_reproduces_all_generators():
    runtime.seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    runtime.seed_everything(7)
    b = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_pick_device():
    assert runtime.pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.pick_device().type == expected
    from cortexgraph.errors import ParameterError

    if not torch.cuda.is_available():  # a user's error (exit 2), not a bug
        with pytest.raises(ParameterError, match="torch sees no CUDA device"):
            runtime.pick_device("cuda")
    with pytest.raises(ParameterError, match="not a torch device"):
        runtime.pick_device("gpu0")
    with pytest.raises(ParameterError, match="CPUs and CUDA GPUs only"):
        runtime.pick_device("meta")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        with pytest.raises(ParameterError, match=f"has {count} CUDA device"):
            runtime.pick_device(f"cuda:{count}")


def test_amp_helpers_are_noops_on_cpu():
    dev = torch.device("cpu")
    assert runtime.amp_dtype(dev) is None
    lin = torch.nn.Linear(4, 2)
    with runtime.autocast(dev):
        out = lin(torch.randn(3, 4))
    assert out.dtype == torch.float32
    scaler = runtime.make_grad_scaler(dev)
    assert not scaler.is_enabled()
    loss = out.sum()
    assert scaler.scale(loss) is loss


def test_distributed_helpers_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert runtime.init_distributed_from_env() == (0, 1, 0)
    assert not runtime.is_distributed()
    assert runtime.get_rank() == 0 and runtime.get_world_size() == 1
    assert runtime.is_main_process()
    runtime.barrier()
    t = torch.ones(3)
    assert runtime.all_reduce_sum(t) is t
    assert runtime.all_gather_with_grad(t) is t
    model = torch.nn.Linear(2, 2)
    assert runtime.unwrap_model(torch.nn.DataParallel(model)) is model


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_autocast_on_cuda_lowers_precision():
    dev = torch.device("cuda")
    lin = torch.nn.Linear(4, 2).to(dev)
    with runtime.autocast(dev):
        out = lin(torch.randn(3, 4, device=dev))
    assert out.dtype in (torch.float16, torch.bfloat16)
