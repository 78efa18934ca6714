"""``cortexgraph lsm ...``: local segmentation models between annotated sections.

A thin layer over :mod:`cortexgraph.lsm.workflow` (training, prediction, chains, GSM, evaluation) and
:mod:`cortexgraph.lsm.jobs` (background jobs). Outputs: docs/lsm.md and docs/derivatives.md.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from pathlib import Path

import typer

from cortexgraph.cli.common import (
    OverwriteOption,
    RootOption,
    VerboseOption,
    console,
    reports_errors,
    setup_logging,
    stage_progress,
)

HELP = """Local segmentation models (LSM): one U-Net per interval between two annotated sections.

\b
  train     one model on two annotated sections s, t of an area
  predict   label the sections between s and t (or the whole chain) with trained models
  chain     models between consecutive training sections covering the area, then predict
  gsm       one global model per area (the baseline), then predict
  evaluate  F1 on left-out annotated sections (and the phantom's truth); the HR/LR/MS x LSM/GSM table
  jobs      list / follow / cancel background jobs (--background on train, predict, chain, gsm)
"""

lsm_app = typer.Typer(name="lsm", help=HELP, no_args_is_help=True, rich_markup_mode=None)
jobs_app = typer.Typer(
    name="jobs", help="Background jobs of a brain.", no_args_is_help=True, rich_markup_mode=None
)
lsm_app.add_typer(jobs_app, name="jobs")

BrainArgument = typer.Argument(..., help="Brain id (e.g. B01, with --root) or brain folder.")
AreaOption = typer.Option(..., "--area", help="Area name or id from areas.tsv.")
ArchOption = typer.Option("ms", "--arch", help="hr, lr or ms.")
ArchListOption = typer.Option("ms", "--arch", help="hr, lr, ms, or a comma-separated list.")
OutOption = typer.Option(
    None,
    "--derivatives",
    help="Write under DIR/<brain>/ instead of <cohort>/derivatives/cortexgraph/<brain>/ "
    "(e.g. for a read-only cohort).",
)
PresetOption = typer.Option(
    "auto", help="Model sizes: auto (from the image spacing), full, small, phantom, tiny."
)
IterationsOption = typer.Option(
    None, help="Training iterations (preset default; the seeds: 3000). Milestones scale with it."
)
SeedOption = typer.Option(0, help="Random seed (each model derives its own from it).")
StepOption = typer.Option(
    2, help="Every STEP-th annotated section of the area is a training section (2 = the seeds')."
)
ExtentOption = typer.Option(
    None, help="first,last section to predict (default: to the neighbouring annotated sections)."
)
TileOption = typer.Option(64, "--tile-px", help="Output tile edge for prediction (px).")
DeviceOption = typer.Option(None, help="torch device (cpu, cuda, cuda:1); default cpu.")
BackgroundOption = typer.Option(
    False, "--background", help="Run as a background job (see `cortexgraph lsm jobs`)."
)


def register(app: typer.Typer) -> None:
    """Add the ``lsm`` command group to the main app."""
    app.add_typer(lsm_app, name="lsm")


# --------------------------------------------------------------------------------------------------
# helpers


def _brain(name: str, root):
    from cortexgraph.data.manifest import find_brain

    return find_brain(name, root)


def _out_dir(brain, derivatives: Path | None) -> Path:
    if derivatives is None:
        return brain.derivatives
    return Path(derivatives).expanduser().resolve() / brain.id


def _archs(text: str) -> list[str]:
    from cortexgraph.errors import CortexgraphError
    from cortexgraph.lsm.networks import ARCHITECTURES

    archs = [a.strip().lower() for a in text.split(",") if a.strip()]
    bad = [a for a in archs if a not in ARCHITECTURES]
    if bad or not archs:
        raise CortexgraphError(f"unknown architecture(s) {bad or text!r}", fix="use hr, lr, ms")
    return archs


def _extent(text: str | None):
    from cortexgraph.lsm.workflow import parse_sections

    return None if not text else tuple(sorted(parse_sections(text)))


def _common_argv(
    brain, area, derivatives, preset, iterations, seed, device, overwrite, verbose
) -> list[str]:
    argv = [str(brain.root), "--area", str(area.id), "--preset", preset, "--seed", str(seed)]
    if derivatives is not None:
        argv += ["--derivatives", str(Path(derivatives).expanduser().resolve())]
    if iterations is not None:
        argv += ["--iterations", str(iterations)]
    if device:
        argv += ["--device", device]
    if overwrite:
        argv.append("--overwrite")
    if verbose:
        argv.append("--verbose")
    return argv


def _launch(out_dir: Path, argv: list[str], name: str, outputs: list[Path]) -> None:
    from cortexgraph.lsm.jobs import jobs_dir, start_job

    job_id = start_job(jobs_dir(out_dir), argv, name=name, outputs=outputs)
    console.print(f"[bold green]started job[/] {job_id}", highlight=False)
    console.print(
        f"  follow: cortexgraph lsm jobs follow {argv[2]} {job_id}"
        + (f" --derivatives {out_dir.parent}" if "--derivatives" in argv else ""),
        highlight=False,
    )
    typer.echo(job_id)


def _job_context():
    """The job's context when running as a background job, else a no-op context."""
    from cortexgraph.lsm.jobs import JobContext, current_job_dir

    job_dir = current_job_dir()
    return JobContext(job_dir) if job_dir is not None else nullcontext(None)


_JOB = None
"""The running job's :class:`~cortexgraph.lsm.jobs.JobContext` (None outside a job)."""


def runs_as_job(func):
    """Run the whole command inside the job's context when this process is a background job, so
    that its state records success, failure (any error, including bad arguments) or cancellation."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        global _JOB
        with _job_context() as job:
            _JOB = job
            try:
                return func(*args, **kwargs)
            finally:
                _JOB = None

    return wrapper


def _progress(job):
    """A progress callback: rich bars in a terminal, the job's state file in a job."""
    progress, callback = stage_progress()

    def both(stage: str, done: int, total: int) -> None:
        callback(stage, done, total)
        if job is not None:
            job.progress(stage, done, total)

    return progress, both


def _run(brain, area, arch, out_dir, preset, iterations, seed, device, overwrite, progress, **kw):
    from cortexgraph.lsm.workflow import LSMRun

    return LSMRun(
        brain=brain,
        area=area,
        arch=arch,
        out_dir=out_dir,
        preset=preset,
        iterations=iterations,
        seed=seed,
        device=device,
        overwrite=overwrite,
        progress=progress,
        **kw,
    )


def _outputs(out_dir: Path, area, sources: list[str]) -> list[Path]:
    from cortexgraph.lsm.workflow import area_dir

    return [area_dir(out_dir, area)] + [out_dir / "labels" / s for s in sources]


# --------------------------------------------------------------------------------------------------
# commands


@lsm_app.command("train")
@reports_errors
@runs_as_job
def train(
    brain_name: str = BrainArgument,
    area_key: str = AreaOption,
    sections: str = typer.Option(..., "--sections", help="The two training sections: s,t."),
    arch: str = ArchOption,
    iterations: int = IterationsOption,
    preset: str = PresetOption,
    seed: int = SeedOption,
    device: str = DeviceOption,
    predict: bool = typer.Option(
        False, "--predict", help="Also label every section between s and t."
    ),
    tile_px: int = TileOption,
    background: bool = BackgroundOption,
    derivatives: Path = OutOption,
    root: Path = RootOption,
    overwrite: bool = OverwriteOption,
    verbose: bool = VerboseOption,
) -> None:
    """Train one LSM on the annotated sections s and t of an area.

    Writes <brain>/lsm/<area>/lsm-<arch>/sSSSS-sTTTT/model.pt (+ history.json, provenance).
    """
    from cortexgraph.lsm.workflow import (
        parse_sections,
        predict_interval,
        resolve_area,
        source_name,
        train_interval,
    )

    setup_logging(verbose)
    brain = _brain(brain_name, root)
    area = resolve_area(brain, area_key)
    (arch,) = _archs(arch)
    interval = tuple(sorted(parse_sections(sections)))
    out_dir = _out_dir(brain, derivatives)
    if background:
        argv = ["lsm", "train"] + _common_argv(
            brain, area, derivatives, preset, iterations, seed, device, overwrite, verbose
        )
        argv += ["--sections", f"{interval[0]},{interval[1]}", "--arch", arch]
        argv += ["--tile-px", str(tile_px)] + (["--predict"] if predict else [])
        name = f"train-{area.name}-{arch}-{interval[0]}-{interval[1]}"
        _launch(out_dir, argv, name, _outputs(out_dir, area, [source_name("lsm", arch)]))
        return
    job = _JOB
    progress, callback = _progress(job)
    run = _run(
        brain,
        area,
        arch,
        out_dir,
        preset,
        iterations,
        seed,
        device,
        overwrite,
        callback,
        tile_px=tile_px,
    )
    with progress:
        path = train_interval(run, interval)
        written = predict_interval(run, interval) if predict else []
    console.print(f"[bold green]model[/] {path}", highlight=False)
    if written:
        console.print(f"[bold green]{len(written)} section(s) labelled[/]", highlight=False)


@lsm_app.command("predict")
@reports_errors
@runs_as_job
def predict(
    brain_name: str = BrainArgument,
    area_key: str = AreaOption,
    sections: str = typer.Option(
        None, "--sections", help="s,t: label the sections between them with the LSM of [s, t]."
    ),
    arch: str = ArchListOption,
    kind: str = typer.Option(
        "lsm", help="lsm (the chain's local models) or gsm (the global model)."
    ),
    tile_px: int = TileOption,
    device: str = DeviceOption,
    background: bool = BackgroundOption,
    derivatives: Path = OutOption,
    root: Path = RootOption,
    overwrite: bool = OverwriteOption,
    verbose: bool = VerboseOption,
) -> None:
    """Label sections with trained models, tiled over the prediction ROI (eq. 5.65).

    With --sections s,t: every section strictly between s and t, with that LSM. Without: the whole
    extent of the area's chain (the ends with the closest model). Writes
    <brain>/labels/<kind>-<arch>/sNNNN.h5 (area ids) and <brain>/lsm/<area>/<kind>-<arch>/pred/.
    """
    from cortexgraph.errors import CortexgraphError
    from cortexgraph.lsm.workflow import (
        parse_sections,
        predict_chain,
        predict_interval,
        resolve_area,
        source_name,
    )

    setup_logging(verbose)
    brain = _brain(brain_name, root)
    area = resolve_area(brain, area_key)
    archs = _archs(arch)
    out_dir = _out_dir(brain, derivatives)
    interval = tuple(sorted(parse_sections(sections))) if sections else None
    if interval is not None and kind != "lsm":
        raise CortexgraphError("--sections selects one LSM", fix="drop --sections for --kind gsm")
    if background:
        argv = ["lsm", "predict"] + _common_argv(
            brain, area, derivatives, "auto", None, 0, device, overwrite, verbose
        )
        argv += ["--arch", ",".join(archs), "--kind", kind, "--tile-px", str(tile_px)]
        if interval is not None:
            argv += ["--sections", f"{interval[0]},{interval[1]}"]
        outputs = _outputs(out_dir, area, [source_name(kind, a) for a in archs])
        _launch(out_dir, argv, f"predict-{area.name}-{kind}-{'-'.join(archs)}", outputs)
        return
    job = _JOB
    progress, callback = _progress(job)
    with progress:
        total = 0
        for a in archs:
            run = _run(
                brain,
                area,
                a,
                out_dir,
                "auto",
                None,
                0,
                device,
                overwrite,
                callback,
                tile_px=tile_px,
            )
            if interval is not None:
                total += len(predict_interval(run, interval))
            else:
                total += len(predict_chain(run, kind))
    console.print(f"[bold green]{total} section label image(s) written[/]")


def _chain_or_gsm(
    command: str,
    brain_name,
    area_key,
    arch,
    iterations,
    preset,
    seed,
    step,
    extent,
    tile_px,
    device,
    no_predict,
    background,
    derivatives,
    root,
    overwrite,
    verbose,
) -> None:
    from cortexgraph.lsm.workflow import resolve_area, run_chain, run_gsm, source_name

    setup_logging(verbose)
    brain = _brain(brain_name, root)
    area = resolve_area(brain, area_key)
    archs = _archs(arch)
    out_dir = _out_dir(brain, derivatives)
    kind = "lsm" if command == "chain" else "gsm"
    if background:
        argv = ["lsm", command] + _common_argv(
            brain, area, derivatives, preset, iterations, seed, device, overwrite, verbose
        )
        argv += ["--arch", ",".join(archs), "--step", str(step), "--tile-px", str(tile_px)]
        if extent:
            argv += ["--extent", extent]
        if no_predict:
            argv.append("--no-predict")
        outputs = _outputs(out_dir, area, [source_name(kind, a) for a in archs])
        _launch(out_dir, argv, f"{command}-{area.name}-{'-'.join(archs)}", outputs)
        return
    job = _JOB
    progress, callback = _progress(job)
    with progress:
        for a in archs:
            run = _run(
                brain,
                area,
                a,
                out_dir,
                preset,
                iterations,
                seed,
                device,
                overwrite,
                callback,
                step=step,
                extent=_extent(extent),
                tile_px=tile_px,
            )
            result = (run_chain if command == "chain" else run_gsm)(run, not no_predict)
            plan = result["plan"]
            console.print(
                f"[bold green]{source_name(kind, a)}[/] {area.name}: "
                f"{len(result['models'])} model(s), training sections "
                f"{list(plan.training_sections)}, test sections {list(plan.test_sections)}, "
                f"{len(result['predictions'])} section(s) labelled",
                highlight=False,
            )


@lsm_app.command("chain")
@reports_errors
@runs_as_job
def chain(
    brain_name: str = BrainArgument,
    area_key: str = AreaOption,
    arch: str = ArchListOption,
    iterations: int = IterationsOption,
    preset: str = PresetOption,
    seed: int = SeedOption,
    step: int = StepOption,
    extent: str = ExtentOption,
    tile_px: int = TileOption,
    device: str = DeviceOption,
    no_predict: bool = typer.Option(False, "--no-predict", help="Only train the models."),
    background: bool = BackgroundOption,
    derivatives: Path = OutOption,
    root: Path = RootOption,
    overwrite: bool = OverwriteOption,
    verbose: bool = VerboseOption,
) -> None:
    """Chain of LSMs over an area's extent: train one model per interval between consecutive
    training sections, then label every section of the extent (the ends with the closest model).

    Writes <brain>/lsm/<area>/chain.json, the models and the label images (see `lsm predict`).
    """
    _chain_or_gsm(
        "chain",
        brain_name,
        area_key,
        arch,
        iterations,
        preset,
        seed,
        step,
        extent,
        tile_px,
        device,
        no_predict,
        background,
        derivatives,
        root,
        overwrite,
        verbose,
    )


@lsm_app.command("gsm")
@reports_errors
@runs_as_job
def gsm(
    brain_name: str = BrainArgument,
    area_key: str = AreaOption,
    arch: str = ArchListOption,
    iterations: int = IterationsOption,
    preset: str = PresetOption,
    seed: int = SeedOption,
    step: int = StepOption,
    extent: str = ExtentOption,
    tile_px: int = TileOption,
    device: str = DeviceOption,
    no_predict: bool = typer.Option(False, "--no-predict", help="Only train the model."),
    background: bool = BackgroundOption,
    derivatives: Path = OutOption,
    root: Path = RootOption,
    overwrite: bool = OverwriteOption,
    verbose: bool = VerboseOption,
) -> None:
    """Global model (GSM) of an area: one model on all training sections of its chain, predicting
    the chain's sections within the same ROIs (the baseline of the seeds' Table 5.1).

    Writes <brain>/lsm/<area>/gsm-<arch>/model.pt and <brain>/labels/gsm-<arch>/sNNNN.h5.
    """
    _chain_or_gsm(
        "gsm",
        brain_name,
        area_key,
        arch,
        iterations,
        preset,
        seed,
        step,
        extent,
        tile_px,
        device,
        no_predict,
        background,
        derivatives,
        root,
        overwrite,
        verbose,
    )


@lsm_app.command("evaluate")
@reports_errors
def evaluate(
    brain_name: str = BrainArgument,
    area_keys: str = typer.Option(..., "--area", help="Area name(s) or id(s), comma-separated."),
    sources: str = typer.Option(
        None, help="Comma-separated sources (lsm-ms, gsm-hr, ...); default: all predicted."
    ),
    derivatives: Path = OutOption,
    root: Path = RootOption,
    verbose: bool = VerboseOption,
) -> None:
    """F1 of each area on its left-out annotated sections (the seeds' protocol) and, for a phantom,
    against the full ground truth; prints the HR/LR/MS x LSM/GSM table (thesis Table 5.1).

    Writes <brain>/lsm/<area>/<source>/metrics.tsv and <brain>/lsm/evaluation/table.{tsv,md}.
    """
    from cortexgraph.lsm.evaluate import format_table
    from cortexgraph.lsm.workflow import evaluate_brain, resolve_area

    setup_logging(verbose)
    brain = _brain(brain_name, root)
    areas = [resolve_area(brain, k.strip()) for k in area_keys.split(",") if k.strip()]
    source_list = [s.strip() for s in sources.split(",")] if sources else None
    out_dir = _out_dir(brain, derivatives)
    summaries, rows = evaluate_brain(brain, areas, out_dir, source_list)
    for s in summaries:
        test, truth = s["test"], s["truth_roi"]
        console.print(
            f"{s['area']:<10} {s['source']:<7} test F1 median {test['median']:.3f} "
            f"(n={test['n']})  truth F1 median {truth['median']:.3f} (n={truth['n']})",
            highlight=False,
        )
    typer.echo(format_table(rows), nl=False)
    console.print(f"table: {out_dir / 'lsm' / 'evaluation' / 'table.md'}", highlight=False)


# --------------------------------------------------------------------------------------------------
# jobs


@jobs_app.command("list")
@reports_errors
def jobs_list(
    brain_name: str = BrainArgument,
    derivatives: Path = OutOption,
    root: Path = RootOption,
    as_json: bool = typer.Option(False, "--json", help="Print the jobs as JSON."),
) -> None:
    """List the brain's jobs: id, state, progress."""
    import json

    from cortexgraph.lsm.jobs import jobs_dir, list_jobs, progress_text

    brain = _brain(brain_name, root)
    jobs = list_jobs(jobs_dir(_out_dir(brain, derivatives)))
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    if not jobs:
        console.print("no jobs")
        return
    for job in jobs:
        typer.echo(
            f"{job['id']}\t{job.get('state', '?')}\t{progress_text(job.get('progress', {}))}"
            f"\t{job.get('message', '')}".rstrip()
        )


@jobs_app.command("follow")
@reports_errors
def jobs_follow(
    brain_name: str = BrainArgument,
    job_id: str = typer.Argument(..., help="Job id (from `lsm jobs list`)."),
    timeout: float = typer.Option(None, help="Stop following after this many seconds."),
    derivatives: Path = OutOption,
    root: Path = RootOption,
) -> None:
    """Print a job's log as it grows until the job ends; exit 1 unless it ended ``done``."""
    from cortexgraph.lsm.jobs import follow_job, jobs_dir

    brain = _brain(brain_name, root)
    status = follow_job(jobs_dir(_out_dir(brain, derivatives)), job_id, timeout_s=timeout)
    console.print(f"job {job_id}: {status.get('state')}", highlight=False)
    if status.get("state") not in ("done", "running", "queued"):
        raise typer.Exit(code=1)


@jobs_app.command("cancel")
@reports_errors
def jobs_cancel(
    brain_name: str = BrainArgument,
    job_id: str = typer.Argument(..., help="Job id (from `lsm jobs list`)."),
    timeout: float = typer.Option(30.0, help="Seconds to wait before killing the job."),
    derivatives: Path = OutOption,
    root: Path = RootOption,
) -> None:
    """Stop a job cleanly (no half-written outputs remain; finished outputs are kept)."""
    from cortexgraph.lsm.jobs import cancel_job, jobs_dir

    brain = _brain(brain_name, root)
    status = cancel_job(jobs_dir(_out_dir(brain, derivatives)), job_id, timeout_s=timeout)
    typer.echo(f"{job_id}\t{status.get('state')}")
