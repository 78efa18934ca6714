"""Files of trained networks in the features package (encoder files of ``train-encoder``,
``distance.pt`` of the 3D-distance pre-training): one torch payload dict per file, written
atomically and read back with errors that name the file and the command that makes it.

A payload holds plain values only (dicts, lists, numbers, strings: :func:`plain`) and tensors on
the CPU (:func:`cpu_state`), so it loads with ``torch.load(weights_only=True)``; its ``format``
entry says which kind of file it is.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cortexgraph.errors import CortexgraphError
from cortexgraph.outputs import atomic_path

__all__ = ["cpu_state", "write_payload", "read_payload"]


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict, detached and on the CPU."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def write_payload(path: str | Path, payload: dict) -> Path:
    """``torch.save`` of ``payload`` to ``path``, atomically (through a file object, so the archive
    names no file)."""
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
    return Path(path)


def read_payload(
    path: str | Path, file_format: str, *, default_name: str, what: str, fix: str
) -> dict:
    """The payload of a file written by :func:`write_payload` with ``format == file_format``.

    Parameters
    ----------
    path : the file, or a folder holding ``default_name``.
    what : the kind of file, for the messages (``"encoder file"``).
    fix : how to make one (``"run `cortexgraph train-encoder` first"``).

    Raises CortexgraphError naming the file when it is missing, unreadable or of another format.
    """
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise CortexgraphError(f"{what} not found", file=str(path), fix=fix)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CortexgraphError(f"cannot read the {what} ({exc})", file=str(path), fix=fix) from None
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise CortexgraphError(f"not a cortexgraph {what}", file=str(path), fix=fix)
    return payload
