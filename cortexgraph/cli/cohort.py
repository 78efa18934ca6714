"""``cortexgraph run-cohort``: the whole graph path for every brain of a cohort, on the execution
engine (a local Dask cluster, an existing scheduler, or Dask workers as Slurm jobs), skipping what is
up to date; ``cortexgraph demo OUT``: the whole pipeline on a new phantom cohort, for `make demo`.
Both share the engine options."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from cortexgraph.cli.common import (
    LOGGING,
    DeviceOption,
    RootOption,
    command,
    console,
    json_option,
    log,
    progress_bar,
    split_list,
)

SchedulerOption = typer.Option(
    None,
    "--scheduler",
    metavar="ADDRESS",
    help="Run on an existing Dask scheduler (tcp://host:8786, or a scheduler file) instead of a "
    "local cluster. Its workers must see the cohort folder under the same path.",
)
WorkersOption = typer.Option(
    None,
    "--workers",
    help="Worker processes of the local cluster (default: one per core, at most one per brain); "
    "0 runs the tasks one after the other in this process.",
)
EngineConfigOption = typer.Option(
    None,
    "--engine-config",
    metavar="FILE",
    envvar="CORTEXGRAPH_ENGINE_CONFIG",
    help="TOML file with an [engine] table (scheduler, workers, Slurm worker jobs through "
    "dask-jobqueue: docs/scaling.md). Options given here win over it.",
)
RetriesOption = typer.Option(
    None, "--retries", help="Reruns of a task that raised (lost workers are always rerun)."
)


def engine_options(
    engine_config: Path | None,
    scheduler: str | None,
    workers: int | None,
    retries: int | None = None,
    wait_s: float | None = None,
    gpu_tasks: bool | None = None,
):
    """:class:`~cortexgraph.execution.engine.EngineOptions` from a configuration file and options.

    ``--scheduler`` replaces the file's way of running with that scheduler; ``--workers`` with a
    local cluster of that size (0: serial); giving both is an error."""
    from dataclasses import replace

    from cortexgraph.errors import ParameterError
    from cortexgraph.execution.engine import EngineOptions

    options = EngineOptions.from_file(engine_config) if engine_config else EngineOptions()
    if scheduler and workers is not None:
        raise ParameterError(
            "--scheduler and --workers exclude each other (the scheduler has its own workers)",
            fix="give one of them",
        )
    if scheduler:
        options = replace(options, scheduler=scheduler, slurm=None, workers=None)
    elif workers is not None:
        options = replace(options, scheduler=None, slurm=None, workers=workers)
    return options.updated(retries=retries, wait_s=wait_s, gpu_tasks=gpu_tasks)


def task_progress(total_hint: str = "tasks"):
    """``(context manager, callback)``: one progress bar over the tasks and a log line per task."""
    state = {"advance": None}

    def callback(status: str, record: dict, done: int, total: int) -> None:
        key = record["key"].replace("/", " ")
        if status == "done":
            what = {True: "up to date", False: "computed", None: "done"}[record.get("reused")]
            log.info(
                "[%d/%d] %s: %s in %.1f s (worker %s:%s)",
                done, total, key, what, record["seconds"], record["host"], record["pid"],
            )  # fmt: skip
        elif status == "failed":
            log.error("[%d/%d] %s failed: %s", done, total, key, record["message"])
        else:
            log.warning("[%d/%d] %s not run: %s failed", done, total, key, record["upstream"])
        if state["advance"] is not None:
            state["advance"](1, total=total)

    class _Context:
        def __enter__(self):
            self._bar = progress_bar(total_hint)
            state["advance"] = self._bar.__enter__()
            return self

        def __exit__(self, *exc):
            state["advance"] = None
            return self._bar.__exit__(*exc)

    return _Context(), callback


def _extent(text: str) -> tuple[int, int]:
    """``--lsm-extent S,T`` as two section numbers."""
    from cortexgraph.errors import ParameterError

    parts = split_list(text)
    try:
        first, last = (int(p) for p in parts)
    except ValueError:
        raise ParameterError(
            f"--lsm-extent {text!r} is not two section numbers", fix="give S,T (e.g. 722,962)"
        ) from None
    return first, last


def _quiet_dask(verbose: bool) -> None:
    if not verbose:
        for name in ("distributed", "dask_jobqueue"):
            logging.getLogger(name).setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:
    @command(app, "demo", LOGGING)
    def demo(
        out: Path = typer.Argument(Path("demo-output"), help="Folder for the cohort and results."),
        preset: str = typer.Option("demo", help="Phantom preset."),
        seed: int = typer.Option(0, help="Random seed."),
        scheduler: str = SchedulerOption,
        workers: int = WorkersOption,
        engine_config: Path = EngineConfigOption,
        *,
        verbose: bool,
    ) -> None:
        """Make a phantom cohort and run every available stage on it, as tasks of the execution
        engine (a local Dask cluster by default; --scheduler for an existing one); list what was
        written."""
        from cortexgraph.pipeline import run_demo

        _quiet_dask(verbose)
        options = engine_options(engine_config, scheduler, workers)
        context, callback = task_progress("demo tasks")
        with context:
            written = run_demo(out, preset=preset, seed=seed, engine=options, progress=callback)
        console.print("[bold green]demo finished.[/] Files written:")
        for label, path in written:
            console.print(f"  {label:<40} {path}", highlight=False)

    @command(app, "run-cohort", LOGGING)
    def run_cohort(
        root: Path = RootOption,
        brains: str = typer.Option(None, help="Brains to process, comma-separated (default: all)."),
        until: str = typer.Option(
            "map3d",
            help="Last step: check, lsm, build-graph, train-encoder, features, train-gnn, "
            "evaluate, predict, project, render, map3d.",
        ),
        encoder_preset: str = typer.Option("auto", help="Encoder preset (train-encoder --preset)."),
        model: str = typer.Option("gat", help="GNN: gat, sage, mlp or linear."),
        layers: int = typer.Option(3, help="GNN layers."),
        features: str = typer.Option("cy,pm,co", help="Node features of the GNN."),
        gnn_preset: str = typer.Option("seeds", help="GNN preset: seeds or demo."),
        epochs: int = typer.Option(None, help="GNN epochs (default: the preset's)."),
        transfer: str = typer.Option(
            "auto", help="Brain held out of GNN training ('auto': B07 when present; 'none')."
        ),
        map3d: list[str] = typer.Option(
            None, "--map3d", metavar="AREA", help="Area to map in 3D and measure (repeatable)."
        ),
        map3d_source: str = typer.Option(
            "gnn",
            help="Labels of the 3D maps: gnn (this run's), truth, annotation or lsm (this run's "
            "local segmentation models; the areas must be --lsm areas).",
        ),
        lsm: list[str] = typer.Option(
            None,
            "--lsm",
            metavar="AREA",
            help="Area to segment with local segmentation models on every brain (repeatable): "
            "chain plan, one training task per interval, prediction (step lsm).",
        ),
        lsm_arch: str = typer.Option("ms", help="LSM architecture: hr, lr or ms."),
        lsm_name: str = typer.Option(
            None, help="LSM run name (lsm-<x> or gsm-<x>; default lsm-<arch>)."
        ),
        lsm_preset: str = typer.Option("auto", help="LSM model preset (lsm chain --preset)."),
        lsm_iterations: int = typer.Option(
            None, help="LSM training iterations (default: the preset's)."
        ),
        lsm_step: int = typer.Option(
            2, help="Every n-th annotated section trains (lsm chain --step)."
        ),
        lsm_extent: str = typer.Option(
            None, metavar="S,T", help="Predict only sections S..T (lsm chain --extent)."
        ),
        lsm_allow_long_intervals: bool = typer.Option(
            False,
            "--lsm-allow-long-intervals",
            help="Plan intervals longer than 2.4 mm anyway (lsm chain --allow-long-intervals).",
        ),
        no_render: bool = typer.Option(False, "--no-render", help="No surface pictures."),
        seed: int = typer.Option(0, help="Seed of the learners."),
        device: str = DeviceOption,
        scheduler: str = SchedulerOption,
        workers: int = WorkersOption,
        engine_config: Path = EngineConfigOption,
        retries: int = RetriesOption,
        gpu_tasks: bool = typer.Option(
            None,
            "--gpu-tasks/--no-gpu-tasks",
            help="Training tasks run only on workers with the resource GPU=1.",
        ),
        wait: float = typer.Option(
            None,
            "--wait",
            metavar="SECONDS",
            help="How long a task waits for a stage another process runs (default 3600).",
        ),
        as_json: bool = json_option("the report"),
        *,
        verbose: bool,
    ) -> None:
        """Run the graph path (check, build-graph, encoder, node features, GNN, evaluation,
        predictions, projection, pictures, 3D maps; with --lsm also local segmentation models) for
        every brain of a cohort on the execution engine. Stages whose outputs are up to date are reused; a failed task stops only what
        depends on it. Exit status: 0 when every task finished, else that of the first failure.
        """
        from cortexgraph.data.manifest import DERIVATIVES, find_cohort
        from cortexgraph.execution.engine import open_engine
        from cortexgraph.execution.graph import CohortSettings, cohort_graph, run_graph
        from cortexgraph.gnn.data import parse_features

        _quiet_dask(verbose)
        cohort = find_cohort(root)
        options = engine_options(engine_config, scheduler, workers, retries, wait, gpu_tasks)
        selected = tuple(split_list(brains)) or None
        lsm_settings: dict = {
            "arch": lsm_arch,
            "preset": lsm_preset,
            "step": lsm_step,
            "allow_long_intervals": lsm_allow_long_intervals,
        }
        if lsm_name:
            lsm_settings["name"] = lsm_name
        if lsm_iterations is not None:
            lsm_settings["iterations"] = lsm_iterations
        if lsm_extent:
            lsm_settings["extent"] = _extent(lsm_extent)
        settings = CohortSettings(
            brains=selected,
            seed=seed,
            encoder_preset=encoder_preset,
            loader_workers=None if options.kind in ("scheduler", "slurm") else 0,
            gnn={
                "model": model,
                "layers": layers,
                "features": tuple(parse_features(features)),
                "preset": gnn_preset,
                "transfer": None if transfer.lower() == "none" else transfer,
                **({"epochs": epochs} if epochs is not None else {}),
            },
            map3d_areas=tuple(map3d or ()),
            map3d_source=map3d_source,
            lsm_areas=tuple(lsm or ()),
            lsm=lsm_settings,
            render=not no_render,
            until=until,
            device=device,
        )
        tasks = cohort_graph(
            cohort.root, settings, wait_s=options.wait_s, gpu_tasks=options.gpu_tasks
        )
        context, callback = task_progress("cohort tasks")
        with open_engine(
            options,
            max_parallel=len(selected or cohort.brain_ids),
            local_directory=cohort.root / DERIVATIVES / "engine",
        ) as engine:
            log.info("engine: %s; %d tasks", engine.describe(), len(tasks))
            with context:
                report = run_graph(tasks, engine, cohort.root, callback)
        computed = sum(1 for r in report.results.values() if r["reused"] is False)
        reused = sum(1 for r in report.results.values() if r["reused"] is True)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "engine": report.engine,
                        "seconds": report.seconds,
                        "tasks": report.results,
                        "failed": report.failed,
                        "skipped": report.skipped,
                        "workers": report.workers(),
                    },
                    indent=2,
                    default=str,
                )
            )
        report.raise_for_failures()
        console.print(
            f"[bold green]cohort done[/] in {report.seconds:.0f} s on {report.engine}: "
            f"{computed} stage task(s) computed, {reused} up to date",
            highlight=False,
        )
