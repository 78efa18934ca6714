"""ProcessGroupBatchNorm: batch norm over the batches of two gloo processes equals batch norm over the
whole batch in one process (outputs, gradients, running statistics)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from cortexgraph.training.syncbn import ProcessGroupBatchNorm, convert_sync_batchnorm

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo back end is not available",
)


def _net(momentum=0.1):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4, momentum=momentum),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
        nn.BatchNorm1d(5, momentum=momentum),
    )


def _data():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(size=(10, 1, 8, 8)).astype(np.float32))
    w = torch.from_numpy(rng.normal(size=(10, 5)).astype(np.float32))
    return x, w


def _step(net, x, w):
    """Two forward/backward passes; returns outputs, gradients and running statistics."""
    outs, grads = [], []
    for _ in range(2):
        net.zero_grad()
        y = net(x)
        (y * w).sum().backward()
        outs.append(y.detach())
        grads.append([p.grad.detach().clone() for p in net.parameters()])
    stats = [b.detach().clone() for n, b in net.named_buffers() if "running" in n]
    return outs, grads, stats


def _worker(rank, port, momentum, queue):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        net = convert_sync_batchnorm(_net(momentum))
        assert sum(isinstance(m, ProcessGroupBatchNorm) for m in net.modules()) == 2
        x, w = _data()
        part = slice(0, 6) if rank == 0 else slice(6, 10)  # unequal shares
        outs, grads, stats = _step(net, x[part], w[part])
        # the loss is a sum over samples, so the global gradient is the sum over processes
        for g in grads:
            for t in g:
                dist.all_reduce(t)
        queue.put((rank, [o.numpy() for o in outs], [[t.numpy() for t in g] for g in grads],
                   [s.numpy() for s in stats]))  # fmt: skip
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("momentum", [0.1, None])
def test_two_processes_equal_one_process_on_the_whole_batch(momentum):
    import torch.multiprocessing as mp

    x, w = _data()
    ref_outs, ref_grads, ref_stats = _step(_net(momentum), x, w)

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, momentum, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((item[0], item[1:]) for item in (queue.get(timeout=60) for _ in procs))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    outs0, grads0, stats0 = results[0]
    outs1, grads1, _ = results[1]
    for step in range(2):
        joined = np.concatenate([outs0[step], outs1[step]])
        np.testing.assert_allclose(joined, ref_outs[step].numpy(), rtol=1e-5, atol=1e-5)
        for mine, ref in zip(grads0[step], ref_grads[step], strict=True):
            np.testing.assert_allclose(mine, ref.numpy(), rtol=1e-4, atol=1e-5)
    for mine, ref in zip(stats0, ref_stats, strict=True):
        np.testing.assert_allclose(mine, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_single_process_is_plain_batch_norm():
    x, w = _data()
    ref = _step(_net(), x, w)
    mine = _step(convert_sync_batchnorm(_net()), x, w)
    for a, b in zip(ref[0], mine[0], strict=True):
        assert torch.equal(a, b)
