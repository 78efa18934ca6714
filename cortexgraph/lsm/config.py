"""Model configuration of a local segmentation model for a brain's images (Schiffer et al. 2021,
NeuroImage, Sect. 2.5; Schiffer, PhD thesis, Sect. 5.1.4): preset, architecture, patch spacings
and the training schedule scaled to the number of iterations, and its dict form for model files and
stage records.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.lsm.networks import ARCHITECTURES, LSMConfig, lsm_config, preset_for_spacing
from cortexgraph.lsm.networks import PRESETS as NETWORK_PRESETS
from cortexgraph.lsm.schedule import scaled_milestones

log = logging.getLogger(__name__)

PRESETS = ("auto", *NETWORK_PRESETS)
"""Model size presets of :func:`make_config`: ``auto`` or a preset of :func:`~cortexgraph.lsm.networks.lsm_config`."""


def make_config(
    arch: str,
    image_spacing_um: float,
    *,
    preset: str = "auto",
    iterations: int | None = None,
    **overrides,
) -> LSMConfig:
    """The model configuration for a brain's images.

    Parameters
    ----------
    arch : ``"hr"``, ``"lr"`` or ``"ms"``.
    image_spacing_um : level-0 spacing of the section images.
    preset : ``"auto"`` (:func:`~cortexgraph.lsm.networks.preset_for_spacing`: ``full`` for 2 um
        scans, ``small`` up to 8 um, ``phantom`` scaled to coarser images) or a preset name.
    iterations : training iterations; the learning-rate milestones are scaled with them
        (3000 iterations: 1000, 1400, ..., 2600).
    overrides : further :class:`~cortexgraph.lsm.networks.LSMConfig` fields.
    """
    if arch not in ARCHITECTURES:
        raise CortexgraphError(f"unknown architecture {arch!r}", fix="use hr, lr or ms")
    if preset not in PRESETS:
        raise ParameterError(
            f"unknown preset {preset!r}", fix=f"use one of {', '.join(PRESETS)} (--preset)"
        )
    if preset == "auto":
        preset, extra = preset_for_spacing(image_spacing_um)
    else:
        extra = {"spacing_um": float(image_spacing_um)} if preset in ("phantom", "tiny") else {}
    extra.update(overrides)
    if iterations is not None:
        extra["iterations"] = int(iterations)
        extra["lr_milestones"] = scaled_milestones(int(iterations))
    try:
        config = lsm_config(preset, arch, **extra)
    except (TypeError, ValueError) as exc:  # an override that is not a field, or out of range
        raise ParameterError(f"bad model configuration: {exc}", fix="check the overrides") from None
    if config.hr_spacing_um < image_spacing_um * (1 - 1e-6) and config.uses_hr:
        log.warning(
            "HR patches at %.3g um are finer than the images (%.3g um): they are interpolated",
            config.hr_spacing_um,
            image_spacing_um,
        )
    return config


def config_to_dict(config: LSMConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_dict(values: dict) -> LSMConfig:
    fields = LSMConfig.__dataclass_fields__
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            continue
        clean[key] = tuple(value) if isinstance(value, list) else value
    return LSMConfig(**clean)
