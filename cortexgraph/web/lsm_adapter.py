"""The web app's only contact with the LSM workflow: start, list and cancel jobs; find predictions.

Everything here calls the command line's own functions, so a job started from the browser is the same
job as one started with ``cortexgraph lsm ... --background``: it runs ``cortexgraph lsm train ...``
as a job of the cohort's local engine (:func:`cortexgraph.execution.launcher.cohort_launcher`), lives
in the cohort's jobs folder ``derivatives/cortexgraph/jobs/<id>/`` and shows up in ``cortexgraph jobs
list`` and ``cortexgraph lsm jobs list BRAIN``; a job started from the shell shows up in the browser.

The engine: the app attaches to the cohort's running engine, or starts one on the first job, owned by
the server process (``owner_pid``): when the server ends (cleanly, :func:`close_engines`, or not),
the engine cancels its jobs and stops, so no job outlives the server it was started from
(:mod:`cortexgraph.execution.service`).

The functions and what they call (re-point them here when the LSM layout or the job engine changes;
nothing else in :mod:`cortexgraph.web` knows the layout):

=========================  ===========================================================================
:func:`jobs_root`           :func:`cortexgraph.execution.launcher.jobs_folder` of the brain's cohort
:func:`interval_argv`       the argv of ``cortexgraph lsm train BRAIN --area ID --sections S,T
                            --predict`` (train the local model of the interval, then predict every
                            section of [S, T]): a model run of its own, ``lsm-<arch>-sSSSS-sTTTT``
:func:`start_interval_job`  ``Launcher.submit`` (:mod:`cortexgraph.execution.launcher`)
:func:`list_jobs`,          :func:`cortexgraph.lsm.layout.brain_jobs`, ``brain_job``,
                            ``Launcher.cancel``
:func:`job_status`,
:func:`cancel_job`
:func:`prediction_sets`     the per-area prediction folders of the brain (model run, area):
                            ``<brain>/lsm/<run>/<area>/pred/`` (:mod:`cortexgraph.lsm.layout`)
:func:`prediction_files`    ``{section: pred/sNNNN.h5}`` of one run and area; while a job predicts,
                            the files written so far (each complete: written atomically), so the
                            sections appear one by one before the stage's record exists
:func:`job_target`          the source, area and interval a job's predictions land in (from its argv)
:func:`job_predictions`     the sections of a job's interval whose prediction the job has written or
                            kept: the first ``done`` sections of the run's plan (``chain.json``),
                            ``done`` from the job's own ``progress.json``, since the predict stage
                            handles the plan's sections in order
=========================  ===========================================================================

Prediction files are label rasters of classes: 0 slide, 1 white matter, 2 other cortex, 3 the area,
255 outside the prediction ROI (docs/lsm.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cortexgraph.data.manifest import Area, Brain
from cortexgraph.data.names import check_name, is_inside
from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm import layout
from cortexgraph.web.security import NotFoundError

__all__ = [
    "CLASS_AREA",
    "OUTSIDE_ROI",
    "IntervalTraining",
    "PredictionSet",
    "jobs_root",
    "launcher_of",
    "launcher_for",
    "close_engines",
    "interval_argv",
    "start_interval_job",
    "list_jobs",
    "job_status",
    "cancel_job",
    "job_predictions",
    "job_target",
    "prediction_sets",
    "prediction_files",
    "source_of",
]

CLASS_AREA = 3
OUTSIDE_ROI = 255
_SECTION_FILE = re.compile(r"s(\d+)\.h5")


@dataclass(frozen=True)
class PredictionSet:
    """One area's predictions of one label source (model run) on a brain."""

    source: str
    area: Area
    folder: Path


_LAUNCHERS: dict = {}
_LOCK = threading.Lock()


def _cohort_root(brain: Brain) -> Path:
    from cortexgraph.derivatives import Derivatives

    return Derivatives.of(brain).cohort_root


def jobs_root(brain: Brain) -> Path:
    """The jobs folder of the brain's cohort (every job of the cohort; a brain's are those whose
    command is an LSM command on it)."""
    from cortexgraph.execution.launcher import jobs_folder

    return jobs_folder(_cohort_root(brain))


def launcher_of(brain: Brain):
    """The launcher of the brain's cohort, one per cohort and server process; the engine it starts
    is owned by this process (module docstring)."""
    return launcher_for(_cohort_root(brain))


def launcher_for(cohort_root: Path):
    """The launcher of a cohort (:func:`launcher_of`)."""
    from cortexgraph.execution.launcher import cohort_launcher

    root = Path(cohort_root).resolve()
    with _LOCK:
        launcher = _LAUNCHERS.get(root)
        if launcher is None:
            launcher = _LAUNCHERS[root] = cohort_launcher(root, owner_pid=os.getpid())
        return launcher


def close_engines() -> list[Path]:
    """Stop the engines this process started (their jobs are cancelled cleanly) and close the
    clients of the others; returns the cohorts whose engine was stopped. Called when the app shuts
    down."""
    from cortexgraph.execution.service import stop_service

    stopped = []
    with _LOCK:
        launchers = dict(_LAUNCHERS)
        _LAUNCHERS.clear()
    for root, launcher in launchers.items():
        launcher.close()
        if launcher.started_engine:
            with contextlib.suppress(CortexgraphError, OSError):
                if stop_service(root):
                    stopped.append(root)
    return stopped


def _flat(status: dict) -> dict:
    """A launcher status with the command (``argv``) at the top, as the routes show it."""
    return {**status, "argv": list(status.get("spec", {}).get("argv", []))}


def source_of(arch: str, interval: tuple[int, int]) -> str:
    """The model run (label source) a local model of ``arch`` on ``interval`` writes:
    ``lsm-<arch>-sSSSS-sTTTT``, the default run name of ``cortexgraph lsm train``."""
    layout.default_run_name("lsm", arch)  # validates the architecture
    return f"lsm-{arch}-{layout.interval_name(interval)}"


@dataclass(frozen=True)
class IntervalTraining:
    """How the local model of an interval is trained: the options of ``cortexgraph lsm train`` that
    the web app sets."""

    arch: str = "ms"  #: --arch: the network architecture
    preset: str = "auto"  #: --preset
    iterations: int | None = None  #: --iterations; None: the preset's
    seed: int = 0  #: --seed
    max_interval_mm: float | None = None  #: --max-interval-mm (mm); None: the command's default


def interval_argv(
    brain: Brain,
    area: Area,
    interval: tuple[int, int],
    training: IntervalTraining | None = None,
) -> list[str]:
    """The command (after ``cortexgraph``) that trains the local model of ``interval`` (two section
    numbers) with ``training`` (default :class:`IntervalTraining`) and predicts the sections between
    its two ends."""
    training = training or IntervalTraining()
    s, t = sorted(int(v) for v in interval)
    argv = ["lsm", "train", str(brain.root), "--area", str(area.id), "--sections", f"{s},{t}"]
    argv += ["--arch", training.arch, "--preset", training.preset]
    argv += ["--seed", str(int(training.seed)), "--predict"]
    if training.iterations is not None:
        argv += ["--iterations", str(int(training.iterations))]
    if training.max_interval_mm is not None:
        argv += ["--max-interval-mm", f"{float(training.max_interval_mm):g}"]
    return argv


def start_interval_job(
    brain: Brain,
    area: Area,
    interval: tuple[int, int],
    training: IntervalTraining | None = None,
    *,
    threads: int | None = None,
) -> str:
    """Submit the local model of ``interval`` (:func:`interval_argv`) as a job of the cohort's
    engine; returns the job id.

    ``threads``: the CPU cores the job asks the engine for, and ``OMP_NUM_THREADS`` of its process.
    """
    from cortexgraph.execution.launcher import JobSpec

    training = training or IntervalTraining()
    s, t = sorted(int(v) for v in interval)
    argv = interval_argv(brain, area, (s, t), training)
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}
    name = f"web-{layout.area_slug(area)}-{training.arch}-{s}-{t}"
    spec = JobSpec(name=name, argv=argv, cpus=int(threads or 1), env=env, cwd=str(brain.root))
    return launcher_of(brain).submit(spec)


def _job_dir(brain: Brain, job_id: str) -> Path:
    check_name(job_id, "job id")
    root = jobs_root(brain)
    folder = root / job_id
    if not (folder / "job.json").is_file() or not is_inside(folder, root):
        raise NotFoundError(f"brain {brain.id} has no job {job_id!r}")
    try:
        argv = json.loads((folder / "job.json").read_text(encoding="utf-8"))["spec"]["argv"]
    except (OSError, ValueError, KeyError, TypeError):
        argv = []
    if not layout.is_brain_job(argv, brain):
        raise NotFoundError(f"brain {brain.id} has no job {job_id!r}")
    return folder


def job_target(brain: Brain, job: dict) -> dict | None:
    """``{"source", "area_id", "interval"}`` of a local-model job (from its argv), else None."""
    argv = [str(a) for a in job.get("argv", [])]
    if len(argv) < 2 or argv[0] != "lsm" or argv[1] not in ("train", "predict", "chain"):
        return None

    def option(name: str) -> str | None:
        return argv[argv.index(name) + 1] if name in argv[:-1] else None

    area_key = option("--area")
    if area_key is None or brain.cohort is None:
        return None
    try:
        area = brain.cohort.areas.resolve(area_key)
    except Exception:  # noqa: BLE001 - a job of an area no longer in the table
        return None
    arch = (option("--arch") or "ms").split(",")[0]
    sections = option("--sections")
    interval = sorted(int(v) for v in sections.split(",")) if sections else None
    name = option("--name")
    if name is None and interval is not None:
        # the job's argv came from interval_argv: two sections
        name = source_of(arch, cast("tuple[int, int]", tuple(interval)))
    if name is None:
        name = layout.default_run_name("lsm", arch)
    return {"source": name, "area_id": area.id, "interval": interval}


def job_predictions(brain: Brain, job: dict, target: dict | None) -> list[int]:
    """The sections strictly inside a local-model job's interval whose prediction the job has
    written, or kept because it was current, so far (ascending; empty for other jobs).

    Read from the job itself, never from file times: the predict stage handles the sections of the
    run's plan in the plan's order and reports ``predict [done, total]`` to the job's
    ``progress.json``, so the first ``done`` plan sections are the ones it has finished. A job that
    ended ``done`` without a predict report reused the whole stage (its predictions were current):
    every plan section counts. A file that another job wrote into the same folder is never counted,
    and a prediction the job kept is.
    """
    if not target or not target.get("interval") or brain.cohort is None:
        return []
    s, t = (int(v) for v in target["interval"])
    area = brain.cohort.areas.resolve(target["area_id"])
    done = (job.get("progress") or {}).get("predict")
    if done is None and job.get("state") != "done":
        return []
    try:
        plan = _read_plan(brain, target["source"], area)
    except (OSError, ValueError, KeyError, TypeError):
        plan = None  # being rewritten, or not a plan: nothing to show yet
    if plan is None:
        return []  # no plan yet: nothing predicted
    handled = plan.sections if done is None else plan.sections[: int(done[0])]
    files = prediction_files(brain, target["source"], area)
    return sorted(u for u in handled if s < u < t and u in files)


def list_jobs(brain: Brain) -> list[dict]:
    """Every LSM job of the brain (browser and shell), oldest first."""
    return [_flat(j) for j in layout.brain_jobs(launcher_of(brain), brain)]


def job_status(brain: Brain, job_id: str) -> dict:
    """One job's record and state (404 for an unknown id)."""
    _job_dir(brain, job_id)
    return _flat(launcher_of(brain).status(job_id))


def job_log_tail(brain: Brain, job_id: str, max_bytes: int = 4000) -> str:
    """The end of a job's log."""
    path = _job_dir(brain, job_id) / "log.txt"
    if not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - max_bytes))
        return handle.read().decode("utf-8", errors="replace")


def cancel_job(brain: Brain, job_id: str, timeout_s: float = 20.0) -> dict:
    """Stop a job cleanly (``Launcher.cancel``: SIGTERM to its command, which unwinds without
    half-written outputs; a queued job never starts); its status after at most ``timeout_s``."""
    _job_dir(brain, job_id)
    return _flat(launcher_of(brain).cancel(job_id, timeout_s=timeout_s))


def prediction_sets(brain: Brain) -> list[PredictionSet]:
    """Every (model run, area) of the brain with at least one prediction file."""
    base = brain.derivatives / "lsm"
    if brain.cohort is None or not base.is_dir():
        return []
    by_slug = {layout.area_slug(a): a for a in brain.cohort.areas.areas}
    found = []
    for run_folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if not run_folder.name.startswith(layout.KINDS):
            continue
        for area_folder in sorted(p for p in run_folder.iterdir() if p.is_dir()):
            area = by_slug.get(area_folder.name)
            pred = area_folder / "pred"
            if area is not None and pred.is_dir() and any(pred.glob("s*.h5")):
                found.append(PredictionSet(run_folder.name, area, pred))
    return found


def prediction_files(brain: Brain, source: str, area: Area) -> dict[int, Path]:
    """``{section: file}`` of one run's predictions of one area (empty when there are none)."""
    layout.check_run_name(source)
    folder = layout.area_dir(brain.derivatives, source, area) / "pred"
    if not folder.is_dir():
        return {}
    out = {}
    for path in folder.iterdir():
        match = _SECTION_FILE.fullmatch(path.name)
        if match and path.is_file():
            out[int(match.group(1))] = path
    return dict(sorted(out.items()))


def _read_plan(brain: Brain, run: str, area: Area):
    """The :class:`~cortexgraph.lsm.plan.ChainPlan` of a model run and area (its ``chain.json``),
    None when there is none; an unreadable file raises (OSError, ValueError, KeyError...)."""
    from cortexgraph.lsm.plan import ChainPlan

    path = layout.plan_path(brain.derivatives, run, area)
    if not path.is_file():
        return None
    return ChainPlan.from_dict(json.loads(path.read_text(encoding="utf-8")))


def chain_roles(brain: Brain, area: Area) -> dict[int, str]:
    """``{section: "train" | "test"}`` from the chain plans of the area's model runs (``lsm
    chain``, ``lsm train``), when there are any; later runs' roles win."""
    base = brain.derivatives / "lsm"
    roles: dict[int, str] = {}
    if not base.is_dir():
        return roles
    for run_folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if not run_folder.name.startswith(layout.KINDS):
            continue
        plan = _read_plan(brain, run_folder.name, area)
        if plan is None:
            continue
        roles.update(dict.fromkeys((int(s) for s in plan.test_sections), "test"))
        roles.update(dict.fromkeys((int(s) for s in plan.training_sections), "train"))
    return roles
