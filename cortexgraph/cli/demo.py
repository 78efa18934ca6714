"""``cortexgraph demo OUT``: the whole pipeline on a phantom cohort, for `make demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.cohort import (
    EngineConfigOption,
    SchedulerOption,
    WorkersOption,
    _quiet_dask,
    engine_options,
    task_progress,
)
from cortexgraph.cli.common import VerboseOption, console, reports_errors, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @reports_errors
    def demo(
        out: Path = typer.Argument(Path("demo-output"), help="Folder for the cohort and results."),
        preset: str = typer.Option("demo", help="Phantom preset."),
        seed: int = typer.Option(0, help="Random seed."),
        scheduler: str = SchedulerOption,
        workers: int = WorkersOption,
        engine_config: Path = EngineConfigOption,
        verbose: bool = VerboseOption,
    ) -> None:
        """Make a phantom cohort and run every available stage on it, as tasks of the execution
        engine (a local Dask cluster by default; --scheduler for an existing one); list what was
        written."""
        from cortexgraph.pipeline import run_demo

        setup_logging(verbose)
        _quiet_dask(verbose)
        options = engine_options(engine_config, scheduler, workers)
        context, callback = task_progress("demo tasks")
        with context:
            written = run_demo(out, preset=preset, seed=seed, engine=options, progress=callback)
        console.print("[bold green]demo finished.[/] Files written:")
        for label, path in written:
            console.print(f"  {label:<40} {path}", highlight=False)
