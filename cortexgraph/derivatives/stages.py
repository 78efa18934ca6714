"""The stages cortexgraph knows, and how one execution of a stage is named.

A stage execution is identified by a :class:`StageId`: the stage, the brain (``None`` for a
cohort-level stage such as ``train-gnn``) and a scope (the encoder, model run, label source or area
it is about; empty for stages with one output set per brain). Its record and its lock live at::

    <cohort>/derivatives/cortexgraph/<brain>/records/<stage>[@<scope>].json
    <cohort>/derivatives/cortexgraph/<brain>/locks/<stage>[@<scope>].lock
    <cohort>/derivatives/cortexgraph/records/<stage>[@<scope>].json          (cohort-level stages)

A scope of several names (``map3d`` of one area from one label source) joins them with ``@``,
which no name may contain (:mod:`cortexgraph.data.names`), so a scope always splits back uniquely.

:data:`STAGES` lists every stage with its **code version**: an integer bumped whenever a change of
the code changes what the stage writes, so that records made by older code read as stale. It is part
of every stage key (:mod:`cortexgraph.derivatives.record`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cortexgraph.data.names import check_name

__all__ = ["StageSpec", "STAGES", "StageId", "stage_spec"]


@dataclass(frozen=True)
class StageSpec:
    """What the contract needs to know of a stage.

    name : the stage, as in records and ``cortexgraph status``.
    version : code version (module docstring).
    level : ``brain`` (one execution per brain and scope) or ``cohort``.
    command : the command that brings an output of this stage up to date, as a format string over
        ``brain`` and ``scope`` (shown in stale-upstream errors and by ``cortexgraph status``), or a
        function of the :class:`StageId` for scopes that map to different options.
    summary : one line for ``cortexgraph status``.
    """

    name: str
    version: int
    level: str
    command: str | Callable[[StageId], str]
    summary: str


def _lsm_rerun(sid: StageId) -> str:
    """The command that plans, trains and predicts one area of one LSM/GSM model run again (scope
    ``run@area`` or ``run@area@sSSSS-sTTTT``). The architecture is spelled out where the run has
    a default name (``lsm-ms``, ``gsm-hr``, ``lsm-ms-s0511-s0751`` of ``lsm train``)."""
    run, area = sid.scope[0], sid.scope[1]
    single = re.fullmatch(r"lsm-(hr|lr|ms)-s(\d+)-s(\d+)", run)
    if single:  # the default name of a run of its own made by `lsm train`
        arch, first, last = single.group(1), int(single.group(2)), int(single.group(3))
        return (
            f"cortexgraph lsm train {sid.brain} --name {run} --area {area} --arch {arch} "
            f"--sections {first},{last} --predict"
        )
    command = "gsm" if run.startswith("gsm") else "chain"
    default = re.fullmatch(r"(?:lsm|gsm)-(hr|lr|ms)", run)
    options = f"--arch {default.group(1)}" if default else "(with the run's --arch and options)"
    return f"cortexgraph lsm {command} {sid.brain} --name {run} --area {area} {options}"


STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec(
            "align",
            1,
            "brain",
            "cortexgraph align {brain}",
            "rigid transforms between consecutive sections from the images, mirrored scans",
        ),
        StageSpec(
            "register",
            1,
            "brain",
            "cortexgraph register {brain}",
            "canonical coordinate maps by registration of the stacked tissue to MNI152",
        ),
        StageSpec(
            "build-graph",
            4,
            "brain",
            "cortexgraph build-graph {brain}",
            "volume, depth, midsurfaces, graphs, node <-> section points",
        ),
        StageSpec(
            "node-priors",
            1,
            "brain",
            "cortexgraph features {brain}",
            "canonical coordinates (CO) and atlas maps (PM) on the graph nodes",
        ),
        StageSpec(
            "node-labels",
            1,
            "brain",
            "cortexgraph features {brain}",
            "annotated area (Y) and train/test split on the graph nodes",
        ),
        StageSpec(
            "features",
            1,
            "brain",
            "cortexgraph features {brain} --encoder {scope}",
            "encoder features (CY) on the graph nodes",
        ),
        StageSpec(
            "train-encoder",
            2,
            "cohort",
            "cortexgraph train-encoder --name {scope} (with the settings listed in its record: "
            "its parameters.preset; the preset's defaults otherwise)",
            "patch encoder (SCL) and CE baseline",
        ),
        StageSpec(
            "train-gnn",
            1,
            "cohort",
            "cortexgraph train-gnn --name {scope} (with the options listed in its record)",
            "node classifier",
        ),
        StageSpec(
            "evaluate",
            2,
            "cohort",
            "cortexgraph evaluate {scope}",
            "macro F1 of a model run on test sections and the transfer brain",
        ),
        StageSpec(
            "predict",
            1,
            "brain",
            "cortexgraph predict {scope} {brain}",
            "per-node probabilities and labels of a model run",
        ),
        StageSpec(
            "project",
            2,
            "brain",
            lambda sid: f"cortexgraph project {sid.brain} "
            + (f"--run {sid.scope[0][4:]}" if sid.scope[0].startswith("gnn-") else "--labels y"),
            "a model run's node labels painted onto the sections",
        ),
        StageSpec(
            "render",
            2,
            "brain",
            lambda sid: f"cortexgraph render {sid.brain} --labels {sid.scope[1]}"
            + (f" --run {sid.scope[0][4:]}" if sid.scope[0].startswith("gnn-") else ""),
            "surface pictures and exports of one label source and one colouring",
        ),
        StageSpec(
            "lsm-plan",
            3,
            "brain",
            _lsm_rerun,
            "the chain plan of one area in one LSM/GSM model run",
        ),
        StageSpec(
            "lsm-train",
            2,
            "brain",
            _lsm_rerun,
            "a local (or global) segmentation model of one area",
        ),
        StageSpec(
            "lsm-predict",
            1,
            "brain",
            lambda sid: f"cortexgraph lsm predict {sid.brain} --name {sid.scope[0]} --area "
            f"{sid.scope[1]} (if it reports a stale model: {_lsm_rerun(sid)})",
            "one area's class predictions on its sections from one model run",
        ),
        StageSpec(
            "lsm-evaluate",
            1,
            "brain",
            "cortexgraph lsm evaluate {brain} --name {scope}",
            "F1 tables of one LSM/GSM model run",
        ),
        StageSpec(
            "map3d",
            3,
            "brain",
            lambda sid: f"cortexgraph map3d {sid.brain} --labels {sid.scope[0]} --area "
            f"{sid.scope[1]}",
            "3D map of one area from one label source",
        ),
        StageSpec(
            "stats",
            3,
            "brain",
            lambda sid: f"cortexgraph stats {sid.brain} --labels {sid.scope[0]} --area "
            f"{sid.scope[1]}",
            "volume and surface area of one area from one label source",
        ),
        StageSpec(
            "stats-table",
            1,
            "brain",
            "cortexgraph stats {brain} --labels {scope}",
            "the measured areas of one label source in one table",
        ),
        StageSpec(
            "segment",
            1,
            "brain",
            "cortexgraph segment {brain}",
            "tissue masks (background / white / gray) from the section images",
        ),
    )
}


def stage_spec(stage: str) -> StageSpec:
    """The :class:`StageSpec` of a stage name (KeyError for an unknown stage)."""
    return STAGES[stage]


@dataclass(frozen=True, order=True)
class StageId:
    """One execution unit of a stage: (stage, brain or None, scope parts)."""

    stage: str
    brain: str | None = None
    scope: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise KeyError(f"unknown stage {self.stage!r}")
        if isinstance(self.scope, str):  # a single name given as a string
            object.__setattr__(self, "scope", (self.scope,) if self.scope else ())
        if self.brain is not None:
            check_name(self.brain, "brain id")
        for part in self.scope:
            check_name(part, f"{self.stage} scope")

    @property
    def file_stem(self) -> str:
        """``<stage>[@<scope>...]``: the record's and the lock's file name without suffix."""
        return "@".join((self.stage, *self.scope))

    @property
    def label(self) -> str:
        """How messages name it: ``B01/build-graph``, ``train-gnn@gat3``, ``B01/predict@gat3``."""
        return self.file_stem if self.brain is None else f"{self.brain}/{self.file_stem}"

    def folder(self, derivatives: Path) -> Path:
        return Path(derivatives) if self.brain is None else Path(derivatives) / self.brain

    def record_path(self, derivatives: Path) -> Path:
        return self.folder(derivatives) / "records" / f"{self.file_stem}.json"

    def lock_path(self, derivatives: Path) -> Path:
        return self.folder(derivatives) / "locks" / f"{self.file_stem}.lock"

    @classmethod
    def from_label(cls, label: str) -> StageId:
        """Inverse of :attr:`label`."""
        brain, _, stem = label.rpartition("/")
        stage, *scope = stem.split("@")
        return cls(stage, brain or None, tuple(scope))

    def command(self) -> str:
        """The command that brings this stage's outputs up to date."""
        command = STAGES[self.stage].command
        if callable(command):
            return command(self)
        return command.format(brain=self.brain or "", scope="@".join(self.scope))
