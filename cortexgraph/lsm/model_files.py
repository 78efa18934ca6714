"""Model files of local segmentation models: weights with their configuration and metadata
(``.pt``), and the training ROIs a model's prediction ROIs are built from (``.npz``). Both are
written atomically (:func:`cortexgraph.outputs.atomic_path`); which files exist and when they are
reused is decided in :mod:`cortexgraph.lsm.stages` (layout: :mod:`cortexgraph.lsm.layout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm.config import config_from_dict, config_to_dict
from cortexgraph.lsm.networks import LSMConfig, build_lsm
from cortexgraph.outputs import atomic_path


def save_model(path: Path, net, config: LSMConfig, meta: dict) -> Path:
    """Write a model file (weights, configuration, metadata) atomically."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"config": config_to_dict(config), "state_dict": state, "meta": meta}, tmp)
    return Path(path)


def load_model(path: Path, device=None):
    """Read a model file: ``(net, config, meta)`` with the net in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CortexgraphError(
            "model not found", file=path, fix="train it first (`cortexgraph lsm train` / `chain`)"
        )
    record = torch.load(path, map_location=device or "cpu", weights_only=True)
    config = config_from_dict(record["config"])
    net = build_lsm(config)
    net.load_state_dict(record["state_dict"])
    if device is not None:
        net.to(device)
    return net.eval(), config, dict(record.get("meta", {}))


def save_rois(path: Path, rois: Mapping[int, np.ndarray], spacing_um: float) -> Path:
    """Write the training ROIs of a model (section -> bool image at the model's output spacing)
    atomically to an ``.npz`` file (arrays ``s0422``..., and ``spacing_um``)."""
    # Any: the arrays go in as keyword arguments beside savez_compressed's own (allow_pickle)
    arrays: dict[str, Any] = {f"s{int(k):04d}": np.asarray(v, dtype=bool) for k, v in rois.items()}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, spacing_um=np.float64(spacing_um), **arrays)
    return Path(path)


def load_rois(path: Path) -> tuple[dict[int, np.ndarray], float]:
    """Inverse of :func:`save_rois`: ``({section: roi}, spacing_um)``."""
    with np.load(path) as data:
        spacing = float(data["spacing_um"])
        rois = {int(k[1:]): data[k].astype(bool) for k in data.files if k != "spacing_um"}
    return rois, spacing
