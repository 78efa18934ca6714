"""Training checkpoints: model, optimizer, scaler, epoch, history and random-number-generator state.

A checkpoint is one ``torch.save`` file written atomically (temporary file + rename through
:func:`cortexgraph.outputs.atomic_path`), so a run killed while saving leaves the previous checkpoint
intact. Everything stored is a tensor or a plain Python value, so files load with
``torch.load(weights_only=True)`` (no pickled code is executed on load).

Layout of a checkpoint folder: ``last.pt`` (the newest, rewritten every save) and, when asked,
``epoch_XXXX.pt`` snapshots.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cortexgraph.errors import CortexgraphError
from cortexgraph.outputs import atomic_path
from cortexgraph.training.runtime import unwrap_model

__all__ = [
    "plain",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "get_rng_state",
    "set_rng_state",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = 1
LAST_NAME = "last.pt"


def plain(value: Any) -> Any:
    """Nested values for ``torch.save`` files read with ``weights_only=True``: tuples -> lists, dict
    keys -> strings; other values as they are."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def get_rng_state() -> dict[str, Any]:
    """Python, numpy (global legacy generator), torch CPU and CUDA generator states, as tensors."""
    np_state = np.random.get_state(legacy=True)  # noqa: NPY002 - the global generator is what seeding sets
    assert isinstance(np_state, tuple)  # the global generator is an MT19937: the legacy tuple
    state: dict[str, Any] = {
        "python": _python_state_to_tensor(random.getstate()),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_cached_gaussian": float(np_state[4]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`get_rng_state` (CUDA states only if the GPU count matches)."""
    random.setstate(_python_state_from_tensor(state["python"]))
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            int(state["numpy_pos"]),
            int(state["numpy_has_gauss"]),
            float(state["numpy_cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _python_state_to_tensor(state: tuple) -> torch.Tensor:
    version, internal, gauss = state
    if version != 3:
        raise ValueError(f"unsupported Python random state version {version}")
    gauss_flag = 0 if gauss is None else 1
    gauss_bits = 0 if gauss is None else int(np.float64(gauss).view(np.int64))
    return torch.tensor([*internal, gauss_flag, gauss_bits], dtype=torch.int64)


def _python_state_from_tensor(t: torch.Tensor) -> tuple:
    values = [int(v) for v in t.tolist()]
    internal, gauss_flag, gauss_bits = tuple(values[:-2]), values[-2], values[-1]
    gauss = float(np.int64(gauss_bits).view(np.float64)) if gauss_flag else None
    return (3, internal, gauss)


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : path-like
        Target file (``.pt``). A folder path gets ``last.pt`` appended.
    model : torch.nn.Module
        Saved unwrapped (DDP / compiled wrappers removed) so it loads into a bare model.
    optimizer : torch.optim.Optimizer, optional
    epoch : int
        Number of completed epochs.
    scaler : torch.amp.GradScaler, optional
    extra : dict, optional
        Plain values (history, configuration); must be tensors / numbers / strings / lists / dicts.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / LAST_NAME
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "model": unwrap_model(model).state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "rng": get_rng_state(),
        "extra": {} if extra is None else extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scaler: torch.amp.GradScaler | None = None,
    map_location: str | torch.device | None = "cpu",
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` / ``optimizer`` / ``scaler`` and restore the RNG states.

    Parameters
    ----------
    path : path-like
        A checkpoint file, or a folder (its ``last.pt`` is used).
    model, optimizer, scaler : optional
        Objects to restore in place (skipped when None).
    map_location : device, optional
        Passed to ``torch.load``.
    restore_rng : bool
        Restore Python / numpy / torch RNG states so a resumed run continues the same random stream.

    Returns
    -------
    dict
        The raw payload (``epoch``, ``extra``, state dicts, ...).
    """
    path = Path(path)
    if path.is_dir():
        path = path / LAST_NAME
    if not path.is_file():
        raise CortexgraphError(
            "checkpoint not found", file=str(path), fix="train first or point to an existing .pt"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise CortexgraphError(
            f"cannot read checkpoint ({exc})", file=str(path), fix="delete it and retrain"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CortexgraphError(
            "not a cortexgraph checkpoint (unknown format)",
            file=str(path),
            fix="use a checkpoint written by this version of cortexgraph",
        )
    if model is not None:
        unwrap_model(model).load_state_dict(payload["model"])
    if optimizer is not None and payload["optimizer"] is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scaler is not None and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    if restore_rng:
        set_rng_state(payload["rng"])
    return payload


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """``directory/last.pt`` if it exists, else the highest ``epoch_XXXX.pt``, else None."""
    directory = Path(directory)
    last = directory / LAST_NAME
    if last.is_file():
        return last
    snapshots = sorted(directory.glob("epoch_*.pt"))
    return snapshots[-1] if snapshots else None
