"""Parameters of ``features`` and ``train-encoder``: one frozen dataclass each, validated on
creation (docs/conventions.md, "Parameters").

``features``: the stages record them: ``encoder`` in ``features@<encoder>`` (its name is part of
the stage id), ``test_every`` and ``test_offset`` in ``node-labels``.

``train-encoder``: the run's own settings are fields of their own (preset, seed, transfer brain,
method, distance pre-training); every field of the encoder preset
(:class:`~cortexgraph.features.presets.EncoderPreset`) but its name and ``transfer_brain`` (the own
field ``transfer``) is an override of the preset's value (``"none"``: the preset's; ``ce_epochs =
false``: the SCL + linear budget). :meth:`TrainEncoderParameters.preset_spec` is the resolved
preset, which the encoder's stage record holds (``parameters.preset`` of ``train-encoder@NAME``):
the same values reuse the encoder, a changed one retrains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from cortexgraph.derivatives.parameters import (
    field_errors,
    is_integer,
    overrides_of,
    with_overrides,
)
from cortexgraph.errors import ParameterError
from cortexgraph.features.presets import PRESETS, EncoderPreset, get_preset, preset_for_spacing


@dataclass(frozen=True)
class FeaturesParameters:
    """Every parameter of ``cortexgraph features`` (``--device`` and mixed precision change the CY
    features only by floating-point rounding: they are not parameters).

    encoder : the encoder whose CY features to compute (derivatives/cortexgraph/encoders/<name>/);
        ``None``: the preset for the brain's image spacing.
    test_every, test_offset : the node-labels split: every ``test_every``-th annotated section
        (position ``test_offset``, 0-based) is a test section. Keep them equal to the encoder
        preset's (5 and 4) so that the GNN's test sections were not training sections of the
        encoder.
    """

    encoder: str | None = None
    test_every: int = 5
    test_offset: int = 4

    def __post_init__(self) -> None:
        bad = field_errors(self, "features")
        if isinstance(self.encoder, str) and not self.encoder:
            raise bad("encoder", 'an encoder name, or "none" (the preset for the image spacing)')
        if not is_integer(self.test_every) or self.test_every < 2:
            raise bad("test_every", "an integer >= 2")
        if not is_integer(self.test_offset) or not 0 <= self.test_offset < self.test_every:
            raise bad("test_offset", f"an integer in 0..{self.test_every - 1} (below test_every)")




#: ``method`` of train-encoder
METHODS = ("scl", "distance")
#: ``branch`` and ``distance`` of a distance pre-training (:data:`cortexgraph.features.distance.BRANCHES`,
#: ``DISTANCES``; repeated so that reading a parameters file does not import torch; a test keeps
#: them equal)
BRANCHES = ("features", "lsm-hr")
DISTANCES = ("euclidean", "geodesic")
#: ``lsm_preset``: :data:`cortexgraph.lsm.config.PRESETS`
LSM_PRESETS = ("auto", "full", "small", "phantom", "tiny")
#: the ``distance_*`` fields -> (field of :class:`~cortexgraph.features.distance.DistanceSettings`,
#: kind, low, high); kind ``int``: an integer in [low, high]; ``open``: a number in (low, high];
#: ``closed``: a number in [low, high]
DISTANCE_FIELDS: dict[str, tuple[str, str, float, float]] = {
    "distance_epochs": ("epochs", "int", 1, math.inf),
    "distance_patches_per_brain": ("patches_per_brain", "int", 1, math.inf),
    "distance_pairs_per_patch": ("pairs_per_patch", "open", 0, math.inf),
    "distance_lr": ("lr", "open", 0, math.inf),
    "distance_lr_halve_every": ("lr_halve_every", "int", 1, math.inf),
    "distance_momentum": ("momentum", "closed", 0, 1),
    "distance_batch_pairs": ("batch_pairs", "int", 1, math.inf),
    "distance_alpha": ("alpha", "open", 0, math.inf),
    "distance_l2": ("l2", "closed", 0, math.inf),
    "distance_embed_dim": ("embed_dim", "int", 1, math.inf),
    "distance_test_every": ("test_every", "int", 2, math.inf),
    "distance_max_oblique_deg": ("max_oblique_deg", "closed", 0, 90),
    "distance_degree_exponent": ("degree_exponent", "open", 1, math.inf),
}
#: EncoderPreset fields that may be 0 (all other numbers must be > 0)
_ZERO_ALLOWED = ("weight_decay", "momentum", "max_translation_um", "test_offset")


@with_overrides(EncoderPreset, exclude=("name", "transfer_brain"), presets=PRESETS)
@dataclass(frozen=True)
class TrainEncoderParameters:
    """Every parameter of ``cortexgraph train-encoder`` (the encoder name, ``--device``, mixed
    precision, ``--loader-workers`` and the stage options are not in it: they do not change the
    encoder beyond floating-point rounding).

    preset : full, full-base, phantom-full, demo, tiny, or auto (by the image spacing of the
        cohort's first brain): the values of every field below that is "none".
    seed : seed of weights, resampling and augmentation.
    transfer : the brain held out entirely; auto: the preset's (B07); none: no brain. GNN runs that
        use this encoder must hold out the same brain.
    method : scl (supervised contrastive + linear evaluation, and the CE baseline) or distance
        (self-supervised Siamese pre-training on 3D distances between patches).
    init : a distance pre-training whose weights start the SCL and CE encoders; ``None``: random
        weights.
    tsne : add a t-SNE panel to embedding.png.
    distance : method distance: euclidean (3D, in the reconstruction) or geodesic (along the
        midsurface, as the publication).
    branch : method distance: features (the preset's encoder) or lsm-hr (the high-resolution
        encoder of the local models).
    lsm_preset : method distance, branch lsm-hr: the LSM model preset.
    distance_epochs : method distance: epochs (16, as published).
    distance_lr, distance_lr_halve_every, distance_momentum : method distance: SGD rate (0.01),
        halved every distance_lr_halve_every epochs (3), momentum (0: plain SGD).
    distance_batch_pairs : method distance: pairs per step.
    distance_patches_per_brain : method distance: training patches per brain (option
        --distance-patches).
    distance_pairs_per_patch : method distance: pairs per patch.
    distance_alpha : method distance: weight of the coordinate loss.
    distance_l2 : method distance: the L2 penalty on all but the final dense layers.
    distance_embed_dim : method distance: size of the embedding.
    distance_test_every : method distance: every distance_test_every-th section holds test patches.
    distance_max_oblique_deg : method distance: cortex cut more obliquely than this is not sampled.
    distance_degree_exponent : method distance: exponent of the power law of pairs per patch.
    """

    preset: str = "auto"
    seed: int = 0
    transfer: str = "auto"
    method: str = "scl"
    init: str | None = None
    tsne: bool = False
    distance: str = "euclidean"
    branch: str = "features"
    lsm_preset: str = "auto"
    distance_epochs: int = 16
    distance_patches_per_brain: int = 1500
    distance_pairs_per_patch: float = 1.0
    distance_lr: float = 0.01
    distance_lr_halve_every: int = 3
    distance_momentum: float = 0.0
    distance_batch_pairs: int = 32
    distance_alpha: float = 10.0
    distance_l2: float = 0.001
    distance_embed_dim: int = 32
    distance_test_every: int = 12
    distance_max_oblique_deg: float = 45.0
    distance_degree_exponent: float = 2.5

    def __post_init__(self) -> None:
        bad = field_errors(self, "train-encoder")
        for name, choices in (
            ("preset", ("auto", *PRESETS)), ("method", METHODS), ("branch", BRANCHES),
            ("distance", DISTANCES), ("lsm_preset", LSM_PRESETS),
        ):  # fmt: skip
            if getattr(self, name) not in choices:
                raise bad(name, f"one of {', '.join(choices)}")
        if not is_integer(self.seed) or not 0 <= self.seed < 2**32:
            raise bad("seed", "an integer in 0..4294967295")
        if not isinstance(self.transfer, str) or not self.transfer:
            raise bad("transfer", 'a brain id, "auto" (the preset\'s) or "none"')
        if self.init is not None and not (isinstance(self.init, str) and self.init):
            raise bad("init", 'the name of a distance pre-training, or "none"')
        if not isinstance(self.tsne, bool):
            raise bad("tsne", "true or false")
        for name, (_, kind, low, high) in DISTANCE_FIELDS.items():
            value = getattr(self, name)
            if kind == "int":
                if not is_integer(value) or not low <= value <= high:
                    raise bad(name, f"an integer >= {low}")
            elif not _number(value) or not (low < value if kind == "open" else low <= value):
                raise bad(name, f"a number {'>' if kind == 'open' else '>='} {low}")
            elif value > high:
                raise bad(name, f"a number <= {high}")
        for name, value in overrides_of(self).items():
            if value is not None:  # ce_epochs = false: the SCL + linear budget
                _check_override(name, value, bad)
        offset, every = self.test_offset, self.test_every  # type: ignore[attr-defined]
        if offset is not None and every is not None and not offset < every:
            raise bad("test_offset", f"an integer in 0..{every - 1} (below test_every)")

    def preset_spec(self, image_spacing_um: float) -> EncoderPreset:
        """The preset (``auto``: the one made for ``image_spacing_um``, the cohort's first brain's)
        with the overrides that are set and the transfer brain: what ``train-encoder`` trains and
        records."""
        auto = self.preset == "auto"
        base = preset_for_spacing(image_spacing_um) if auto else get_preset(self.preset)
        values: dict[str, Any] = overrides_of(self)
        if self.transfer != "auto":
            values["transfer_brain"] = "" if self.transfer.lower() == "none" else self.transfer
        spec = replace(base, **values)
        if not 0 <= spec.test_offset < spec.test_every:
            raise ParameterError(
                f"train-encoder parameter test_offset = {spec.test_offset} with test_every = "
                f"{spec.test_every} (preset {spec.name}): must be below test_every",
                fix=f"give test_offset an integer in 0..{spec.test_every - 1}",
            )
        return spec

    def distance_settings(self) -> dict[str, Any]:
        """The fields of :class:`~cortexgraph.features.distance.DistanceSettings` (method distance)."""
        values = {field: getattr(self, name) for name, (field, *_) in DISTANCE_FIELDS.items()}
        return {"distance": self.distance, **values}


def _check_override(name: str, value: object, bad) -> None:
    """The range of an EncoderPreset override."""
    if name in ("encoder",):
        if not (isinstance(value, str) and value):
            raise bad(name, "an encoder name (e.g. resnet18, base)")
    elif name == "encoder_kwargs":
        if not isinstance(value, dict):
            raise bad(name, 'a table (e.g. {widths = [16, 32], padding = "same"})')
    elif isinstance(value, bool):
        return  # recompute_batch_norm
    elif is_integer(value):
        if value < (0 if name in _ZERO_ALLOWED else 1):  # type: ignore[operator]
            raise bad(name, f"an integer >= {0 if name in _ZERO_ALLOWED else 1}")
    elif _number(value):
        if name == "momentum" and not 0 <= value < 1:  # type: ignore[operator]
            raise bad(name, "a number in [0, 1)")
        if value < 0 or (value == 0 and name not in _ZERO_ALLOWED):  # type: ignore[operator]
            raise bad(name, f"a finite number {'>= 0' if name in _ZERO_ALLOWED else '> 0'}")
    else:
        raise bad(name, "a finite number")


def _number(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )
