"""``cortexgraph demo OUT``: the whole pipeline on a phantom cohort, for `make demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import VerboseOption, console, reports_errors, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @reports_errors
    def demo(
        out: Path = typer.Argument(Path("demo-output"), help="Folder for the cohort and results."),
        preset: str = typer.Option("demo", help="Phantom preset."),
        seed: int = typer.Option(0, help="Random seed."),
        verbose: bool = VerboseOption,
    ) -> None:
        """Make a phantom cohort and run every available stage on it; list what was written."""
        from cortexgraph.pipeline import run_demo

        setup_logging(verbose)
        written = run_demo(out, preset=preset, seed=seed)
        console.print("[bold green]demo finished.[/] Files written:")
        for label, path in written:
            console.print(f"  {label:<40} {path}", highlight=False)
