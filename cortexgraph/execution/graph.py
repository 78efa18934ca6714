"""The cohort task graph and its runner.

:func:`cohort_graph` lists the stage executions of the graph path for every brain of a cohort as
:class:`Task` objects; a task depends on the tasks whose outputs its stage reads, so the engine runs
independent brains (and the encoder beside the graphs) at the same time::

    synth (cohort files) -> synth/<brain> -> synth-done                  (phantoms: demo only)
    check/<brain> -> lsm-plan/<brain>/<area> -> lsm-train/<brain>/<area>/<interval> (one per
                     interval) -> lsm-predict/<brain>/<area> -> map3d/<brain>/<area> (source lsm)
    check/<brain> -> build-graph/<brain> -----------------------> features/<brain>
    check/<every brain> -> train-encoder ------------------------/           |
    features/<every brain> -> train-gnn -> evaluate                          |
                             train-gnn -> predict/<brain> -> project/<brain> -> map3d/<brain>/<area>
                                          predict/<brain> -> render/<brain>     -> stats-table/<brain>

:func:`run_graph` runs the tasks on an :class:`~cortexgraph.execution.engine.Engine`: serially in
dependency order, or as Dask futures (an upstream task's future is an argument of its dependants).
What is up to date is skipped by the stages themselves (the stage contract reuses outputs whose key
matches, docs/derivatives.md); the report says, per task, whether its stage computed or reused.
Tasks never write outputs themselves, and no two tasks run the same stage execution, so no file has
two writers; the stage locks also keep a second cohort run (or a user's command) from writing the
same files at the same time: the second waits for the lock, then reuses.

A failed task fails only the tasks downstream of it; the others run to the end.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import secrets
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cortexgraph.data.manifest import DERIVATIVES
from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.execution import tasks as T

__all__ = [
    "Ref",
    "Task",
    "TaskFailed",
    "CohortSettings",
    "STEPS",
    "cohort_graph",
    "run_graph",
    "GraphReport",
]

log = logging.getLogger(__name__)

#: The steps of the graph path, in order (``CohortSettings.until`` stops after one of them).
STEPS = (
    "synth",
    "check",
    "lsm",
    "build-graph",
    "train-encoder",
    "features",
    "train-gnn",
    "evaluate",
    "predict",
    "project",
    "render",
    "map3d",
)


@dataclass(frozen=True)
class Ref:
    """A keyword argument that is the return value of task ``key``."""

    key: str


@dataclass(frozen=True)
class Task:
    """One task: ``func(**kwargs)`` after the tasks ``deps`` (and every :class:`Ref` in kwargs).

    records : globs, relative to ``<cohort>/derivatives/cortexgraph``, of the stage records the task
        writes (to tell a computed stage from a reused one).
    resources : Dask worker resources the task needs (``{"GPU": 1}``).
    priority : higher runs first among ready tasks (long tasks on the critical path).
    """

    key: str
    func: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    resources: Mapping[str, float] | None = None
    priority: int = 0

    def dependencies(self) -> tuple[str, ...]:
        """Every task this one waits for: ``deps`` and the keys of its :class:`Ref` arguments."""
        keys = list(self.deps)
        keys += [v.key for v in self.kwargs.values() if isinstance(v, Ref)]
        return tuple(dict.fromkeys(keys))

    @property
    def label(self) -> str:
        return self.key.replace("/", " ")


class TaskFailed(Exception):
    """A task raised: ``key`` is the task, ``exit_code`` the CLI exit status of the error."""

    def __init__(self, key: str, message: str, exit_code: int = 1) -> None:
        self.key = key
        self.message = message
        self.exit_code = exit_code
        super().__init__(f"{key}: {message}")

    def __reduce__(self):
        return (TaskFailed, (self.key, self.message, self.exit_code))


@dataclass(frozen=True)
class CohortSettings:
    """What :func:`cohort_graph` runs.

    synth_preset : make the phantom cohort of this preset first (``cortexgraph demo``); None: the
        cohort exists.
    synth_brains : brains of the phantom (default: the preset's).
    brains : brains whose predictions, projections, pictures and maps to make (default: all of the
        cohort). The encoder and the GNN are trained on the cohort, so when the graph reaches them
        every brain is checked, and gets its graph and node features.
    seed : seeds the phantom, the encoder and the GNN.
    encoder_preset, encoder_overrides : :func:`cortexgraph.features.train.train_encoder` settings.
    loader_workers : patch-reading processes of the encoder task (0: none; the engine's workers
        already use the cores).
    gnn : keyword arguments of :func:`cortexgraph.gnn.stage.train_gnn` (model, layers, features,
        preset, ...); ``transfer="auto"`` holds out B07 when the cohort has it.
    map3d_areas : areas to map in 3D (and measure) per brain, from ``map3d_source``.
    map3d_source : ``gnn`` (the trained run's projected labels), ``truth``, ``annotation`` or
        ``lsm`` (the predictions of the graph's LSM run; every area of ``map3d_areas`` must be in
        ``lsm_areas``).
    lsm_areas : areas to segment with local segmentation models on every selected brain (step
        ``lsm``): the chain plan, one training task per interval, the prediction of the plan's
        sections (:mod:`cortexgraph.lsm.stages`). Empty (the default): no LSM task.
    lsm : keyword arguments of :class:`cortexgraph.lsm.stages.LSMRun` (``arch``, ``name``,
        ``preset``, ``iterations``, ``step``, ``extent``, ``interval``, ``max_interval_mm``,
        ``allow_long_intervals``, ``tile_px``, ``batch_size``, ...; ``seed`` defaults to ``seed``).
    render : surface pictures of the run's labels.
    until : the last step to run (one of :data:`STEPS`).
    device : ``auto``, ``cpu`` or ``cuda`` for the learners.
    """

    synth_preset: str | None = None
    synth_brains: tuple[str, ...] | None = None
    brains: tuple[str, ...] | None = None
    seed: int = 0
    encoder_preset: str = "auto"
    encoder_overrides: Mapping[str, Any] | None = None
    loader_workers: int | None = 0
    gnn: Mapping[str, Any] = field(
        default_factory=lambda: {
            "model": "gat",
            "layers": 3,
            "features": ("cy", "pm", "co"),
            "transfer": "auto",
            "preset": "seeds",
        }
    )
    map3d_areas: tuple[str, ...] = ()
    map3d_source: str = "gnn"
    lsm_areas: tuple[str, ...] = ()
    lsm: Mapping[str, Any] = field(default_factory=lambda: {"arch": "ms"})
    render: bool = True
    until: str = "map3d"
    device: str = "auto"


def _brain_ids(cohort_root: Path, settings: CohortSettings) -> list[str]:
    if settings.synth_preset is not None:
        from cortexgraph.synth.cohort import cohort_brain_ids

        available = cohort_brain_ids(settings.synth_preset, settings.synth_brains)
    else:
        from cortexgraph.data.manifest import Cohort

        available = list(Cohort.read(cohort_root).brain_ids)
    if settings.brains is None:
        return available
    unknown = [b for b in settings.brains if b not in available]
    if unknown:
        raise ParameterError(
            f"brain(s) {', '.join(unknown)} not in the cohort ({', '.join(available)})",
            file=str(cohort_root),
            fix="pick brains listed in cohort.toml",
        )
    return list(settings.brains)


def cohort_graph(
    cohort_root: str | os.PathLike,
    settings: CohortSettings | None = None,
    *,
    wait_s: float = 3600.0,
    gpu_tasks: bool = False,
) -> list[Task]:
    """The tasks of the graph path for a cohort, in an order where every task follows its
    dependencies (module docstring).

    Parameters
    ----------
    cohort_root : the cohort folder (made by the synth tasks when ``settings.synth_preset``).
    settings : :class:`CohortSettings`.
    wait_s : how long a stage waits for its lock when another process runs it.
    gpu_tasks : the training tasks ask for Dask worker resources ``GPU=1``.
    """
    settings = settings or CohortSettings()
    if settings.until not in STEPS:
        raise ParameterError(
            f"unknown step {settings.until!r}", fix=f"use one of {', '.join(STEPS)}"
        )
    last = STEPS.index(settings.until)

    def wanted(step: str) -> bool:
        return STEPS.index(step) <= last

    root = str(Path(cohort_root))
    selected = _brain_ids(Path(root), settings)
    everyone = _brain_ids(Path(root), replace(settings, brains=None))
    # cohort-level stages read every brain: their upstream per-brain stages run for all of them
    brains = everyone if wanted("train-encoder") else selected
    graph_brains = everyone if wanted("train-gnn") else selected
    phantom = settings.synth_preset is not None or (Path(root) / "synth.json").is_file()
    gpu = {"GPU": 1} if gpu_tasks else None
    tasks: list[Task] = []

    if settings.synth_preset is not None:
        common = {
            "cohort_root": root,
            "preset": settings.synth_preset,
            "brains": None if settings.synth_brains is None else list(settings.synth_brains),
            "seed": settings.seed,
        }
        tasks.append(Task("synth", T.synth_prepare, common))
        for b in everyone:
            tasks.append(Task(f"synth/{b}", T.synth_brain, {**common, "brain_id": b}, ("synth",)))
        tasks.append(
            Task("synth-done", T.synth_finish, common, tuple(f"synth/{b}" for b in everyone))
        )
    if not wanted("check"):
        return tasks

    # a brain's check reads the whole cohort (cohort.toml lists every brain, and a listed brain
    # without its folder is an error), so on a phantom being made it waits for every brain
    check_deps = ("synth-done",) if settings.synth_preset is not None else ()
    for b in brains:
        tasks.append(Task(f"check/{b}", T.check, {"cohort_root": root, "brain_id": b}, check_deps))
    lsm_run = None
    if settings.map3d_source == "lsm" or (wanted("lsm") and settings.lsm_areas):
        lsm_run = _lsm_run_name(settings)
    if settings.map3d_source == "lsm":
        from cortexgraph.data.names import slug

        missing = [
            a for a in settings.map3d_areas if slug(a) not in {slug(x) for x in settings.lsm_areas}
        ]
        if missing:
            raise ParameterError(
                f"3D maps from the LSM run need its predictions of {', '.join(missing)}",
                fix="add the area(s) to the LSM areas (run-cohort --lsm AREA)",
            )
    if wanted("lsm") and settings.lsm_areas:
        tasks += _lsm_tasks(root, selected, settings, wait_s, gpu)
    if wanted("train-encoder"):
        tasks.append(
            Task(
                "train-encoder",
                T.train_encoder,
                {
                    "cohort_root": root,
                    "preset": settings.encoder_preset,
                    "seed": settings.seed,
                    "overrides": dict(settings.encoder_overrides or {}),
                    "loader_workers": settings.loader_workers,
                    "device": settings.device,
                },
                # the encoder reads the images and annotations of every brain of the cohort
                tuple(f"check/{b}" for b in brains),
                records=("records/train-encoder@*.json",),
                resources=gpu,
                priority=10,
            )
        )
    if not wanted("build-graph"):
        return tasks
    for b in graph_brains:
        tasks.append(
            Task(
                f"build-graph/{b}",
                T.build_graph,
                {"cohort_root": root, "brain_id": b, "phantom": phantom, "wait_s": wait_s},
                (f"check/{b}",),
                records=(f"{b}/records/build-graph.json",),
            )
        )
    if not wanted("features"):
        return tasks
    for b in graph_brains:
        tasks.append(
            Task(
                f"features/{b}",
                T.features,
                {
                    "cohort_root": root,
                    "brain_id": b,
                    "encoder": Ref("train-encoder"),
                    "device": settings.device,
                    "wait_s": wait_s,
                },
                (f"build-graph/{b}",),
                records=(
                    f"{b}/records/node-priors.json",
                    f"{b}/records/node-labels.json",
                    f"{b}/records/features@*.json",
                ),
            )
        )
    if not wanted("train-gnn"):
        return tasks
    gnn = dict(settings.gnn)
    if gnn.get("transfer", "auto") == "auto":
        gnn["transfer"] = "B07" if "B07" in everyone else None
    gnn.setdefault("seed", settings.seed)
    if "features" in gnn:
        gnn["features"] = list(gnn["features"])
    tasks.append(
        Task(
            "train-gnn",
            T.train_gnn,
            {
                "cohort_root": root,
                "settings": gnn,
                "encoder": Ref("train-encoder"),
                "device": settings.device,
                "wait_s": wait_s,
            },
            tuple(f"features/{b}" for b in everyone),
            records=("records/train-gnn@*.json",),
            resources=gpu,
            priority=10,
        )
    )
    run = Ref("train-gnn")
    if wanted("evaluate"):
        tasks.append(
            Task(
                "evaluate",
                T.evaluate,
                {"cohort_root": root, "run": run, "device": settings.device},
                records=("records/evaluate@*.json",),
            )
        )
    if not wanted("predict"):
        return tasks
    for b in selected:
        tasks.append(
            Task(
                f"predict/{b}",
                T.predict,
                {
                    "cohort_root": root,
                    "brain_id": b,
                    "run": run,
                    "device": settings.device,
                    "wait_s": wait_s,
                },
                records=(f"{b}/records/predict@*.json",),
            )  # fmt: skip
        )
    # the stages that draw a run's predictions, each brain after its predict task
    for stage, func, enabled in (
        ("project", T.project, wanted("project")),
        ("render", T.render, wanted("render") and settings.render),
    ):
        if not enabled:
            continue
        for b in selected:
            tasks.append(
                Task(
                    f"{stage}/{b}",
                    func,
                    {"cohort_root": root, "brain_id": b, "run": run, "wait_s": wait_s},
                    (f"predict/{b}",),
                    records=(f"{b}/records/{stage}@*.json",),
                )
            )
    if wanted("map3d") and settings.map3d_areas:
        from cortexgraph.data.names import slug

        for b in selected:
            keys = []
            for area in settings.map3d_areas:
                source_kwargs: dict[str, Any]
                if settings.map3d_source == "gnn":
                    source_kwargs = {"run": run}
                    deps: tuple[str, ...] = (f"project/{b}", f"build-graph/{b}")
                elif settings.map3d_source == "lsm":
                    source_kwargs = {"source": lsm_run}
                    deps = (f"build-graph/{b}", f"lsm-predict/{b}/{slug(area)}")
                else:
                    source_kwargs = {"source": settings.map3d_source}
                    deps = (f"build-graph/{b}",)
                key = f"map3d/{b}/{slug(area)}"
                keys.append(key)
                tasks.append(
                    Task(
                        key,
                        _map3d,
                        {
                            "cohort_root": root,
                            "brain_id": b,
                            "area": area,
                            "wait_s": wait_s,
                            **source_kwargs,
                        },
                        deps,
                        records=(
                            f"{b}/records/map3d@*@{slug(area)}.json",
                            f"{b}/records/stats@*@{slug(area)}.json",
                        ),
                    )  # fmt: skip
                )
            tasks.append(
                Task(
                    f"stats-table/{b}",
                    _stats_table,
                    {
                        "cohort_root": root,
                        "brain_id": b,
                        "wait_s": wait_s,
                        **(
                            {"run": run}
                            if settings.map3d_source == "gnn"
                            else {"source": lsm_run}
                            if settings.map3d_source == "lsm"
                            else {"source": settings.map3d_source}
                        ),
                    },
                    tuple(keys),
                    records=(f"{b}/records/stats-table@*.json",),
                )  # fmt: skip
            )
    return tasks


def _lsm_settings(settings: CohortSettings) -> dict[str, Any]:
    """Keyword arguments of :class:`~cortexgraph.lsm.stages.LSMRun` of the graph's LSM run."""
    lsm = dict(settings.lsm)
    lsm.setdefault("seed", settings.seed)
    for key in ("extent", "interval"):
        if lsm.get(key) is not None:
            lsm[key] = [int(v) for v in lsm[key]]
    return lsm


def _lsm_run_name(settings: CohortSettings) -> str:
    """The name of the graph's LSM run (``lsm.name``, else ``<kind>-<arch>``)."""
    from cortexgraph.lsm.layout import check_run_name, default_run_name

    lsm = settings.lsm
    name = lsm.get("name") or default_run_name(lsm.get("kind", "lsm"), lsm.get("arch", "ms"))
    return check_run_name(str(name))


def _lsm_tasks(
    root: str,
    brains: Sequence[str],
    settings: CohortSettings,
    wait_s: float,
    gpu: Mapping[str, float] | None,
) -> list[Task]:
    """The LSM tasks of every brain and area: plan -> train (one task per interval) -> predict.

    The intervals come from :func:`cortexgraph.lsm.stages.preview_plan` (the current annotations,
    nothing written); on a phantom that the graph makes first they are not known yet, and one
    training task trains every model of the plan. A gsm run has one training task (its global
    model). Prediction is one task per area: ``lsm-predict`` is one stage execution per (run,
    area) whose record lists every predicted section, so a task per interval or per section would
    be a second writer of that record.
    """
    from cortexgraph.data.names import slug
    from cortexgraph.lsm.layout import interval_name, run_kind

    lsm = _lsm_settings(settings)
    name = _lsm_run_name(settings)
    kind = run_kind(name)
    tasks: list[Task] = []
    for b in brains:
        for area in settings.lsm_areas:
            area_key = slug(area)
            common = {
                "cohort_root": root,
                "brain_id": b,
                "area": area,
                "settings": lsm,
                "device": settings.device,
                "wait_s": wait_s,
            }
            plan_key = f"lsm-plan/{b}/{area_key}"
            tasks.append(
                Task(
                    plan_key,
                    T.lsm_plan,
                    common,
                    (f"check/{b}",),
                    records=(f"{b}/records/lsm-plan@{name}@{area_key}.json",),
                )
            )
            intervals: list[tuple[int, int] | None]
            if kind == "gsm" or settings.synth_preset is not None:
                intervals = [None]
            else:
                from cortexgraph.lsm.stages import preview_plan

                run = T._lsm_run(root, b, area, lsm, "cpu", 0.0)
                intervals = list(preview_plan(run).intervals)
            train_keys = []
            for interval in intervals:
                if interval is not None:
                    part, record = interval_name(interval), f"@{interval_name(interval)}"
                else:
                    part, record = ("global", "") if kind == "gsm" else ("all", "@*")
                key = f"lsm-train/{b}/{area_key}/{part}"
                train_keys.append(key)
                tasks.append(
                    Task(
                        key,
                        T.lsm_train,
                        {
                            **common,
                            "plan": Ref(plan_key),
                            "interval": None if interval is None else list(interval),
                        },
                        records=(f"{b}/records/lsm-train@{name}@{area_key}{record}.json",),
                        resources=gpu,
                        priority=5,
                    )
                )
            tasks.append(
                Task(
                    f"lsm-predict/{b}/{area_key}",
                    T.lsm_predict,
                    common,
                    tuple(train_keys),
                    records=(f"{b}/records/lsm-predict@{name}@{area_key}.json",),
                )
            )
    return tasks


def _source(source: str | None, run: str | None) -> str:
    return source if source is not None else f"gnn-{run}"


def _map3d(cohort_root, brain_id, area, wait_s, source=None, run=None):
    return T.map3d(cohort_root, brain_id, area, _source(source, run), wait_s)


def _stats_table(cohort_root, brain_id, wait_s, source=None, run=None):
    return T.stats_table(cohort_root, brain_id, _source(source, run), wait_s)


# --------------------------------------------------------------------------------------------------
# running


def _record_stamps(derivatives: Path, globs: Sequence[str]) -> dict[Path, tuple]:
    """``{record path: (host, pid, started_unix)}`` of the records matching ``globs`` (unreadable
    ones are left out)."""
    stamps: dict[Path, tuple] = {}
    for pattern in globs:
        for path in derivatives.glob(pattern):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            stamps[path] = (record.get("host"), record.get("pid"), record.get("started_unix"))
    return stamps


def _computed_here(
    derivatives: Path, globs: Sequence[str], before: Mapping[Path, tuple]
) -> bool | None:
    """Whether this process wrote one of the records matching ``globs`` while the task ran: a
    record that is new or changed since ``before`` (:func:`_record_stamps` taken when the task
    started) and names this host and process (the stage computed). False when the records were
    there already, or were written by another run (reused, possibly after waiting for its lock);
    None when the task has no records. Comparing stamps rather than times keeps two runs of the
    same stage in one process within a second of each other apart."""
    if not globs:
        return None
    here = (socket.gethostname(), os.getpid())
    after = _record_stamps(derivatives, globs)
    return any(stamp[:2] == here and before.get(path) != stamp for path, stamp in after.items())


_WORKER_LOGGING = False


def _worker_logging() -> None:
    """Log lines of cortexgraph in a Dask worker go to its stderr (INFO with --verbose)."""
    global _WORKER_LOGGING
    if _WORKER_LOGGING:
        return
    _WORKER_LOGGING = True
    logger = logging.getLogger("cortexgraph")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(f"%(levelname)s %(name)s [worker {os.getpid()}]: %(message)s")
        )
        logger.addHandler(handler)
    verbose = os.environ.get("CORTEXGRAPH_VERBOSE") == "1"
    logger.setLevel(logging.INFO if verbose else logging.WARNING)


def execute(task: Task, derivatives: str | os.PathLike, values: Mapping[str, Any]) -> dict:
    """Run one task in this process; returns its result record.

    ``values`` maps task keys to their return values (for :class:`Ref` arguments). The record holds
    ``key``, ``value``, ``started_unix``, ``seconds``, ``cpu_seconds``, ``reused`` (False: the task's stage computed and
    recorded its outputs; True: they were up to date, or another run computed them while this one
    waited for the lock; None for tasks without records), ``host``, ``pid`` and
    ``peak_rss_mb`` (peak resident memory of this process so far). Exceptions become
    :class:`TaskFailed` naming the task.
    """
    derivatives = Path(derivatives)
    kwargs = {k: values[v.key] if isinstance(v, Ref) else v for k, v in task.kwargs.items()}
    started = time.time()
    before = _record_stamps(derivatives, task.records)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        value = task.func(**kwargs)
    except TaskFailed:
        raise
    except CortexgraphError as exc:
        raise TaskFailed(task.key, str(exc), exc.exit_code) from exc
    except Exception as exc:  # a bug, or an error of a library: keep the type in the message
        raise TaskFailed(task.key, f"{type(exc).__name__}: {exc}", 1) from exc
    computed = _computed_here(derivatives, task.records, before)
    return {
        "key": task.key,
        "value": value,
        "started_unix": started,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "reused": None if computed is None else not computed,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def _execute_on_worker(key: str, task_pickle: bytes, derivatives: str, values: dict[str, Any]):
    """Dask entry: ``values`` maps each upstream task's key to its return value.

    The task arrives pickled, and is unpickled here rather than by Dask: a task whose function the
    worker cannot import (a worker started from another environment, a function defined in a
    script) then fails with a message, where Dask would fail to deserialise the message on the
    worker's connection and the run would wait forever.
    """
    import pickle

    _worker_logging()
    try:
        task = pickle.loads(task_pickle)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is reported the same way
        raise TaskFailed(
            key,
            f"the worker cannot load the task ({type(exc).__name__}: {exc}); the workers must "
            "run in an environment where cortexgraph and the task's function can be imported "
            "(the same virtual environment and PYTHONPATH as this command)",
            exit_code=2,
        ) from None
    return execute(task, derivatives, values)


@dataclass
class GraphReport:
    """What a run of the graph did.

    results : key -> result record (:func:`execute`) of every task that finished.
    failed : key -> (message, exit code) of every task that raised.
    skipped : key -> key of the failed task upstream of it.
    seconds : wall time of the run.
    engine : :meth:`Engine.describe` of the engine it ran on.
    """

    results: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, tuple[str, int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    engine: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped

    def value(self, key: str) -> Any:
        return self.results[key]["value"]

    def workers(self) -> dict[str, dict]:
        """Per worker process (``host:pid``): tasks run, their seconds, its peak memory (MB)."""
        out: dict[str, dict] = {}
        for r in self.results.values():
            w = out.setdefault(
                f"{r['host']}:{r['pid']}", {"tasks": 0, "seconds": 0.0, "peak_rss_mb": 0.0}
            )
            w["tasks"] += 1
            w["seconds"] += r["seconds"]
            w["peak_rss_mb"] = max(w["peak_rss_mb"], r["peak_rss_mb"])
        return out

    def raise_for_failures(self) -> None:
        """CortexgraphError (exit status of the first failure) when a task failed."""
        if not self.failed:
            return
        key, (message, code) = next(iter(self.failed.items()))
        more = len(self.failed) - 1
        error = CortexgraphError(
            f"task {key} failed: {message}"
            + (f" (and {more} more failed task(s))" if more else "")
            + (f"; {len(self.skipped)} task(s) downstream were not run" if self.skipped else ""),
            fix="fix the cause and run the same command again: finished stages are reused",
        )
        error.exit_code = code if code in (2, 3, 4, 5) else 1
        raise error


Progress = Callable[[str, dict, int, int], None]


def run_graph(
    tasks: Sequence[Task],
    engine,
    cohort_root: str | os.PathLike,
    progress: Progress | None = None,
) -> GraphReport:
    """Run ``tasks`` on ``engine`` (:func:`cortexgraph.execution.engine.open_engine`).

    Parameters
    ----------
    tasks : in dependency order (:func:`cohort_graph`).
    engine : serial or Dask.
    cohort_root : the cohort (its derivatives folder holds the stage records).
    progress : called ``(state, record, done, total)`` when a task ends; ``state`` is ``done``,
        ``failed`` or ``skipped``.

    Returns
    -------
    :class:`GraphReport`. Lost workers are replaced and their tasks rerun by Dask; a task that
    raised is rerun ``engine.options.retries`` times.
    """
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    seen: set[str] = set()
    for t in tasks:
        missing = [d for d in t.dependencies() if d not in seen]
        if missing:
            raise ValueError(f"task {t.key} depends on {missing} listed after it (or missing)")
        seen.add(t.key)
    derivatives = Path(cohort_root) / DERIVATIVES
    report = GraphReport(engine=engine.describe())
    notify = progress or (lambda state, record, done, total: None)
    total = len(tasks)
    start = time.perf_counter()
    waiting = list(tasks)

    def upstream_values(t: Task) -> dict[str, Any]:
        return {d: report.results[d]["value"] for d in t.dependencies()}

    def failed(key: str, message: str, code: int) -> None:
        report.failed[key] = (message, code)
        notify("failed", {"key": key, "message": message}, _done(report), total)

    def ready_tasks(at_most: int | None = None) -> list[Task]:
        """Take off ``waiting`` the tasks whose upstream tasks have all finished (at most
        ``at_most``, in list order), skipping those below a failure on the way (``tasks`` are in
        dependency order, so a skip reaches everything below it in one pass)."""
        nonlocal waiting
        ready: list[Task] = []
        rest: list[Task] = []
        for n, t in enumerate(waiting):
            if at_most is not None and len(ready) == at_most:
                rest.extend(waiting[n:])
                break
            deps = t.dependencies()
            upstream_failed = next(
                (
                    report.skipped.get(d, d)
                    for d in deps
                    if d in report.failed or d in report.skipped
                ),
                None,
            )
            if upstream_failed is not None:
                report.skipped[t.key] = upstream_failed
                notify("skipped", {"key": t.key, "upstream": upstream_failed}, _done(report), total)
            elif all(d in report.results for d in deps):
                ready.append(t)
            else:
                rest.append(t)
        waiting = rest
        return ready

    if engine.serial:
        # one task at a time, in the order given
        while batch := ready_tasks(at_most=1):
            (t,) = batch
            try:
                record = execute(t, derivatives, upstream_values(t))
            except TaskFailed as exc:
                failed(t.key, exc.message, exc.exit_code)
                continue
            report.results[t.key] = record
            notify("done", record, _done(report), total)
        report.seconds = time.perf_counter() - start
        return report

    # A task goes to Dask when its upstream tasks have finished, with their return values as plain
    # arguments, not as futures: Dask places a task that depends on futures only on the workers that
    # hold them, so every per-brain task below one setup task (the phantom's cohort files, the
    # encoder) queued on the worker that ran it while the others idled. Without data dependencies
    # the scheduler spreads ready tasks by the workers' occupancy.
    from distributed import as_completed

    client = engine.client
    token = secrets.token_hex(4)
    by_future: dict[str, str] = {}
    submitted: list[Any] = []
    running = as_completed()
    import cloudpickle  # a dependency of distributed

    def submit_ready() -> None:
        for t in ready_tasks():
            future = client.submit(
                _execute_on_worker,
                t.key,
                cloudpickle.dumps(t),
                str(derivatives),
                upstream_values(t),
                key=f"{t.key}#{token}",
                pure=False,
                retries=engine.options.retries,
                resources=dict(t.resources) if t.resources else None,
                priority=t.priority,
            )
            by_future[future.key] = t.key
            submitted.append(future)
            running.add(future)

    try:
        submit_ready()
        for future in running:
            key = by_future[future.key]
            if future.status == "finished":
                record = future.result()
                report.results[key] = record
                notify("done", record, _done(report), total)
            else:
                error = future.exception()
                if isinstance(error, TaskFailed):
                    failed(key, error.message, error.exit_code)
                else:
                    failed(key, f"{type(error).__name__}: {error}", 1)
            submit_ready()
    finally:
        pending = [f for f in submitted if not f.done()]
        if pending:
            client.cancel(pending)
    report.seconds = time.perf_counter() - start
    return report


def _done(report: GraphReport) -> int:
    return len(report.results) + len(report.failed) + len(report.skipped)
