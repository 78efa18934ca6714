"""Parameters of ``train-gnn``: one frozen dataclass, validated on creation (docs/conventions.md,
"Parameters"); :func:`cortexgraph.gnn.stage.train_gnn` records the settings it resolves from them
(the preset's width, epochs, batch size and rate where these are ``None``) in the run's stage record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cortexgraph.derivatives.parameters import (
    SEED,
    check_fields,
    field_errors,
    integers,
    numbers,
    one_of,
    texts,
)
from cortexgraph.errors import CortexgraphError, ParameterError

#: the node classifiers (:data:`cortexgraph.gnn.models.KINDS`; repeated here so that reading a
#: parameters file does not import torch; a test keeps the two equal)
MODELS = ("gat", "sage", "mlp", "linear")
#: ``preset``: ``auto`` or one of :data:`cortexgraph.gnn.stage.PRESETS`
PRESET_NAMES = ("auto", "seeds", "demo")
SAMPLERS = ("auto", "own", "pyg")


@dataclass(frozen=True)
class TrainGNNParameters:
    """Every parameter of ``cortexgraph train-gnn`` (the run name, ``--device`` and the stage options
    are not parameters: they do not change the model).

    model : gat, sage, mlp or linear.
    layers : GNN / FC layers after the input projections (3, 5, 7 in the method; ignored by linear).
    features : comma-separated subset of cy, pm, co.
    transfer : the brain held out entirely; ``auto``: B07 in a phantom cohort (the thesis's choice),
        required on a lab's cohort; ``none``: train on every brain.
    preset : auto (seeds on a GPU, demo on a CPU), seeds (the method: width 512, 100 epochs) or demo
        (width 64, 6 epochs).
    epochs, hidden, batch_size, lr : override the preset (epochs; width of every layer; output nodes
        per step; LARS learning rate); ``None``: the preset's.
    full_batch : one step per epoch on all graphs at once (small graphs).
    sampler : neighbourhood sampling: auto, own (this package's) or pyg (PyG's NeighborLoader).
    seed : seeds initialisation, dropout, sampling and batch order.
    encoder : the encoder whose CY features to use; ``None``: the only one computed for every
        training brain.
    """

    model: str = "gat"
    layers: int = 3
    features: str = "cy,pm,co"
    transfer: str = "auto"
    preset: str = "auto"
    epochs: int | None = None
    hidden: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    full_batch: bool = False
    sampler: str = "auto"
    seed: int = 0
    encoder: str | None = None

    def __post_init__(self) -> None:
        bad = field_errors(self, "train-gnn")
        if self.model not in MODELS:
            raise ParameterError(
                f"unknown model {self.model!r}", fix=f"use one of {', '.join(MODELS)}"
            )
        check_fields(self, bad, _RULES)
        from cortexgraph.derivatives.graphs import parse_features

        try:
            parse_features(self.features)
        except CortexgraphError:
            raise bad("features", "a feature selection (comma-separated cy, pm, co)") from None

    def stage_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~cortexgraph.gnn.stage.train_gnn` but ``transfer``
        (which needs the cohort: ``auto`` and ``none`` are resolved by the command)."""
        values = asdict(self)
        del values["transfer"]
        return values


#: the ranges of :class:`TrainGNNParameters` (checked by
#: :func:`~cortexgraph.derivatives.parameters.check_fields`)
_RULES = (
    ("preset", one_of(PRESET_NAMES)),
    ("sampler", one_of(SAMPLERS)),
    ("layers", integers(1, 64)),
    (
        ("epochs", "hidden", "batch_size"),
        integers(1).or_none('an integer >= 1, or "none" (the preset\'s)'),
    ),
    ("lr", numbers(0, low_open=True).or_none('a finite number > 0, or "none" (the preset\'s)')),
    ("seed", SEED),
    ("transfer", texts('a brain id, "auto" or "none"')),
)
