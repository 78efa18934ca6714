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

from dataclasses import dataclass
from typing import cast

from cortexgraph.derivatives.parameters import (
    SEED,
    check_fields,
    check_preset_number,
    field_errors,
    integers,
    is_finite_number,
    is_integer,
    numbers,
    one_of,
    overrides_of,
    with_overrides,
)
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
        check_fields(self, bad, _RULES)
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
        bad = field_errors(self, "lsm predict", lambda name: f" (option {_option(name)})")
        check_fields(self, bad, _PREDICT_RULES)


def _check_override(name: str, value: object, bad) -> None:
    """Ranges of an LSMConfig override; the geometry (patch sizes that fit the network) is checked
    when the configuration is made for a brain's images (:func:`cortexgraph.lsm.config.make_config`)."""
    if name == "upconv_padding":
        if value not in ("same", "valid"):
            raise bad(name, "same or valid")
    elif name in ("alpha_range", "beta_range", "gamma_range"):
        low, high = cast(tuple[float, float], value)  # a pair (read as tuple[float, float])
        if not (is_finite_number(low) and is_finite_number(high) and low <= high):
            raise bad(name, "two finite numbers [low, high] with low <= high")
        if name != "beta_range" and low <= 0:
            raise bad(name, "two numbers [low, high] with 0 < low <= high")
    elif isinstance(value, tuple):
        if not value or not all(is_integer(v) and v >= 1 for v in value):
            raise bad(name, "a non-empty list of integers >= 1")
    else:
        check_preset_number(name, value, bad, _ZERO_ALLOWED)


def _option(field: str) -> str:
    """The command-line option of one of LSMParameters's own fields."""
    return "--batch-size" if field == "predict_batch_size" else "--" + field.replace("_", "-")


#: the ranges of :class:`LSMPredictParameters` (checked by
#: :func:`~cortexgraph.derivatives.parameters.check_fields`)
_PREDICT_RULES = ((("tile_px", "predict_batch_size"), integers(1, 4096)),)
#: the ranges of :class:`LSMParameters`'s own fields
_RULES = (
    ("preset", one_of(PRESET_NAMES)),
    *_PREDICT_RULES,
    ("seed", SEED),
    ("step", integers(1, 10**6)),
    (
        "iterations",
        integers(1, 10**7).or_none('an integer in 1..10000000, or "none" (the preset\'s)'),
    ),
    (
        "max_interval_mm",
        numbers(0, low_open=True).or_none('a finite number > 0, or "none" (no limit)'),
    ),
)
