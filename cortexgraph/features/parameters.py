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

from dataclasses import dataclass, replace
from typing import Any

from cortexgraph.derivatives.parameters import (
    SEED,
    Rule,
    check_fields,
    check_preset_number,
    field_errors,
    integers,
    numbers,
    one_of,
    overrides_of,
    texts,
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
        encoder = texts('an encoder name, or "none" (the preset for the image spacing)')
        encoder.or_none().check(self, bad, "encoder")
        integers(2).check(self, bad, "test_every")
        _below_test_every(self.test_every).check(self, bad, "test_offset")


def _below_test_every(test_every: int) -> Rule:
    """The rule of ``test_offset``: a section position below ``test_every``."""
    return integers(0, test_every - 1, f"an integer in 0..{test_every - 1} (below test_every)")


#: ``method`` of train-encoder
METHODS = ("scl", "distance")
#: ``branch`` of a distance pre-training: the Siamese branch is the encoder of an encoder preset,
#: or the E_HR of an LSM (defined here, where reading a parameters file does not import torch;
#: :mod:`cortexgraph.features.distance` has it and :data:`DISTANCES` from here)
BRANCHES = ("features", "lsm-hr")
#: ``distance``: the ground-truth distance of a pair, straight in 3D or along the midsurface
DISTANCES = ("euclidean", "geodesic")
#: ``lsm_preset``: :data:`cortexgraph.lsm.config.PRESETS`
LSM_PRESETS = ("auto", "full", "small", "phantom", "tiny")
#: the ranges of the settings of a distance pre-training: the fields of
#: :class:`~cortexgraph.features.distance.DistanceSettings` but ``distance`` (its
#: ``__post_init__`` checks them), which train-encoder has as ``distance_<field>``
DISTANCE_RULES: tuple[tuple[tuple[str, ...], Rule], ...] = (
    (("epochs", "patches_per_brain", "lr_halve_every", "batch_pairs", "embed_dim"), integers(1)),
    (("test_every",), integers(2)),
    (("pairs_per_patch", "lr", "alpha"), numbers(0, low_open=True, words="a number > 0")),
    (("momentum",), numbers(0, 1)),
    (("l2",), numbers(0, words="a number >= 0")),
    (("max_oblique_deg",), numbers(0, 90)),
    (("degree_exponent",), numbers(1, low_open=True, words="a number > 1")),
)
#: the train-encoder fields of the distance settings: ``distance_<field>`` -> field
DISTANCE_FIELDS = {f"distance_{name}": name for names, _ in DISTANCE_RULES for name in names}
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
        check_fields(self, bad, _RULES)
        for name, value in overrides_of(self).items():
            if value is not None:  # ce_epochs = false: the SCL + linear budget
                _check_override(name, value, bad)
        offset, every = self.test_offset, self.test_every  # type: ignore[attr-defined]
        if offset is not None and every is not None:
            _below_test_every(every).check(self, bad, "test_offset")

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
        values = {field: getattr(self, name) for name, field in DISTANCE_FIELDS.items()}
        return {"distance": self.distance, **values}


def _check_override(name: str, value: object, bad) -> None:
    """The range of an EncoderPreset override."""
    if name in ("encoder",):
        if not (isinstance(value, str) and value):
            raise bad(name, "an encoder name (e.g. resnet18, base)")
    elif name == "encoder_kwargs":
        if not isinstance(value, dict):
            raise bad(name, 'a table (e.g. {widths = [16, 32], padding = "same"})')
    elif not isinstance(value, bool):  # recompute_batch_norm: either
        check_preset_number(name, value, bad, _ZERO_ALLOWED)


#: the ranges of :class:`TrainEncoderParameters`'s own fields
#: (:func:`~cortexgraph.derivatives.parameters.check_fields`)
_RULES = (
    ("preset", one_of(("auto", *PRESETS))),
    ("method", one_of(METHODS)),
    ("branch", one_of(BRANCHES)),
    ("distance", one_of(DISTANCES)),
    ("lsm_preset", one_of(LSM_PRESETS)),
    ("seed", SEED),
    ("transfer", texts('a brain id, "auto" (the preset\'s) or "none"')),
    ("init", texts('the name of a distance pre-training, or "none"').or_none()),
    ("tsne", Rule(lambda value: isinstance(value, bool), "true or false")),
    *((tuple(f"distance_{name}" for name in names), rule) for names, rule in DISTANCE_RULES),
)
