"""Runtime helpers shared by the learners: seeding, device choice, AMP and data-parallel training.

Every helper degrades to a no-op where its capability is missing: AMP on CPU, DDP without
``torchrun`` (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``).
Method: Schiffer, PhD thesis, Sect. 7.1.3 (automatic mixed precision, data parallel over GPUs) and
Sect. 6.1.4 (features gathered across GPUs before the contrastive loss).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
from collections.abc import Iterator
from typing import cast

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "seed_everything",
    "pick_device",
    "autocast",
    "amp_dtype",
    "make_grad_scaler",
    "is_distributed",
    "init_distributed_from_env",
    "shutdown_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "all_reduce_sum",
    "all_gather_with_grad",
    "unwrap_model",
]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and all CUDA devices).

    Parameters
    ----------
    seed : int
    deterministic : bool
        Also ask torch for deterministic algorithms (``warn_only``) and disable cuDNN benchmarking.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the legacy global generator on purpose
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def check_device(device: str | torch.device | None) -> None:
    """Refuse a device this machine cannot use (:class:`~cortexgraph.errors.ParameterError`, exit
    status 2): an unknown name, CUDA without a GPU torch can use, ``cuda:N`` beyond the devices
    there are. ``None`` and ``"auto"`` pass."""
    from cortexgraph.errors import ParameterError

    if device is None or (isinstance(device, str) and device == "auto"):
        return
    text = str(device)
    try:
        chosen = torch.device(text)
    except (RuntimeError, ValueError) as exc:
        raise ParameterError(
            f"--device {text!r} is not a torch device ({exc})",
            fix="use --device auto, cpu, cuda or cuda:N",
        ) from None
    if chosen.type == "cpu":
        return
    if chosen.type != "cuda":
        raise ParameterError(
            f"--device {text!r}: cortexgraph runs on CPUs and CUDA GPUs only",
            fix="use --device auto, cpu, cuda or cuda:N",
        )
    if not torch.cuda.is_available():
        raise ParameterError(
            f"--device {text}: torch sees no CUDA device on this machine",
            fix="use --device auto (the CPU here) or cpu, or install a CUDA build of torch on a "
            "machine with a GPU",
        )
    count = torch.cuda.device_count()
    if chosen.index is not None and chosen.index >= count:
        raise ParameterError(
            f"--device {text}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}",
            fix=f"use --device cuda:0..cuda:{count - 1} or auto",
        )


def pick_device(prefer: str | torch.device | None = "auto") -> torch.device:
    """The device to train on: CUDA (this process's local rank under torchrun) when available.

    Parameters
    ----------
    prefer : {"auto", "cpu", "cuda"} or torch.device or None
        ``"auto"``/None: CUDA if available, else CPU. A device this machine cannot use raises
        :class:`~cortexgraph.errors.ParameterError` (:func:`check_device`).
    """
    if isinstance(prefer, torch.device):
        return prefer
    if prefer in (None, "auto"):
        prefer = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(prefer)
    if str(prefer).startswith("cuda"):
        if str(prefer) == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(prefer)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``device``: bfloat16 on GPUs that support it, else float16; None on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Mixed-precision context on CUDA (see :func:`amp_dtype`); a no-op on CPU or when disabled."""
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        yield
        return
    with torch.autocast(device_type="cuda", dtype=dtype):
        yield


def make_grad_scaler(device: torch.device, enabled: bool = True) -> torch.amp.GradScaler:
    """A GradScaler that is active only for float16 autocast on CUDA (bfloat16 needs no scaling).

    A disabled scaler passes ``scale(loss)`` through and ``step(optimizer)`` calls the optimizer.
    """
    active = enabled and amp_dtype(device) == torch.float16
    return torch.amp.GradScaler("cuda" if active else "cpu", enabled=active)


# ---------------------------------------------------------------------------- distributed


def is_distributed() -> bool:
    """True when a torch.distributed process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed_from_env(backend: str | None = None) -> tuple[int, int, int]:
    """Join the process group described by torchrun's environment variables.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``). Without
    them, or with ``WORLD_SIZE=1``, nothing is initialised.

    Parameters
    ----------
    backend : str, optional
        Default: ``"nccl"`` when CUDA is available, else ``"gloo"``.

    Returns
    -------
    (rank, world_size, local_rank) : tuple of int
        ``(0, 1, 0)`` when not distributed.
    """
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size <= 1 or not dist.is_available():
        return 0, 1, 0
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        # Gloo's worker threads must be stopped while the interpreter is still alive: a process
        # that exits with the group still up can abort in finalization ("terminate called
        # without an active exception", SIGABRT), which torchrun reports as a failed rank.
        atexit.register(shutdown_distributed)
    return rank, world_size, local_rank


def shutdown_distributed() -> None:
    """Destroy the default process group if one is up (idempotent; registered at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    """Rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0; the process that writes files and prints progress."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for all processes (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place and return it (unchanged when not distributed)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        n = grad.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return grad[rank * n : (rank + 1) * n]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate equally sized per-process batches along dim 0, keeping the autograd graph.

    Used to compute the supervised contrastive loss over the global batch (features gathered from
    all GPUs). Returns ``tensor`` itself when not distributed.
    """
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside a DistributedDataParallel / DataParallel / compiled wrapper."""
    while True:
        inner = getattr(model, "module", None)
        if isinstance(inner, torch.nn.Module):
            model = inner
        elif hasattr(model, "_orig_mod"):
            model = cast(torch.nn.Module, model._orig_mod)
        else:
            return model
