"""Names and places of everything the LSM workflow writes: model runs, stages, files.

A **model run** is a named set of segmentation models of one kind and architecture on one brain:
``lsm-ms``, ``gsm-hr`` (the defaults ``<kind>-<arch>``) or a custom name that starts with the kind
(``lsm-ms-long``, ``gsm-hr-seed3``). The run name is the *label source* under which consumers
(``project``, ``map3d``, ``stats``, ``render``) find the run's labels. A run holds one chain of models
per area; two runs never share a file.

Files, under the brain's derivatives folder ``OUT`` = ``<cohort>/derivatives/cortexgraph/<brain>``::

    OUT/lsm/<run>/<area>/chain.json                      the chain plan (stage lsm-plan)
    OUT/lsm/<run>/<area>/models/sSSSS-sTTTT/model.pt     one LSM, with history.json and rois.npz
    OUT/lsm/<run>/<area>/models/global/model.pt          the area's GSM (a gsm-* run), same companions
    OUT/lsm/<run>/<area>/pred/sNNNN.h5                   the area's class prediction on section NNNN
    OUT/lsm/<run>/evaluation/metrics.tsv, summary.json, table.tsv, table.md   (lsm evaluate)
    OUT/records/lsm-plan@<run>@<area>.json               stage records (cortexgraph.derivatives)
    OUT/records/lsm-train@<run>@<area>@sSSSS-sTTTT.json
    OUT/records/lsm-train@<run>@<area>.json              (the GSM of a gsm-* run)
    OUT/records/lsm-predict@<run>@<area>.json
    OUT/records/lsm-evaluate@<run>.json

``<area>`` is the area's file-name form (:func:`cortexgraph.data.names.slug` of its name in
``areas.tsv``); ``evaluation`` is reserved (an area of that name is refused). Prediction rasters are
``write_raster(kind="labels")`` uint8 images in the raw section frame at the model's output spacing:
0 slide, 1 white matter, 2 other cortex, 3 the area, 255 outside the prediction ROI.
"""

from __future__ import annotations

from pathlib import Path

from cortexgraph.data.manifest import Area
from cortexgraph.data.names import check_name, slug
from cortexgraph.derivatives.stages import StageId
from cortexgraph.errors import CortexgraphError

__all__ = [
    "KINDS",
    "RESERVED_AREA_NAMES",
    "default_run_name",
    "check_run_name",
    "run_kind",
    "area_slug",
    "interval_name",
    "run_dir",
    "area_dir",
    "plan_path",
    "model_dir",
    "prediction_path",
    "evaluation_dir",
    "LSM_JOB_COMMANDS",
    "is_brain_job",
    "brain_jobs",
    "brain_job",
    "plan_id",
    "train_id",
    "predict_id",
    "evaluate_id",
    "section_of_prediction",
]

KINDS = ("lsm", "gsm")
RESERVED_AREA_NAMES = ("evaluation",)


def default_run_name(kind: str, arch: str) -> str:
    """``<kind>-<arch>``: the run name when ``--name`` is not given."""
    from cortexgraph.lsm.networks import ARCHITECTURES

    if kind not in KINDS:
        raise CortexgraphError(f"unknown model kind {kind!r}", fix="use lsm or gsm")
    if arch not in ARCHITECTURES:
        raise CortexgraphError(f"unknown architecture {arch!r}", fix="use hr, lr or ms")
    return f"{kind}-{arch}"


def run_kind(name: str) -> str:
    """``lsm`` or ``gsm``: the kind a run name starts with (CortexgraphError for anything else)."""
    check_name(name, "LSM run name")
    kind, sep, rest = name.partition("-")
    if kind not in KINDS or not sep or not rest:
        raise CortexgraphError(
            f"LSM run name {name!r} does not start with 'lsm-' or 'gsm-'",
            fix="name local-model runs lsm-<something> and global-model runs gsm-<something> "
            "(e.g. lsm-ms, gsm-hr-long)",
        )
    return kind


def check_run_name(name: str, kind: str | None = None) -> str:
    """Return ``name`` if it is a valid run name (of ``kind`` when given), else CortexgraphError."""
    found = run_kind(name)
    if kind is not None and found != kind:
        raise CortexgraphError(
            f"run name {name!r} is a {found} name, but this command makes {kind} models",
            fix=f"name the run {kind}-<something>",
        )
    return name


def area_slug(area: Area) -> str:
    """The area's file-name form; refuses the reserved names (:data:`RESERVED_AREA_NAMES`)."""
    name = slug(area.name)
    if name in RESERVED_AREA_NAMES:
        raise CortexgraphError(
            f"area {area.name!r} has the file name {name!r}, which the LSM layout reserves",
            fix="rename the area in areas.tsv",
        )
    return name


def interval_name(interval: tuple[int, int]) -> str:
    """``sSSSS-sTTTT`` of a training pair."""
    s, t = (int(v) for v in interval)
    return f"s{s:04d}-s{t:04d}"


def run_dir(out_dir: Path, run: str) -> Path:
    return Path(out_dir) / "lsm" / check_run_name(run)


def area_dir(out_dir: Path, run: str, area: Area) -> Path:
    return run_dir(out_dir, run) / area_slug(area)


def plan_path(out_dir: Path, run: str, area: Area) -> Path:
    return area_dir(out_dir, run, area) / "chain.json"


def model_dir(out_dir: Path, run: str, area: Area, interval: tuple[int, int] | None) -> Path:
    """``models/sSSSS-sTTTT`` (an LSM) or ``models/global`` (``interval`` None: the GSM)."""
    name = "global" if interval is None else interval_name(interval)
    return area_dir(out_dir, run, area) / "models" / name


def prediction_path(out_dir: Path, run: str, area: Area, section: int) -> Path:
    return area_dir(out_dir, run, area) / "pred" / f"s{int(section):04d}.h5"


def section_of_prediction(path: str | Path) -> int:
    """Section number of a prediction file name ``sNNNN.h5``."""
    stem = Path(path).name.removesuffix(".h5")
    if not (stem.startswith("s") and stem[1:].isdigit()):
        raise ValueError(f"not a prediction file name: {path}")
    return int(stem[1:])


def evaluation_dir(out_dir: Path, run: str) -> Path:
    return run_dir(out_dir, run) / "evaluation"


#: ``cortexgraph lsm`` commands that run as background jobs (``--background``, the web app).
LSM_JOB_COMMANDS = ("chain", "gsm", "train", "predict")


def is_brain_job(argv, brain) -> bool:
    """True when a job's command (``argv`` after ``cortexgraph``) is an LSM command on ``brain``:
    ``lsm <command> BRAIN ...`` with BRAIN the brain's folder or id. Background jobs live in the
    cohort's jobs folder (:func:`cortexgraph.execution.launcher.jobs_folder`); this picks a brain's."""
    argv = [str(a) for a in argv or ()]
    if len(argv) < 3 or argv[0] != "lsm" or argv[1] not in LSM_JOB_COMMANDS:
        return False
    if argv[2] == brain.id:
        return True
    try:
        return Path(argv[2]).resolve() == Path(brain.root).resolve()
    except OSError:
        return False


def _job_argv(launcher, job_id: str) -> list:
    try:
        return launcher.record(job_id).get("spec", {}).get("argv", [])
    except Exception:  # noqa: BLE001 - an unreadable job.json is nobody's job
        return []


def brain_jobs(launcher, brain) -> list[dict]:
    """The brain's LSM jobs of a jobs folder (:func:`is_brain_job`), oldest first, as
    :meth:`cortexgraph.execution.launcher.Launcher.status`."""
    return [
        launcher.status(job_id)
        for job_id in launcher.ids()
        if is_brain_job(_job_argv(launcher, job_id), brain)
    ]


def brain_job(launcher, brain, job_id: str) -> dict:
    """One of the brain's jobs (CortexgraphError, exit status 2, for an unknown or unsafe id or a
    job of another brain or command)."""
    from cortexgraph.errors import CortexgraphError

    launcher.job_dir(job_id)  # checks the id
    if not is_brain_job(_job_argv(launcher, job_id), brain):
        raise CortexgraphError(
            f"job {job_id} is not an LSM job of brain {brain.id}",
            file=str(launcher.jobs_root / job_id),
            fix=f"list the brain's jobs with `cortexgraph lsm jobs list {brain.id}`",
        )
    return launcher.status(job_id)


def plan_id(brain_id: str, run: str, area: Area) -> StageId:
    return StageId("lsm-plan", brain_id, (check_run_name(run), area_slug(area)))


def train_id(brain_id: str, run: str, area: Area, interval: tuple[int, int] | None) -> StageId:
    """The lsm-train execution of one LSM interval, or of the GSM (``interval`` None)."""
    scope: tuple[str, ...] = (check_run_name(run), area_slug(area))
    if interval is not None:
        scope += (interval_name(interval),)
    return StageId("lsm-train", brain_id, scope)


def predict_id(brain_id: str, run: str, area: Area) -> StageId:
    return StageId("lsm-predict", brain_id, (check_run_name(run), area_slug(area)))


def evaluate_id(brain_id: str, run: str) -> StageId:
    return StageId("lsm-evaluate", brain_id, (check_run_name(run),))
