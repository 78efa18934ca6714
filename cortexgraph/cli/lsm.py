"""``cortexgraph lsm ...``: local segmentation models between annotated sections.

A thin layer over :mod:`cortexgraph.lsm.stages` (plan, train, predict, evaluate under the stage
contract) and :mod:`cortexgraph.lsm.labels` (runs and their labels); background jobs are jobs of
the cohort's local engine (:func:`cortexgraph.execution.launcher.cohort_launcher`). Layout and
rules: docs/lsm.md.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from cortexgraph.cli.common import (
    STAGE,
    BrainArgument,
    CancelTimeoutOption,
    DeviceOption,
    ParametersFile,
    RootOption,
    StageFlags,
    command,
    console,
    json_option,
    parameters_group,
    resolve_device,
    split_list,
    stage_progress,
)

HELP = """Local segmentation models (LSM): one U-Net per interval between two annotated sections.

\b
  chain     plan the chain of an area, train one model per interval, predict the area's extent
  gsm       one global model per area (the baseline), then predict
  train     one model on two annotated sections s, t of an area (a run of its own)
  predict   predict an area with a run's trained models
  evaluate  F1 on left-out annotated sections (and the phantom's truth); the HR/LR/MS x LSM/GSM table
  runs      the model runs of a brain and their areas
  jobs      list / status / follow / cancel a brain's background jobs (--background on chain, gsm,
            train, predict: jobs of the cohort's local engine, also in `cortexgraph jobs list`)

Every command works on a named model run (--name; default lsm-<arch> / gsm-<arch>), prints for each
stage whether it was reused or recomputed and why, and waits up to --wait seconds for a stage that
another process is running (else exit status 3).
"""

lsm_app = typer.Typer(name="lsm", help=HELP, no_args_is_help=True, rich_markup_mode=None)
jobs_app = typer.Typer(
    name="jobs", help="Background jobs of a brain.", no_args_is_help=True, rich_markup_mode=None
)
lsm_app.add_typer(jobs_app, name="jobs")

#: the parameters dataclass of lsm chain, gsm and train (imported when a command runs)
PARAMETERS = "cortexgraph.lsm.parameters:LSMParameters"
#: the parameters dataclass of lsm predict
PREDICT_PARAMETERS = "cortexgraph.lsm.parameters:LSMPredictParameters"
#: fields of LSMParameters whose option (and LSMRun keyword) has another name
OPTION_NAMES = {"predict_batch_size": "batch_size"}

AreaOption = typer.Option(..., "--area", help="Area name or id from areas.tsv.")
ArchOption = typer.Option("ms", "--arch", help="hr, lr or ms.")
ArchListOption = typer.Option("ms", "--arch", help="hr, lr, ms, or a comma-separated list.")
NameOption = typer.Option(
    None,
    "--name",
    help="Model run name (the label source consumers read): lsm-... or gsm-... matching the kind; "
    "default <kind>-<arch>. Only with a single --arch.",
)
PresetOption = typer.Option(
    "auto", help="Model sizes: auto (from the image spacing), full, small, phantom, tiny."
)
IterationsOption = typer.Option(
    None, help="Training iterations (preset default; published: 3000). Milestones scale with it."
)
SeedOption = typer.Option(0, help="Random seed (each model derives its own from it).")
StepOption = typer.Option(
    2,
    help="Every STEP-th annotated section of the area is a training section (2 = the published protocol).",
)
ExtentOption = typer.Option(
    None, help="first,last section to predict (default: to the neighbouring annotated sections)."
)
MaxIntervalOption = typer.Option(
    2.4,
    "--max-interval-mm",
    help="Longest interval between the two training sections of a local model (mm; the published "
    "models span about 2.4 mm, Schiffer et al. 2021, NeuroImage, Sect. 2.3). Longer intervals are refused, naming the sections to annotate "
    "next.",
)
AllowLongOption = typer.Option(
    False,
    "--allow-long-intervals",
    help="Plan intervals longer than --max-interval-mm anyway (with a warning).",
)
InitHROption = typer.Option(
    None,
    "--init-hr",
    help="Start the high-resolution encoder of every model from this distance pre-training "
    "(`cortexgraph train-encoder --method distance --branch lsm-hr --name NAME`), as in Schiffer et al. 2021, NeuroImage.",
)
TileOption = typer.Option(64, "--tile-px", help="Output tile edge for prediction (px).")
BatchOption = typer.Option(8, "--batch-size", help="Tiles per forward pass in prediction.")
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


def _out_dir(brain) -> Path:
    from cortexgraph.derivatives import Derivatives

    return Derivatives.of(brain).root / brain.id


def _archs(text: str) -> list[str]:
    from cortexgraph.errors import CortexgraphError
    from cortexgraph.lsm.networks import ARCHITECTURES

    archs = [a.lower() for a in split_list(text)]
    bad = [a for a in archs if a not in ARCHITECTURES]
    if bad or not archs:
        raise CortexgraphError(f"unknown architecture(s) {bad or text!r}", fix="use hr, lr, ms")
    return list(dict.fromkeys(archs))


def _names(name: str | None, kind: str, archs: list[str]) -> list[tuple[str, str]]:
    """``[(arch, run name)]``: the default names, or ``--name`` for a single architecture."""
    from cortexgraph.errors import CortexgraphError
    from cortexgraph.lsm.layout import check_run_name, default_run_name

    if name is None:
        return [(a, default_run_name(kind, a)) for a in archs]
    if len(archs) != 1:
        raise CortexgraphError(
            "--name names one run, but several architectures were given",
            fix="give one --arch with --name, or leave --name out (runs <kind>-<arch>)",
        )
    return [(archs[0], check_run_name(name, kind))]


def _extent(text: str | None):
    from cortexgraph.lsm.plan import parse_sections

    return None if not text else tuple(sorted(parse_sections(text, "--extent")))


def _check_options(tile_px: int, batch_size: int, wait: float, iterations=None, seed=0, step=1):
    from cortexgraph.lsm.stages import check_settings

    check_settings(
        tile_px=tile_px,
        batch_size=batch_size,
        wait_s=wait,
        iterations=iterations,
        seed=seed,
        step=step,
    )


def _print_event(event) -> None:
    """One line per reused and per finished stage (stderr; the start of a recomputation is logged)."""
    if event.reused or event.finished:
        typer.echo(event.line())


@dataclass(frozen=True)
class _AreaTarget:
    """What a command that trains or predicts works on: one area of one brain, with the command's
    stage flags and ``--device``; its runs go to this process (:meth:`run`) or to background jobs
    (:meth:`submit`)."""

    brain: Any  #: the brain (:func:`cortexgraph.data.manifest.find_brain`)
    area: Any  #: the area (:func:`cortexgraph.lsm.data.resolve_area`)
    flags: StageFlags
    device: str  #: --device as given (resolved where used)

    @classmethod
    def of(cls, brain_name: str, area_key: str, flags: StageFlags, device: str) -> _AreaTarget:
        """The brain ``brain_name`` (in ``flags.root``) and its area ``area_key``."""
        from cortexgraph.lsm.data import resolve_area

        brain = _brain(brain_name, flags.root)
        return cls(brain, resolve_area(brain, area_key), flags, device)

    def submit(self, command: str, **options: Any) -> None:
        """``cortexgraph lsm COMMAND`` on the area as a background job named
        ``COMMAND-<run>-<area>`` (:func:`_launch`). ``options``: the command's options by parameter
        name (``name``: the run); None and False are left out, True is a flag."""
        brain, flags = self.brain, self.flags
        argv = ["lsm", command, str(brain.root), "--area", str(self.area.id)]
        argv += ["--wait", str(flags.wait_s), "--device", resolve_device(self.device)]
        for key, value in options.items():
            if value is None or value is False:
                continue
            flag = "--" + key.replace("_", "-")
            argv += [flag] if value is True else [flag, str(value)]
        if flags.overwrite:
            argv.append("--overwrite")
        if flags.verbose:
            argv.append("--verbose")
        _launch(brain, argv, f"{command}-{options['name']}-{self.area.name}")

    def run(self, arch: str, name: str, callback, **settings: Any):
        """The :class:`~cortexgraph.lsm.stages.LSMRun` of run ``name`` (architecture ``arch``) on
        the area in this process; ``callback``: the progress of :func:`_progress`; ``settings``:
        more keyword arguments of LSMRun."""
        from cortexgraph.lsm.stages import LSMRun

        return LSMRun(
            brain=self.brain,
            area=self.area,
            arch=arch,
            name=name,
            progress=callback,
            on_stage=_print_event,
            device=resolve_device(self.device),
            **self.flags.stage_keywords,
            **settings,
        )


@contextmanager
def _cohort_launcher(brain):
    """The launcher of ``brain``'s cohort (its jobs folder on the cohort's local engine), closed
    after the ``with`` block."""
    from cortexgraph.derivatives import Derivatives
    from cortexgraph.execution.launcher import cohort_launcher

    launcher = cohort_launcher(Derivatives.of(brain).cohort_root)
    try:
        yield launcher
    finally:
        launcher.close()


def _launch(brain, argv: list[str], name: str) -> None:
    """Submit ``cortexgraph ARGV`` as a job of the cohort's local engine (started when none runs).

    The job asks for one GPU when ``--device`` is a CUDA device (the engine picks the GPU: the
    command runs with ``--device cuda`` on it) and for every core of the largest worker that
    offers it.
    """
    from cortexgraph.execution.launcher import JobSpec

    argv = list(argv)
    gpus = 0
    if "--device" in argv[:-1]:
        at = argv.index("--device") + 1
        if argv[at].startswith("cuda"):
            gpus, argv[at] = 1, "cuda"
    with _cohort_launcher(brain) as launcher:
        cpus = max(1, launcher.largest_cpus(gpus))
        spec = JobSpec(name=name, argv=argv, gpus=gpus, cpus=cpus, cwd=str(Path.cwd()))
        job_id = launcher.submit(spec)
    console.print(f"[bold green]submitted job[/] {job_id}", highlight=False)
    console.print(f"  follow: cortexgraph lsm jobs follow {argv[2]} {job_id}", highlight=False)
    typer.echo(job_id)


@contextmanager
def _progress():
    """Yields a progress callback for the ``with`` block: rich bars in a terminal (plain progress
    lines otherwise, :func:`~cortexgraph.cli.common.stage_progress`), and the job's
    ``progress.json`` when this process runs as a job
    (:class:`cortexgraph.execution.runjob.ProgressWriter`)."""
    from cortexgraph.execution.runjob import ProgressWriter

    progress, callback = stage_progress()
    job = ProgressWriter()

    def both(stage: str, done: int, total: int) -> None:
        callback(stage, done, total)
        job(stage, done, total)

    with progress:
        yield both


# --------------------------------------------------------------------------------------------------
# commands


def _training_options(
    iterations: int = IterationsOption,
    preset: str = PresetOption,
    seed: int = SeedOption,
    tile_px: int = TileOption,
    batch_size: int = BatchOption,
    device: str = DeviceOption,
    init_hr: str = InitHROption,
) -> dict:
    """The training and prediction options of ``lsm chain``, ``gsm`` and ``train``
    (:func:`cortexgraph.cli.common.option_group`), as a dict by parameter name."""
    return dict(locals())


def _model_options(
    brain_name: str = BrainArgument,
    area_key: str = AreaOption,
    arch: str = ArchListOption,
    name: str = NameOption,
    step: int = StepOption,
    extent: str = ExtentOption,
    no_predict: bool = typer.Option(False, "--no-predict", help="Only plan and train."),
    background: bool = BackgroundOption,
) -> dict:
    """The arguments and options ``lsm chain`` and ``lsm gsm`` share besides
    :func:`_training_options`, as a dict by parameter name."""
    return dict(locals())


def _run_options(
    training: dict, parameters: ParametersFile, flags: StageFlags, **more
) -> tuple[str, dict, dict]:
    """``(--device, the run's settings, the model configuration overrides)`` from
    :func:`_training_options` and ``more`` (the command's own run options), resolved with the
    parameters file (:class:`~cortexgraph.lsm.parameters.LSMParameters`; the options given win)
    and checked. The settings are keyword arguments of :class:`~cortexgraph.lsm.stages.LSMRun`
    (by option name); the overrides its ``config_overrides``."""
    from cortexgraph.derivatives.parameters import overrides_of

    options = {**training, **more}
    device = options.pop("device")
    fields = {_field(name): name for name in options}
    params = parameters.resolve({f: options[n] for f, n in fields.items()}, OPTION_NAMES)
    shared = {name: getattr(params, field) for field, name in fields.items()}
    _check_options(
        shared["tile_px"], shared["batch_size"], flags.wait_s, shared["iterations"],
        shared["seed"], shared.get("step", 1),
    )  # fmt: skip
    return device, shared, overrides_of(params)


def _field(option: str) -> str:
    """The field of LSMParameters of an option (by parameter name)."""
    return next((f for f, o in OPTION_NAMES.items() if o == option), option)


def _params_argv(parameters: ParametersFile) -> dict:
    """``--params FILE`` for the command line of a background job (absolute: a job runs
    elsewhere), or nothing."""
    return {} if parameters.path is None else {"params": str(parameters.path.resolve())}


def _model_command(name: str):
    """Decorators of ``lsm chain`` and ``lsm gsm``: the command ``name`` with the options of
    :func:`_model_options` (keyword ``model``), :func:`_training_options` (``training``) and the
    stage options (``flags``)."""
    return command(
        lsm_app,
        name,
        ("model", _model_options),
        ("training", _training_options),
        parameters_group(PARAMETERS, f"lsm {name}"),
        STAGE,
    )


def _chain_or_gsm(
    command: str,
    model: dict,
    training: dict,
    parameters: ParametersFile,
    flags: StageFlags,
    **chain_options,
) -> None:
    """``lsm chain`` / ``lsm gsm`` (``chain_options``: the chain's --max-interval-mm and
    --allow-long-intervals)."""
    from cortexgraph.lsm.stages import run_chain, run_gsm

    device, shared, config = _run_options(
        training, parameters, flags, step=model["step"], **chain_options
    )
    target = _AreaTarget.of(model["brain_name"], model["area_key"], flags, device)
    kind = "lsm" if command == "chain" else "gsm"
    runs = _names(model["name"], kind, _archs(model["arch"]))
    extent = _extent(model["extent"])
    if model["background"]:
        for a, run_name in runs:
            target.submit(
                command,
                arch=a,
                name=run_name,
                extent=None if extent is None else f"{extent[0]},{extent[1]}",
                no_predict=model["no_predict"],
                **shared,
                **_params_argv(parameters),
            )
        return
    with _progress() as callback:
        for a, run_name in runs:
            run = target.run(
                a, run_name, callback, kind=kind, extent=extent, config_overrides=config, **shared
            )
            result = (run_chain if command == "chain" else run_gsm)(run, not model["no_predict"])
            plan = result["plan"]
            console.print(
                f"[bold green]{run_name}[/] {target.area.name}: {len(result['models'])} model(s), "
                f"training sections {list(plan.training_sections)}, test sections "
                f"{list(plan.test_sections)}, {len(result['predictions'])} section(s) predicted",
                highlight=False,
            )


@_model_command("chain")
def chain(
    max_interval_mm: float = MaxIntervalOption,
    allow_long_intervals: bool = AllowLongOption,
    *,
    model: dict,
    training: dict,
    parameters: ParametersFile,
    flags: StageFlags,
) -> None:
    """Chain of LSMs over an area's extent: plan it, train one model per interval between
    consecutive training sections, then predict every section of the extent (the ends with the
    closest model). Intervals longer than --max-interval-mm are refused (exit status 2), naming
    the sections to annotate next.

    Writes <brain>/lsm/<run>/<area>/chain.json, models/sSSSS-sTTTT/ and pred/sNNNN.h5.

    Every parameter (LSMParameters: these options and every field of the model configuration)
    can be set in a TOML file given to --params (print one with --params-template); the options
    given win over the file.
    """
    _chain_or_gsm(
        "chain",
        model,
        training,
        parameters,
        flags,
        max_interval_mm=max_interval_mm,
        allow_long_intervals=allow_long_intervals,
    )


@_model_command("gsm")
def gsm(*, model: dict, training: dict, parameters: ParametersFile, flags: StageFlags) -> None:
    """Global model (GSM) of an area: one model on all training sections of its chain, predicting
    the chain's sections within the same ROIs (the baseline of Table 5.1 of Schiffer, PhD thesis).

    Writes <brain>/lsm/<run>/<area>/chain.json, models/global/ and pred/sNNNN.h5 (run gsm-<arch>).
    Parameters file: as `lsm chain` (--params, --params-template).
    """
    _chain_or_gsm("gsm", model, training, parameters, flags)


@command(
    lsm_app,
    "train",
    ("training", _training_options),
    parameters_group(PARAMETERS, "lsm train"),
    STAGE,
)
def train(
    brain_name: str = BrainArgument,
    area_key: str = AreaOption,
    sections: str = typer.Option(..., "--sections", help="The two training sections: s,t."),
    arch: str = ArchOption,
    name: str = typer.Option(
        None,
        "--name",
        help="Model run name (lsm-...); default lsm-<arch>-sSSSS-sTTTT, a run of its own.",
    ),
    predict: bool = typer.Option(False, "--predict", help="Also predict every section of [s, t]."),
    max_interval_mm: float = MaxIntervalOption,
    allow_long_intervals: bool = AllowLongOption,
    background: bool = BackgroundOption,
    *,
    training: dict,
    parameters: ParametersFile,
    flags: StageFlags,
) -> None:
    """Train one LSM on the annotated sections s and t of an area: a run whose plan is [s, t].

    Writes <brain>/lsm/<run>/<area>/chain.json, models/sSSSS-sTTTT/ (model.pt, history.json,
    rois.npz) and, with --predict, pred/sNNNN.h5. Parameters file: as `lsm chain` (--params,
    --params-template; `step` does not apply).
    """
    from cortexgraph.lsm.layout import check_run_name, interval_name
    from cortexgraph.lsm.plan import parse_sections
    from cortexgraph.lsm.stages import run_interval

    device, shared, config = _run_options(
        training,
        parameters,
        flags,
        max_interval_mm=max_interval_mm,
        allow_long_intervals=allow_long_intervals,
    )
    target = _AreaTarget.of(brain_name, area_key, flags, device)
    from cortexgraph.errors import ParameterError

    archs = _archs(arch)
    if len(archs) != 1:
        raise ParameterError(
            f"--arch {arch!r}: `lsm train` trains one model, of one architecture",
            fix="give one of hr, lr, ms (`lsm chain` and `lsm gsm` take several)",
        )
    arch = archs[0]
    first, last = sorted(parse_sections(sections))  # two sections (checked with the options)
    interval = (first, last)
    run_name = check_run_name(
        f"lsm-{arch}-{interval_name(interval)}" if name is None else name, "lsm"
    )
    if background:
        target.submit(
            "train",
            sections=f"{interval[0]},{interval[1]}",
            arch=arch,
            name=run_name,
            predict=predict,
            **shared,
            **_params_argv(parameters),
        )
        return
    with _progress() as callback:
        run = target.run(
            arch, run_name, callback, interval=interval, config_overrides=config, **shared
        )
        result = run_interval(run, predict)
    console.print(f"[bold green]model[/] {result['models'][0]}", highlight=False)
    if result["predictions"]:
        console.print(
            f"[bold green]{len(result['predictions'])} section(s) predicted[/]", highlight=False
        )


@command(lsm_app, "predict", parameters_group(PREDICT_PARAMETERS, "lsm predict"), STAGE)
def predict(
    brain_name: str = BrainArgument,
    area_key: str = AreaOption,
    name: str = typer.Option(
        None, "--name", help="Model run (default: <kind>-<arch> for each --arch)."
    ),
    arch: str = typer.Option(
        None, "--arch", help="hr, lr, ms, or a comma-separated list (default ms); not with --name."
    ),
    kind: str = typer.Option(
        None,
        help="lsm (the chain's local models, default) or gsm (the global model); not with --name.",
    ),
    tile_px: int = TileOption,
    batch_size: int = BatchOption,
    device: str = DeviceOption,
    background: bool = BackgroundOption,
    *,
    parameters: ParametersFile,
    flags: StageFlags,
) -> None:
    """Predict an area on every section of a run's plan with the run's trained models, tiled over
    the prediction ROI (eq. 5.65). Sections whose model, geometry and image are unchanged are kept.

    Writes <brain>/lsm/<run>/<area>/pred/sNNNN.h5 (uint8: 0 slide, 1 white matter, 2 other cortex,
    3 the area, 255 outside the ROI).

    Its parameters (LSMPredictParameters: tile_px, predict_batch_size) can be set in a TOML file
    given to --params (print one with --params-template); the options given win over the file.
    The prediction stage records them.
    """
    from cortexgraph.errors import CortexgraphError
    from cortexgraph.lsm.layout import run_kind
    from cortexgraph.lsm.stages import predict_stage

    options = {"tile_px": tile_px, "predict_batch_size": batch_size}
    params = parameters.resolve(options, OPTION_NAMES)
    tile_px, batch_size = params.tile_px, params.predict_batch_size
    _check_options(tile_px, batch_size, flags.wait_s)
    if name is not None and (arch is not None or kind is not None):
        given = " and ".join(o for o, v in (("--arch", arch), ("--kind", kind)) if v is not None)
        raise CortexgraphError(
            f"--name {name} names the run; {given} would pick other runs by their default names",
            fix=f"give --name alone (the run keeps its own kind and architecture), or {given} "
            "without --name",
        )
    if kind not in (None, "lsm", "gsm"):
        raise CortexgraphError(f"--kind {kind!r}", fix="use lsm or gsm")
    target = _AreaTarget.of(brain_name, area_key, flags, device)
    if name is not None:
        kind = run_kind(name)
    runs = _names(name, kind or "lsm", _archs(arch or "ms") if name is None else ["ms"])
    if background:
        for _, run_name in runs:
            target.submit("predict", name=run_name, tile_px=tile_px, batch_size=batch_size)
        return
    total = 0
    with _progress() as callback:
        for a, run_name in runs:
            run = target.run(a, run_name, callback, tile_px=tile_px, batch_size=batch_size)
            total += len(predict_stage(run))
    console.print(f"[bold green]{total} section prediction(s) current[/]", highlight=False)


@command(lsm_app, "evaluate", STAGE)
def evaluate(
    brain_name: str = BrainArgument,
    names: list[str] = typer.Option(
        None,
        "--name",
        help="Model runs, comma-separated or repeated (default: every run with predictions).",
    ),
    area_keys: list[str] = typer.Option(
        None,
        "--area",
        help="Area names or ids, comma-separated or repeated (default: all of each run).",
    ),
    *,
    flags: StageFlags,
) -> None:
    """F1 of each area of each run on its left-out annotated sections (the published protocol) and, for
    a phantom, against the full ground truth; prints the HR/LR/MS x LSM/GSM table (Table 5.1).

    Writes <brain>/lsm/<run>/evaluation/{metrics.tsv, summary.json, table.tsv, table.md} per run.
    """
    from cortexgraph.lsm.data import resolve_area
    from cortexgraph.lsm.evaluate import format_table
    from cortexgraph.lsm.layout import check_run_name, evaluation_dir
    from cortexgraph.lsm.stages import evaluate_runs

    _check_options(64, 8, flags.wait_s)
    brain = _brain(brain_name, flags.root)
    areas = [resolve_area(brain, key) for key in split_list(area_keys)] or None
    runs = [check_run_name(name) for name in split_list(names)] or None
    summaries, rows = evaluate_runs(
        brain, runs, areas, on_stage=_print_event, **flags.stage_keywords
    )
    for summary in summaries:
        for s in summary["areas"]:
            test, truth = s["test"], s["truth_roi"]
            console.print(
                f"{s['run']:<12} {s['area']:<10} test F1 median {test['median']:.3f} "
                f"(n={test['n']})  truth F1 median {truth['median']:.3f} (n={truth['n']})",
                highlight=False,
            )
    typer.echo(format_table(rows), nl=False)
    for summary in summaries:
        console.print(
            f"tables: {evaluation_dir(_out_dir(brain), summary['run']) / 'table.md'}",
            highlight=False,
        )


@command(lsm_app, "runs")
def runs(
    brain_name: str = BrainArgument,
    root: Path = RootOption,
) -> None:
    """List the model runs of a brain with predictions, and their areas."""
    from cortexgraph.derivatives import Derivatives
    from cortexgraph.lsm.labels import lsm_runs

    brain = _brain(brain_name, root)
    found = lsm_runs(Derivatives.of(brain), brain)
    if not found:
        console.print("no LSM/GSM runs with predictions")
        return
    for run_name, areas in found.items():
        typer.echo(f"{run_name}\t{','.join(a.name for a in areas)}")


# --------------------------------------------------------------------------------------------------
# jobs


@command(jobs_app, "list")
def jobs_list(
    brain_name: str = BrainArgument,
    root: Path = RootOption,
    as_json: bool = json_option("the jobs"),
) -> None:
    """List the brain's jobs: id, state, progress."""
    import json

    from cortexgraph.execution.runjob import progress_text
    from cortexgraph.lsm.layout import brain_jobs

    brain = _brain(brain_name, root)
    with _cohort_launcher(brain) as launcher:
        jobs = brain_jobs(launcher, brain)
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


JobArgument = typer.Argument(..., help="Job id (from `lsm jobs list`).")


def _job_options(
    brain_name: str = BrainArgument, job_id: str = JobArgument, root: Path = RootOption
) -> dict:
    """The job of ``lsm jobs status``, ``follow`` and ``cancel``: the brain, the job's id and
    ``--root`` (:func:`cortexgraph.cli.common.option_group`), as a dict by parameter name."""
    return dict(locals())


#: the option group of a command on one of a brain's jobs (keyword ``job``)
JOB = ("job", _job_options)


@contextmanager
def _brain_job(job: dict):
    """Yields ``(launcher, record)`` for the ``with`` block: the launcher of the brain's cohort
    and the record of ``job`` (:func:`_job_options`), once the job is known to be one of the
    brain's (:func:`cortexgraph.lsm.layout.brain_job`)."""
    from cortexgraph.lsm.layout import brain_job

    brain = _brain(job["brain_name"], job["root"])
    with _cohort_launcher(brain) as launcher:
        yield launcher, brain_job(launcher, brain, job["job_id"])


@command(jobs_app, "status", JOB)
def jobs_status(*, job: dict) -> None:
    """Print one job's record and state as JSON."""
    import json

    with _brain_job(job) as (_, record):
        typer.echo(json.dumps(record, indent=2))


@command(jobs_app, "follow", JOB)
def jobs_follow(
    timeout: float = typer.Option(None, help="Stop following after this many seconds."),
    *,
    job: dict,
) -> None:
    """Print a job's log as it grows until the job ends; exit 1 unless it ended ``done``."""
    with _brain_job(job) as (launcher, _):
        status = launcher.follow(job["job_id"], timeout_s=timeout)
    console.print(f"job {job['job_id']}: {status.get('state')}", highlight=False)
    if status.get("state") not in ("done", "running", "queued"):
        raise typer.Exit(code=1)


@command(jobs_app, "cancel", JOB)
def jobs_cancel(timeout: float = CancelTimeoutOption, *, job: dict) -> None:
    """Stop a job cleanly: its command gets SIGTERM and unwinds (no half-written outputs remain;
    finished stages are kept); a queued job never starts (docs/lsm.md, "Jobs")."""
    with _brain_job(job) as (launcher, _):
        status = launcher.cancel(job["job_id"], timeout_s=timeout)
    typer.echo(f"{job['job_id']}\t{status.get('state')}")
