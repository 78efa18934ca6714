"""Batch normalisation over the batches of all data-parallel processes, on any device.

Data-parallel training splits every global batch between processes; plain batch norm would then
normalise each process's share with its own statistics, so N processes would train a different model
than one process on the same global batch. :class:`torch.nn.SyncBatchNorm` fixes that on GPUs only
(its forward refuses CPU tensors), so torchrun on CPU processes (the gloo back end: tests, CPU
clusters) would either fail or train differently. :class:`ProcessGroupBatchNorm` computes the
statistics of the global batch with two differentiable all-reduces (:class:`_AllReduceSum`, whose
backward pass sums the gradients of all processes, which is what the batch-statistics terms of the
gradient need). It is written here because
torch has no CPU synchronised batch norm; on CUDA :func:`convert_sync_batchnorm` keeps using
:class:`torch.nn.SyncBatchNorm` (NCCL, fused kernels).

Semantics (same as :class:`torch.nn.BatchNorm1d/2d` on the global batch):

* training: ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with ``mean`` and the biased ``var``
  over every element of every process's batch (per channel); the running mean and the running
  *unbiased* variance are updated with ``momentum`` (or as a cumulative average when ``momentum`` is
  None), identically on every process;
* evaluation, or a single process: plain batch norm (no communication).

Statistics are computed in float32 (two passes: the mean first, then the squared deviations from it).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["ProcessGroupBatchNorm", "convert_sync_batchnorm"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every input is the sum of the processes' gradients of
    the output (each process's loss depends on every process's input through the sum)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``tensor`` over the processes of the default group."""
    return _AllReduceSum.apply(tensor)


def _world_size() -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


class ProcessGroupBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics span all processes of the default group (module
    docstring). Accepts inputs of any rank >= 2, ``(N, C, ...)``."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of 2 or more dimensions, got {input.dim()}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's name
        self._check_input_dim(input)
        if not self.training or _world_size() < 2:
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, input.shape[1]] + [1] * (input.dim() - 2)
        x = input.float()
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float32, device=x.device)
        total = all_reduce(torch.cat([x.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        centred = x - mean.reshape(shape)
        var = all_reduce(centred.pow(2).sum(dims)) / n
        if (
            self.track_running_stats
            and self.running_mean is not None
            and self.running_var is not None
            and self.num_batches_tracked is not None
        ):
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / float(self.num_batches_tracked)
                else:
                    factor = float(self.momentum)
                n_value = float(n)
                unbiased = var.detach() * (n_value / max(n_value - 1.0, 1.0))
                self.running_mean.mul_(1.0 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1.0 - factor).add_(unbiased, alpha=factor)
        y = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.float().reshape(shape) + self.bias.float().reshape(shape)
        return y.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device | None = None) -> nn.Module:
    """Every batch-norm layer of ``module`` synchronised over the processes.

    On CUDA (``device.type == "cuda"``) this is :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`;
    elsewhere each ``BatchNorm*d`` becomes a :class:`ProcessGroupBatchNorm` with the same parameters,
    buffers and settings. Containers are changed in place (like torch's converter); the converted
    module is returned (a new object when ``module`` itself is a batch-norm layer).
    """
    if device is not None and torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, ProcessGroupBatchNorm
    ):
        out = ProcessGroupBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        out.to(next(iter(module.buffers()), torch.zeros(())).device)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        if module.track_running_stats:
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module
