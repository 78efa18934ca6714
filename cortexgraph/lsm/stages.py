"""The LSM workflow's stages on one brain, each under the stage contract (:mod:`cortexgraph.derivatives`).

One function per stage; each takes the settings of a model run (:class:`LSMRun`), runs inside a
:class:`~cortexgraph.derivatives.StageRun` (lock, upstream checks, reuse by key, record on success)
and writes its files atomically (layout: :mod:`cortexgraph.lsm.layout`):

=================  ===========================  =================================================
stage              scope                        writes (under ``<brain>/lsm/<run>/<area>/``)
=================  ===========================  =================================================
``lsm-plan``       (run, area)                  ``chain.json``
``lsm-train``      (run, area, ``sSSSS-sTTTT``)  ``models/sSSSS-sTTTT/{model.pt, history.json,
                   or (run, area) for a GSM     rois.npz}``, or ``models/global/...``
``lsm-predict``    (run, area)                  ``pred/sNNNN.h5`` for every section of the plan
``lsm-evaluate``   (run)                        ``<brain>/lsm/<run>/evaluation/...``
=================  ===========================  =================================================

What goes into each key:

* ``lsm-plan``: the area, ``step``, ``extent`` or the explicit interval, the available and annotated
  section numbers (manifest values); inputs: the annotation files of the annotated sections it reads.
* ``lsm-train``: the full :class:`~cortexgraph.lsm.networks.LSMConfig`, the run seed and the model's
  own seed, the training sections, their orientation angles (derived from ``transforms.tsv``), the
  torch device type; inputs: image, tissue mask and annotation of the training sections only, so
  editing one section's annotation retrains only the models that read it. No upstream: the interval
  is a parameter.
* ``lsm-predict``: per section the interval, its role, the section's orientation angle and the two
  transforms from the training sections onto it, tile size, batch size, device type; inputs: image
  and tissue mask of every predicted section; upstream: the plan and the models it uses (their
  training ROIs come from ``rois.npz``). Sections are reused one by one: a section whose own key (the
  key of its model, its geometry, its image and mask identities, the tiling) equals the one in the
  previous record, and whose file is intact, is kept; the others are predicted again. So an edited
  annotation of one interval's section re-predicts only the sections of the models that read it.
* ``lsm-evaluate``: the run, the areas, the ground-truth folder; inputs: the annotations and truth
  label images it scores against; upstream: plans and predictions of the areas.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cortexgraph.data.manifest import Area, Brain
from cortexgraph.data.names import is_inside
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.derivatives import Derivatives, StageRecord, StageRun
from cortexgraph.derivatives.identity import file_identity
from cortexgraph.derivatives.lock import check_wait_s
from cortexgraph.derivatives.stages import STAGES, StageId
from cortexgraph.errors import CortexgraphError, ParameterError, UpstreamError
from cortexgraph.lsm.config import config_to_dict, make_config
from cortexgraph.lsm.data import CLASS_AREA, load_section_data, orientation_angle, section_transform
from cortexgraph.lsm.evaluate import (
    METRICS_COLUMNS,
    TABLE_COLUMNS,
    area_summary,
    comparison_table,
    evaluate_prediction,
    format_table,
    format_tsv,
    truth_labels_dir,
)
from cortexgraph.lsm.layout import (
    area_slug,
    check_run_name,
    default_run_name,
    evaluate_id,
    evaluation_dir,
    model_dir,
    plan_id,
    plan_path,
    predict_id,
    prediction_path,
    run_kind,
    train_id,
)
from cortexgraph.lsm.model_files import load_model, load_rois, save_model, save_rois
from cortexgraph.lsm.networks import LSMConfig, LSMUNet
from cortexgraph.lsm.plan import (
    ChainPlan,
    max_interval_sections,
    plan_chain,
    plan_single_interval,
)
from cortexgraph.lsm.predict import predict_section, section_roi, tile_network
from cortexgraph.lsm.schedule import MAX_INTERVAL_MM
from cortexgraph.lsm.train import Progress, model_seed, train_model
from cortexgraph.outputs import write_json_atomic, write_text_atomic

__all__ = [
    "StageEvent",
    "LSMRun",
    "plan_stage",
    "preview_plan",
    "read_plan",
    "train_stage",
    "predict_stage",
    "run_chain",
    "run_gsm",
    "run_interval",
    "evaluate_stage",
    "evaluate_runs",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageEvent:
    """What one stage execution did: ``label`` (``B01/lsm-train@lsm-ms@hOc1@s0422-s0842``),
    ``reused`` (outputs were current), ``why`` (the reasons it recomputes, or "up to date"),
    ``finished`` (False: the stage starts computing; True: it has written its record),
    ``detail`` (e.g. how many sections were predicted and how many kept)."""

    label: str
    reused: bool
    why: str
    finished: bool = False
    detail: str = ""

    def line(self) -> str:
        if self.reused:
            state = "reused"
        else:
            state = "recomputed" if self.finished else "recomputing"
        detail = f"; {self.detail}" if self.detail else ""
        return f"{self.label}: {state} ({self.why}){detail}"


def _noop(stage: str, done: int, total: int) -> None:
    return None


def check_settings(
    *,
    tile_px: int,
    batch_size: int,
    wait_s: float,
    iterations: int | None,
    seed: int,
    step: int,
) -> None:
    """Refuse settings out of range with a ParameterError naming the option (``--wait``:
    :func:`~cortexgraph.derivatives.lock.check_wait_s`, as every stage checks it)."""
    check_wait_s(wait_s)
    ParameterError.check_ranges([
        (isinstance(tile_px, int) and 1 <= tile_px <= 4096, "--tile-px", tile_px, "1..4096"),
        (isinstance(batch_size, int) and 1 <= batch_size <= 4096, "--batch-size", batch_size,
         "1..4096"),
        (iterations is None or (isinstance(iterations, int) and 1 <= iterations <= 10**7),
         "--iterations", iterations, "1..10000000"),
        (isinstance(seed, int) and 0 <= seed < 2**32, "--seed", seed, "0..4294967295"),
        (isinstance(step, int) and 1 <= step <= 10**6, "--step", step, "1 or more"),
    ])  # fmt: skip


@dataclass
class LSMRun:
    """The settings of one model run on one brain and area.

    Parameters
    ----------
    brain, area : where and what.
    arch : ``hr``, ``lr`` or ``ms``.
    kind : ``lsm`` (a chain of local models) or ``gsm`` (one global model).
    name : the run name (:func:`~cortexgraph.lsm.layout.check_run_name`); default ``<kind>-<arch>``.
        When given, the kind is the name's.
    preset, iterations, config_overrides : model configuration (:func:`~.config.make_config`).
    seed : run seed; each model derives its own from it, the area, its sections, arch and kind.
    step, extent : chain planning (:func:`~.plan.plan_chain`).
    interval : plan a single interval ``(s, t)`` instead of a chain.
    max_interval_mm : longest interval between the two training sections of a local model
        (:data:`~.schedule.MAX_INTERVAL_MM`, 2.4 mm); ``None``: no limit. Not applied to a GSM
        run (one model on all training sections).
    allow_long_intervals : plan longer intervals anyway (warning, listed in ``chain.json``).
    init_hr : name of a distance pre-training (``train-encoder --method distance``) whose branch
        initialises the high-resolution encoder of every model (HR and MS), as in Schiffer et al. 2021, NeuroImage, Sect. 2.4.
    tile_px, batch_size, device : prediction tiling and torch device.
    overwrite : recompute even when the outputs are current.
    wait_s : how long to wait for a stage's lock before refusing (exit status 3).
    cache_mb : image levels kept in memory.
    progress : ``f(stage, done, total)``.
    on_stage : called with a :class:`StageEvent` after each stage decided to reuse or recompute,
        and again when a recomputing stage finished.
    """

    brain: Brain
    area: Area
    arch: str = "ms"
    kind: str = "lsm"
    name: str | None = None
    preset: str = "auto"
    iterations: int | None = None
    seed: int = 0
    step: int = 2
    extent: tuple[int, int] | None = None
    interval: tuple[int, int] | None = None
    max_interval_mm: float | None = MAX_INTERVAL_MM
    allow_long_intervals: bool = False
    init_hr: str | None = None
    tile_px: int = 64
    batch_size: int = 8
    device: str | None = None
    overwrite: bool = False
    wait_s: float = 0.0
    cache_mb: float = 256.0
    progress: Progress | None = None
    on_stage: Callable[[StageEvent], None] | None = None
    config_overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_settings(
            tile_px=self.tile_px,
            batch_size=self.batch_size,
            wait_s=self.wait_s,
            iterations=self.iterations,
            seed=self.seed,
            step=self.step,
        )
        if self.name is None:
            self.name = default_run_name(self.kind, self.arch)
        self.kind = run_kind(self.name)
        check_run_name(self.name, self.kind)
        area_slug(self.area)  # refuses reserved area names early
        self.config  # noqa: B018 - refuses an unknown architecture or preset before any stage runs
        self.device_type  # noqa: B018 - refuses a device this machine cannot use, as early
        self.store = Derivatives.of(self.brain)
        self.out_dir = self.store.root / self.brain.id
        self.progress = self.progress or _noop
        if self.interval is not None:
            first, last = sorted(int(v) for v in self.interval)
            self.interval = (first, last)
        self.max_interval = (
            max_interval_sections(self.max_interval_mm, self.brain.thickness_um)
            if self.kind == "lsm"
            else None
        )

    @property
    def config(self) -> LSMConfig:
        return make_config(
            self.arch,
            self.brain.spacing_of("image"),
            preset=self.preset,
            iterations=self.iterations,
            **self.config_overrides,
        )

    @property
    def device_type(self) -> str:
        """``cpu`` or ``cuda``...: results differ slightly between device types, so it is a
        parameter of training and prediction."""
        import torch

        from cortexgraph.training.runtime import check_device

        check_device(self.device)  # ParameterError for a device this machine cannot use
        return torch.device(self.device or "cpu").type

    @contextmanager
    def stage(self, sid: StageId, parameters: dict, inputs, upstream=()) -> Iterator[StageRun]:
        """The :class:`~cortexgraph.derivatives.StageRun` of one of this run's stages (its store,
        ``overwrite`` and ``wait_s``), entered; its decision is reported (:meth:`emit`) before the
        caller reuses or computes."""
        with StageRun(
            self.store,
            sid,
            parameters=parameters,
            inputs=inputs,
            upstream=list(upstream),
            overwrite=self.overwrite,
            wait_s=self.wait_s,
        ) as stage:
            self.emit(stage)
            yield stage

    @property
    def run_name(self) -> str:
        """The run's name: ``name``, or the default ``<kind>-<arch>`` that __post_init__ set."""
        if self.name is None:
            raise RuntimeError("LSMRun.name is set by __post_init__")
        return self.name

    def report(self, stage: str, done: int, total: int) -> None:
        """Tell the ``progress`` callback (when there is one) how far ``stage`` is."""
        if self.progress is not None:
            self.progress(stage, done, total)

    def emit(self, run: StageRun, detail: str | None = None) -> None:
        """Report a stage's decision (``detail`` None) or its end (``detail`` given)."""
        if self.on_stage is not None:
            finished = detail is not None
            self.on_stage(StageEvent(run.sid.label, run.reuse, run.why, finished, detail or ""))

    def area_fields(self) -> dict:
        return {
            "run": self.name,
            "kind": self.kind,
            "area": self.area.name,
            "area_id": self.area.id,
        }


# --------------------------------------------------------------------------------------------------
# helpers


def annotation_file(brain: Brain, section: int) -> Path:
    """The file a section's annotation is read from: the label image, else the contours."""
    record = brain.section(section)
    relative = record.annotation or record.contours
    if not relative:
        raise CortexgraphError(
            "section is not annotated",
            file=brain.section_table_path,
            section=section,
            fix="pick an annotated section (see `cortexgraph check`)",
        )
    return brain.path(relative)


def _section_files(brain: Brain, section: int, *, annotation: bool) -> list[Path]:
    record = brain.section(section)
    files = [brain.path(record.image), brain.path(record.mask)]
    if annotation:
        files.append(annotation_file(brain, section))
    return files


def _uses_contours(brain: Brain, sections: Sequence[int]) -> bool:
    return any(not brain.section(s).annotation for s in sections)


def _check_available(stack: SectionStack, sections: Sequence[int]) -> None:
    available = set(stack.sections)
    for section in sections:
        if section not in available:
            raise CortexgraphError(
                "section is not available (missing, excluded or not in the table)",
                file=stack.brain.section_table_path,
                section=int(section),
                fix="pick available annotated sections",
            )


def _matrix(m: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in np.asarray(m, dtype=np.float64)]


def _output(store: Derivatives, record: StageRecord, file_name: str) -> Path:
    """The output of ``record`` whose file name is ``file_name``."""
    for name in record.outputs:
        if name.rsplit("/", 1)[-1] == file_name:
            return store.namer.path(name)
    raise CortexgraphError(
        f"{record.id.label} lists no {file_name}",
        file=str(store.record_path(record.id)),
        fix=f"run `{record.id.command()}` again",
    )


def remove_stale_temporaries(folder: Path, names: Sequence[str]) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes of ``names`` left in ``folder``
    (``.<name>.<random><suffix>``, :func:`cortexgraph.outputs.atomic_path`). Called by a stage
    under its lock, when it is the only writer of these files. Returns what was removed."""
    removed: list[Path] = []
    if not Path(folder).is_dir():
        return removed
    prefixes = tuple(f".{name}." for name in names)
    for path in Path(folder).iterdir():
        if path.name.startswith(prefixes) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) of an interrupted run in %s", len(removed), folder)
    return removed


def _digest(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# lsm-plan


def plan_stage(run: LSMRun) -> ChainPlan:
    """Plan the area's chain (or the run's single interval) and write ``chain.json``.

    Reads the annotation of every annotated, available section (of ``[s, t]`` for a single interval)
    to find those that show the area. Returns the plan.
    """
    brain, area = run.brain, run.area
    sid = plan_id(brain.id, run.run_name, area)
    path = plan_path(run.out_dir, run.run_name, area)
    with SectionStack(brain) as stack:
        available, annotated, candidates = _plan_sections(run, stack)
        parameters = {
            **run.area_fields(),
            "step": run.step,
            "extent": None if run.extent is None else list(run.extent),
            "interval": None if run.interval is None else list(run.interval),
            "max_interval_sections": run.max_interval,
            "allow_long_intervals": bool(run.allow_long_intervals),
            "available_sections": available,
            "annotated_sections": candidates,
        }
        if _uses_contours(brain, candidates):
            parameters["annotation_spacing_um"] = brain.annotation_spacing_um
        inputs = [annotation_file(brain, s) for s in candidates]
        with run.stage(sid, parameters, inputs) as stage:
            if stage.reuse:
                assert stage.record is not None  # a reused stage holds its record
                return read_plan(run.store, stage.record)
            remove_stale_temporaries(path.parent, ["chain.json"])
            plan = _make_plan(run, stack, available, annotated, candidates)
            write_json_atomic(path, plan.to_dict())
            stage.commit(
                [path],
                measured={
                    "intervals": [list(p) for p in plan.intervals],
                    "test_sections": list(plan.test_sections),
                    "sections": len(plan.sections),
                    **{k: plan.notes[k] for k in ("long_intervals", "suggested_sections")
                       if k in plan.notes},
                },
            )  # fmt: skip
            detail = f"{len(plan.intervals)} interval(s), {len(plan.sections)} section(s)"
            if plan.notes.get("long_intervals"):
                detail += (
                    f"; LONGER than {run.max_interval} sections: "
                    + ", ".join(f"{a}-{b}" for a, b in plan.notes["long_intervals"])
                    + "; annotate next: "
                    + ", ".join(str(x) for x in plan.notes["suggested_sections"])
                )
            run.emit(stage, detail)
            return plan


def _plan_sections(run: LSMRun, stack: SectionStack) -> tuple[list[int], list[int], list[int]]:
    """``(available, annotated, candidates)``: the available sections of the brain, its annotated
    available sections, and those the plan reads (all annotated ones, or those of the run's single
    interval)."""
    available = [int(s) for s in stack.sections]
    annotated = [s for s in run.brain.annotated_sections if s in set(available)]
    if run.interval is None:
        return available, annotated, annotated
    _check_available(stack, run.interval)
    s, t = run.interval
    return available, annotated, [a for a in annotated if s <= a <= t]


def _make_plan(
    run: LSMRun,
    stack: SectionStack,
    available: list[int],
    annotated: list[int],
    candidates: list[int],
) -> ChainPlan:
    """The chain (or single interval) of the run's area from the annotations of ``candidates``."""
    area = run.area
    shows = []
    for done, section in enumerate(candidates, start=1):
        if np.any(stack.annotation(section) == area.id):
            shows.append(section)
        run.report("plan", done, len(candidates))
    limits: dict[str, Any] = {
        "max_interval": run.max_interval,
        "allow_long": run.allow_long_intervals,
    }
    if run.interval is not None:
        return plan_single_interval(shows, available, run.interval, area_id=area.id, **limits)
    return plan_chain(
        shows,
        available,
        area_id=area.id,
        step=run.step,
        brain_annotated=annotated,
        extent=run.extent,
        trim_to_extent=run.kind == "lsm",  # a GSM is trained on every training section
        **limits,
    )


def preview_plan(run: LSMRun) -> ChainPlan:
    """The plan :func:`plan_stage` makes for ``run`` from the current annotations, without writing
    anything (no lock, no record): what a task graph needs to know to make one training task per
    interval before the plan stage runs. Raises as :func:`plan_stage` does (e.g. an interval longer
    than ``max_interval_mm``)."""
    with SectionStack(run.brain) as stack:
        available, annotated, candidates = _plan_sections(run, stack)
        return _make_plan(run, stack, available, annotated, candidates)


def read_plan(store: Derivatives, record: StageRecord) -> ChainPlan:
    """The plan written by an lsm-plan record."""
    return ChainPlan.from_dict(json.loads(_output(store, record, "chain.json").read_text()))


# --------------------------------------------------------------------------------------------------
# lsm-train

MODEL_FILES = ("model.pt", "history.json", "rois.npz")
"""The files of one trained model (stage lsm-train)."""


def train_stage(
    run: LSMRun, plan: ChainPlan, interval: tuple[int, int] | None = None
) -> StageRecord:
    """Train (or reuse) one model of the run: the LSM of ``interval`` or, for a gsm run, the GSM on
    all training sections of ``plan``.

    Writes ``models/<sSSSS-sTTTT|global>/model.pt`` (weights, configuration, metadata),
    ``history.json`` (losses, learning rates, class weights, seconds) and ``rois.npz`` (the training
    ROIs of its sections, read by prediction). Returns the stage record.
    """
    brain, area = run.brain, run.area
    if run.kind == "lsm":
        if interval is None:
            raise ValueError("an LSM needs its interval")
        sections = tuple(sorted(int(v) for v in interval))
        if sections[0] == sections[1]:
            raise CortexgraphError("the two training sections must differ", section=sections[0])
    else:
        interval = None
        sections = tuple(plan.training_sections)
    sid = train_id(brain.id, run.run_name, area, interval)
    folder = model_dir(run.out_dir, run.run_name, area, interval)
    config = run.config
    seed = model_seed(run.seed, area.id, sections, run.arch, run.kind)
    with SectionStack(brain) as stack:
        _check_available(stack, sections)
        parameters = {
            **run.area_fields(),
            "arch": run.arch,
            "sections": list(sections),
            "seed": run.seed,
            "model_seed": seed,
            "config": config_to_dict(config),
            "angles_rad": {str(s): orientation_angle(stack, s) for s in sections},
            "device": run.device_type,
        }
        init_state, upstream = None, []
        if run.init_hr is not None:
            from cortexgraph.features.distance_stage import lsm_hr_init_state

            if brain.cohort is None:
                raise ParameterError(
                    "--init-hr names a distance run of the cohort, but the brain has no cohort",
                    file=brain.root,
                    fix="keep the brain folder inside its cohort folder (cohort.toml)",
                )
            init_state, init_sid = lsm_hr_init_state(brain.cohort, run.init_hr, config)
            parameters["init_hr"] = run.init_hr  # its record's key is part of this key
            upstream = [init_sid]
        inputs = [f for s in sections for f in _section_files(brain, s, annotation=True)]
        with run.stage(sid, parameters, inputs, upstream) as stage:
            if stage.reuse:
                assert stage.record is not None  # a reused stage holds its record
                return stage.record
            remove_stale_temporaries(folder, MODEL_FILES)
            data = [
                load_section_data(
                    stack,
                    s,
                    config.output_spacing_um,
                    area_id=area.id,
                    radius_mm=config.roi_radius_mm,
                    cache_mb=run.cache_mb,
                )
                for s in sections
            ]
            net, history = train_model(
                data, config, seed=seed, device=run.device, progress=run.progress,
                init_hr=init_state,
            )  # fmt: skip
            meta = {
                "run": run.run_name,
                "kind": run.kind,
                "brain": brain.id,
                "area": area.name,
                "area_id": area.id,
                "sections": list(sections),
                "seed": seed,
                "init_hr": run.init_hr,
            }
            if interval is not None:
                meta["interval"] = list(sections)
            outputs = [  # MODEL_FILES
                save_model(folder / "model.pt", net, config, meta),
                write_json_atomic(folder / "history.json", history),
                save_rois(
                    folder / "rois.npz",
                    # train_model refused a section without its ROI
                    {d.section: d.roi for d in data if d.roi is not None},
                    config.output_spacing_um,
                ),
            ]
            record = stage.commit(
                outputs,
                measured={
                    "seconds": round(history["seconds"], 3),
                    "iterations_per_s": round(config.iterations / max(history["seconds"], 1e-9), 3),
                    "final_loss": history["final_loss"],
                    "first_loss": history["loss"][0] if history["loss"] else None,
                },
            )
            run.emit(stage, f"{config.iterations} iterations in {history['seconds']:.1f} s")
            return record


# --------------------------------------------------------------------------------------------------
# lsm-predict


@dataclass
class _Model:
    """A trained model as prediction uses it (loaded on first use)."""

    record: StageRecord
    path: Path
    rois_path: Path
    net: LSMUNet | None = None
    rois: dict | None = None


def predict_stage(run: LSMRun) -> list[Path]:
    """Predict every section of the run's plan for the area with the run's models.

    Each section uses the model (and the ROI) of ``plan.interval_of(section)``; a gsm run's one model
    serves every interval. Writes ``pred/sNNNN.h5`` (uint8 classes: 0 slide, 1 white matter, 2 other
    cortex, 3 the area, 255 outside the prediction ROI; raw section frame, the model's output
    spacing). Sections whose own key is unchanged are kept (module docstring). Returns the files.
    """
    brain, area, store = run.brain, run.area, run.store
    sid = predict_id(brain.id, run.run_name, area)
    pid = plan_id(brain.id, run.run_name, area)
    plan_record = store.require(pid)
    plan = read_plan(store, plan_record)
    if run.kind == "lsm":
        model_ids = {
            i: train_id(brain.id, run.run_name, area, iv) for i, iv in enumerate(plan.intervals)
        }
    else:
        gsm = train_id(brain.id, run.run_name, area, None)
        model_ids = dict.fromkeys(range(len(plan.intervals)), gsm)
    with SectionStack(brain) as stack:
        _check_available(stack, plan.sections)
        geometry = {}
        for u in plan.sections:
            s, t = plan.intervals[plan.interval_of(u)]
            geometry[str(u)] = {
                "interval": [s, t],
                "role": plan.role(u),
                "angle_rad": orientation_angle(stack, u),
                "phi_s": _matrix(section_transform(stack, s, u)),
                "phi_t": _matrix(section_transform(stack, t, u)),
            }
        parameters = {
            **run.area_fields(),
            "tile_px": run.tile_px,
            "batch_size": run.batch_size,
            "device": run.device_type,
            "sections": geometry,
        }
        image_files = {u: _section_files(brain, u, annotation=False) for u in plan.sections}
        inputs = [f for files in image_files.values() for f in files]
        with run.stage(sid, parameters, inputs, [pid, *set(model_ids.values())]) as stage:
            if stage.reuse:
                assert stage.record is not None  # a reused stage holds its record
                return [store.namer.path(n) for n in sorted(stage.record.outputs)]
            if stage.upstream_records[pid.label].key != plan_record.key:
                raise UpstreamError(
                    f"{pid.label} was recomputed while {sid.label} started; nothing was predicted",
                    file=str(store.record_path(pid)),
                    fix=f"run `{sid.command()}` again",
                )
            remove_stale_temporaries(
                prediction_path(run.out_dir, run.run_name, area, 0).parent,
                [prediction_path(run.out_dir, run.run_name, area, u).name for u in plan.sections],
            )
            models: dict[str, _Model] = {}
            for sid_model in set(model_ids.values()):
                record = stage.upstream_records[sid_model.label]
                models[sid_model.label] = _Model(
                    record, _output(store, record, "model.pt"), _output(store, record, "rois.npz")
                )
            previous = stage.previous if not run.overwrite else None
            kept = previous.measured.get("sections", {}) if previous is not None else {}
            version = STAGES["lsm-predict"].version
            written, measured, predicted = [], {}, 0
            total = len(plan.sections)
            run.report("predict", 0, total)
            for done, u in enumerate(plan.sections, start=1):
                out = prediction_path(run.out_dir, run.run_name, area, u)
                name = store.namer.name(out)
                model = models[model_ids[plan.interval_of(u)].label]
                key = _digest(
                    {
                        "code_version": version,
                        "model": model.record.key,
                        "geometry": geometry[str(u)],
                        "inputs": [stage.input_ids[store.namer.name(f)] for f in image_files[u]],
                        "tile_px": run.tile_px,
                        "batch_size": run.batch_size,
                        "device": run.device_type,
                    }
                )
                old = kept.get(str(u), {})
                if (
                    old.get("key") == key
                    and previous is not None
                    and name in previous.outputs
                    and file_identity(out, store.cache) == previous.outputs[name]
                ):
                    measured[str(u)] = old
                else:
                    stage.writing([out])  # an interrupted run leaves no section behind
                    measured[str(u)] = {"key": key} | _predict_one(
                        run, stack, model, u, geometry[str(u)], out
                    )
                    predicted += 1
                written.append(out)
                run.report("predict", done, total)
            stage.commit(
                written,
                measured={"sections": measured, "predicted": predicted, "kept": total - predicted},
            )
            run.emit(
                stage, f"{predicted} of {total} section(s) predicted, {total - predicted} kept"
            )
            return written


def _predict_one(
    run: LSMRun,
    stack: SectionStack,
    model: _Model,
    section: int,
    geometry: dict,
    out: Path,
) -> dict:
    """Predict one section and write its class raster; returns what was measured."""
    start = time.perf_counter()
    if model.net is None:
        net, _, _ = load_model(model.path, run.device)
        model.net = tile_network(net, run.tile_px) if net.config.output_px != run.tile_px else net
        model.rois, _ = load_rois(model.rois_path)
    assert model.rois is not None  # loaded with the network
    config = model.net.config
    s, t = geometry["interval"]
    target = load_section_data(stack, section, config.output_spacing_um, cache_mb=run.cache_mb)
    roi = section_roi(
        model.rois[s], model.rois[t], geometry["phi_s"], geometry["phi_t"], target.shape, config
    )
    classes = predict_section(
        model.net,
        target.image,
        roi,
        geometry["angle_rad"],
        tile_px=run.tile_px,
        batch_size=run.batch_size,
    )
    write_raster(out, classes, config.output_spacing_um, kind="labels")
    return {
        "interval": [s, t],
        "role": geometry["role"],
        "roi_px": int(roi.sum()),
        "area_px": int(np.count_nonzero(classes == CLASS_AREA)),
        "seconds": round(time.perf_counter() - start, 3),
    }


# --------------------------------------------------------------------------------------------------
# whole runs


def run_chain(run: LSMRun, predict: bool = True) -> dict:
    """Plan the area's chain (or the run's single interval), train its models, predict its sections.

    Returns ``{"plan": ChainPlan, "models": [model files], "predictions": [files]}``.
    """
    if run.kind != "lsm":
        raise CortexgraphError(f"run {run.run_name} is a GSM run", fix="use `cortexgraph lsm gsm`")
    plan = plan_stage(run)
    models = []
    for index, interval in enumerate(plan.intervals):
        log.info("model %d/%d: sections %d-%d", index + 1, len(plan.intervals), *interval)
        record = train_stage(run, plan, interval)
        models.append(_output(run.store, record, "model.pt"))
        run.report("models", index + 1, len(plan.intervals))
    predictions = predict_stage(run) if predict else []
    return {"plan": plan, "models": models, "predictions": predictions}


def run_gsm(run: LSMRun, predict: bool = True) -> dict:
    """Plan the area's chain, train its GSM on all training sections, predict the chain's sections
    within the chain's ROIs. Returns like :func:`run_chain`."""
    if run.kind != "gsm":
        raise CortexgraphError(
            f"run {run.run_name} is an LSM run", fix="use `cortexgraph lsm chain`"
        )
    plan = plan_stage(run)
    record = train_stage(run, plan)
    predictions = predict_stage(run) if predict else []
    return {
        "plan": plan,
        "models": [_output(run.store, record, "model.pt")],
        "predictions": predictions,
    }


def run_interval(run: LSMRun, predict: bool = False) -> dict:
    """One LSM on ``run.interval`` (a run whose plan is that interval); optionally predict
    every section of ``[s, t]``. Returns like :func:`run_chain`."""
    if run.interval is None:
        raise ValueError("run.interval is not set")
    return run_chain(run, predict)


# --------------------------------------------------------------------------------------------------
# lsm-evaluate

EVALUATION_FILES = ("metrics.tsv", "summary.json", "table.tsv", "table.md")


def evaluate_stage(
    brain: Brain,
    run_name: str,
    areas: Sequence[Area] | None = None,
    *,
    truth_dir: Path | None | str = "auto",
    overwrite: bool = False,
    wait_s: float = 0.0,
    on_stage: Callable[[StageEvent], None] | None = None,
) -> dict:
    """Score a run's predictions: the published protocol and, for a phantom, the full ground truth.

    For every area of the run (default: all with predictions, :func:`cortexgraph.lsm.labels.lsm_runs`)
    and every predicted section: F1 of the area against the annotation inside the ROI (annotated
    sections), against the full truth inside the ROI and on the whole section
    (:func:`~cortexgraph.lsm.evaluate.evaluate_prediction`).

    Writes, under ``<brain>/lsm/<run>/evaluation/``: ``metrics.tsv`` (one row per area and section,
    columns :data:`~cortexgraph.lsm.evaluate.METRICS_COLUMNS`), ``summary.json`` (per area: F1 lists and their statistics; the
    run's row of the comparison table), ``table.tsv`` and ``table.md`` (that row).

    Returns the summary: ``{"run", "kind", "arch", "areas": [per-area summaries], "table": [row]}``.
    """
    from cortexgraph.lsm.labels import lsm_area_sections, lsm_runs

    store = Derivatives.of(brain)
    check_run_name(run_name)
    known = lsm_runs(store, brain).get(run_name, [])
    if not known:
        raise CortexgraphError(
            f"run {run_name} has no predictions on {brain.id}",
            file=store.root / brain.id / "records",
            fix=f"run `cortexgraph lsm chain {brain.id} --name {run_name} --area AREA` (or lsm gsm) first",
        )
    if areas:
        missing = [a.name for a in areas if a.id not in {k.id for k in known}]
        if missing:
            raise CortexgraphError(
                f"run {run_name} has no predictions of area(s) {', '.join(missing)}",
                fix=f"areas of this run: {', '.join(a.name for a in known)}",
            )
        chosen = sorted(areas, key=lambda a: a.id)
    else:
        chosen = known
    out_dir = store.root / brain.id
    if truth_dir == "auto":
        truth_dir = truth_labels_dir(brain)
    if truth_dir is not None and not is_inside(truth_dir, store.cohort_root):
        raise CortexgraphError(
            "the ground-truth folder is outside the cohort", file=truth_dir, fix="keep it inside"
        )
    sid = evaluate_id(brain.id, run_name)
    upstream: list[StageId] = []
    plans, predictions = {}, {}
    memo: dict = {}
    for area in chosen:
        pid = plan_id(brain.id, run_name, area)
        upstream += [pid, predict_id(brain.id, run_name, area)]
        plans[area.id] = read_plan(store, store.require(pid, memo))
        predictions[area.id] = lsm_area_sections(store, brain, run_name, area, memo=memo)
    inputs = []
    for area in chosen:
        plan = plans[area.id]
        for section in predictions[area.id]:
            if section in plan.annotated:
                inputs.append(annotation_file(brain, section))
            if truth_dir is not None and (Path(truth_dir) / f"s{section:04d}.h5").is_file():
                inputs.append(Path(truth_dir) / f"s{section:04d}.h5")
    parameters = {
        "run": run_name,
        "areas": {a.name: a.id for a in chosen},
        "truth": None if truth_dir is None else store.namer.name(truth_dir),
    }
    folder = evaluation_dir(out_dir, run_name)
    with StageRun(
        store,
        sid,
        parameters=parameters,
        inputs=inputs,
        upstream=upstream,
        overwrite=overwrite,
        wait_s=wait_s,
    ) as stage:
        if on_stage is not None:
            on_stage(StageEvent(stage.sid.label, stage.reuse, stage.why))
        if stage.reuse:
            assert stage.record is not None  # a reused stage holds its record
            return json.loads(_output(store, stage.record, "summary.json").read_text())
        kind, arch = run_kind(run_name), ""
        summaries, metrics = [], []
        with SectionStack(brain) as stack:
            for area in chosen:
                plan = plans[area.id]
                rows = []
                for section, path in sorted(predictions[area.id].items()):
                    with Raster(path) as raster:
                        pred = raster.read_level(0)
                        spacing = raster.spacing_um
                    annotation = None
                    if section in plan.annotated:
                        annotation = stack.annotation(section, spacing)
                    truth = None
                    truth_file = None if truth_dir is None else Path(truth_dir) / path.name
                    if truth_file is not None and truth_file.is_file():
                        with Raster(truth_file) as raster:
                            truth = raster.read_at_spacing(spacing)
                        if truth.shape != pred.shape:
                            truth = None
                    s, t = plan.intervals[plan.interval_of(section)]
                    scores = evaluate_prediction(pred, area.id, annotation, truth)
                    rows.append(
                        {
                            "area": area.name,
                            "section": section,
                            "role": plan.role(section),
                            "interval": f"{s}-{t}",
                        }
                        | scores
                    )
                arch = arch or _run_arch(store, brain.id, run_name, area, plan)
                summaries.append(
                    {
                        "brain": brain.id,
                        "run": run_name,
                        "source": run_name,
                        "kind": kind,
                        "arch": arch,
                        "area": area.name,
                        "area_id": area.id,
                        **area_summary(rows),
                    }
                )
                metrics += rows
        table = comparison_table(summaries)
        summary = {"run": run_name, "kind": kind, "arch": arch, "areas": summaries, "table": table}
        outputs = [
            write_text_atomic(folder / "metrics.tsv", format_tsv(METRICS_COLUMNS, metrics)),
            write_json_atomic(folder / "summary.json", summary),
            write_text_atomic(folder / "table.tsv", format_tsv(TABLE_COLUMNS, table)),
            write_text_atomic(folder / "table.md", format_table(table)),
        ]
        stage.commit(outputs, measured={"rows": len(metrics), "table": table})
        if on_stage is not None:
            on_stage(StageEvent(stage.sid.label, False, stage.why, True, f"{len(metrics)} row(s)"))
        return summary


def _run_arch(store: Derivatives, brain_id: str, run_name: str, area: Area, plan: ChainPlan) -> str:
    """The architecture of a run's models (from the first model's record)."""
    interval = plan.intervals[0] if run_kind(run_name) == "lsm" else None
    record = store.record(train_id(brain_id, run_name, area, interval))
    return str(record.parameters.get("arch", "")) if record is not None else ""


def evaluate_runs(
    brain: Brain,
    runs: Sequence[str] | None = None,
    areas: Sequence[Area] | None = None,
    **kwargs,
) -> tuple[list[dict], list[dict]]:
    """:func:`evaluate_stage` of several runs (default: every run with predictions) and the pooled
    comparison table over them (returned, not written: each run's folder holds its own row).

    Returns ``(per-run summaries, table rows)``.
    """
    from cortexgraph.lsm.labels import lsm_runs

    store = Derivatives.of(brain)
    known = lsm_runs(store, brain)
    if runs:
        plan = {name: list(areas) if areas else None for name in runs}
    else:
        wanted = None if not areas else {a.id for a in areas}
        plan = {}
        for name, have in sorted(known.items()):
            chosen = have if wanted is None else [a for a in have if a.id in wanted]
            if chosen:
                plan[name] = chosen
    if not plan:
        raise CortexgraphError(
            f"no LSM/GSM run has predictions on {brain.id}"
            + (" of the chosen area(s)" if areas else ""),
            file=store.root / brain.id / "records",
            fix=f"run `cortexgraph lsm chain {brain.id} --area AREA` (or lsm gsm) first",
        )
    summaries = [evaluate_stage(brain, name, chosen, **kwargs) for name, chosen in plan.items()]
    rows = comparison_table([a for s in summaries for a in s["areas"]])
    return summaries, rows
