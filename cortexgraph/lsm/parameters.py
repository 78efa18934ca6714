"""Parameters of ``lsm chain``, ``lsm gsm`` and ``lsm train``: one frozen dataclass, validated on
creation (docs/conventions.md, "Parameters").

The run's own settings (preset, iterations, seed, chain planning, prediction tiling) are fields of
their own; every field of the model configuration :class:`~cortexgraph.lsm.networks.LSMConfig` but
``arch`` (``--arch``), ``iterations`` (a field of its own: it also scales the learning-rate
milestones), ``n_classes`` and ``in_channels`` (fixed by the method) is an override of the preset's
value (``"none"``: the preset's; ``output_patch_um = false``: the full valid output). The stages
record what they resolve: the plan its settings, each model's training stage the whole configuration
(``config`` of its record), prediction the tiling.

``lsm predict`` has the prediction fields alone (:class:`LSMPredictParameters`, spelled as in
:class:`LSMParameters`, so that the lines of a chain's file can be copied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from cortexgraph.derivatives.parameters import (
    field_errors,
    is_integer,
    overrides_of,
    with_overrides,
)
from cortexgraph.errors import ParameterError
from cortexgraph.lsm.networks import LSMConfig
from cortexgraph.lsm.schedule import MAX_INTERVAL_MM

#: ``preset``: the model size presets of :func:`cortexgraph.lsm.config.make_config`
PRESET_NAMES = ("auto", "full", "small", "phantom", "tiny")
#: LSMConfig fields that are not parameters of a run
NOT_OVERRIDES = ("arch", "iterations", "n_classes", "in_channels")
#: overrides that may be 0 (all other numbers must be > 0)
_ZERO_ALLOWED = ("weight_decay", "rotation_deg", "momentum")


@with_overrides(LSMConfig, exclude=NOT_OVERRIDES)
@dataclass(frozen=True)
class LSMParameters:
    """Every parameter of a model run of ``cortexgraph lsm chain|gsm|train`` (the brain, area,
    architecture, run name, sections, extent, ``--device`` and the stage options are not in it).

    preset : model sizes: auto (from the image spacing), full, small, phantom or tiny.
    iterations : training iterations; the learning-rate milestones scale with them; ``None``: the
        preset's (published: 3000).
    seed : run seed (each model derives its own from it).
    step : chain, gsm: every ``step``-th annotated section of the area is a training section (2: the
        published protocol).
    max_interval_mm : chain, train: longest interval between the two training sections of a local
        model (2.4 mm, as published); ``None``: no limit.
    allow_long_intervals : chain, train: plan longer intervals anyway (with a warning).
    init_hr : a distance pre-training whose branch initialises the high-resolution encoder of every
        model.
    tile_px : output tile edge of prediction (px).
    predict_batch_size : tiles per forward pass in prediction (option --batch-size; the training
        batch is ``batch_size``).
    """

    preset: str = "auto"
    iterations: int | None = None
    seed: int = 0
    step: int = 2
    max_interval_mm: float | None = MAX_INTERVAL_MM
    allow_long_intervals: bool = False
    init_hr: str | None = None
    tile_px: int = 64
    predict_batch_size: int = 8

    def __post_init__(self) -> None:
        overrides = overrides_of(self)
        bad = field_errors(
            self, "lsm", lambda name: "" if name in overrides else f" (option {_option(name)})"
        )
        if self.preset not in PRESET_NAMES:
            raise bad("preset", f"one of {', '.join(PRESET_NAMES)}")
        ranges = (
            ("tile_px", 1, 4096), ("predict_batch_size", 1, 4096), ("seed", 0, 2**32 - 1),
            ("step", 1, 10**6),
        )  # fmt: skip
        for name, low, high in ranges:
            value = getattr(self, name)
            if not is_integer(value) or not low <= value <= high:
                raise bad(name, f"an integer in {low}..{high}")
        if self.iterations is not None and (
            not is_integer(self.iterations) or not 1 <= self.iterations <= 10**7
        ):
            raise bad("iterations", 'an integer in 1..10000000, or "none" (the preset\'s)')
        if self.max_interval_mm is not None and not (
            _number(self.max_interval_mm) and self.max_interval_mm > 0
        ):
            raise bad("max_interval_mm", 'a finite number > 0, or "none" (no limit)')
        for name, value in overrides.items():
            if value is not None:  # NO_VALUE (false): no value, where the preset allows it
                _check_override(name, value, bad)


@dataclass(frozen=True)
class LSMPredictParameters:
    """Every parameter of ``cortexgraph lsm predict`` (the brain, area, runs, ``--device`` and the
    stage options are not in it); the prediction stage records both.

    tile_px : output tile edge (px).
    predict_batch_size : tiles per forward pass (option --batch-size).
    """

    tile_px: int = 64
    predict_batch_size: int = 8

    def __post_init__(self) -> None:
        for name in ("tile_px", "predict_batch_size"):
            value = getattr(self, name)
            if not is_integer(value) or not 1 <= value <= 4096:
                raise ParameterError(
                    f"lsm predict parameter {name} = {value!r}: must be an integer in 1..4096",
                    fix=f"give {name} (option {_option(name)}) an integer in 1..4096",
                )


def _check_override(name: str, value: object, bad) -> None:
    """Ranges of an LSMConfig override; the geometry (patch sizes that fit the network) is checked
    when the configuration is made for a brain's images (:func:`cortexgraph.lsm.config.make_config`)."""
    if name == "upconv_padding":
        if value not in ("same", "valid"):
            raise bad(name, "same or valid")
    elif name in ("alpha_range", "beta_range", "gamma_range"):
        low, high = cast(tuple[float, float], value)  # a pair (read as tuple[float, float])
        if not (_number(low) and _number(high) and low <= high):
            raise bad(name, "two finite numbers [low, high] with low <= high")
        if name != "beta_range" and low <= 0:
            raise bad(name, "two numbers [low, high] with 0 < low <= high")
    elif isinstance(value, tuple):
        if not value or not all(is_integer(v) and v >= 1 for v in value):
            raise bad(name, "a non-empty list of integers >= 1")
    elif is_integer(value):
        if value < 1:  # type: ignore[operator]
            raise bad(name, "an integer >= 1")
    elif _number(value):
        if name == "momentum" and not 0 <= value < 1:  # type: ignore[operator]
            raise bad(name, "a number in [0, 1)")
        if value < 0 or (value == 0 and name not in _ZERO_ALLOWED):  # type: ignore[operator]
            rule = ">= 0" if name in _ZERO_ALLOWED else "> 0"
            raise bad(name, f"a finite number {rule}")
    else:
        raise bad(name, "a finite number")


def _option(field: str) -> str:
    """The command-line option of one of LSMParameters's own fields."""
    return "--batch-size" if field == "predict_batch_size" else "--" + field.replace("_", "-")




def _number(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )
