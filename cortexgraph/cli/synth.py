"""``cortexgraph synth OUT --preset tiny|demo|full``."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import (
    VerboseOption,
    console,
    reports_errors,
    setup_logging,
    stage_progress,
)


def register(app: typer.Typer) -> None:
    @app.command("synth")
    @reports_errors
    def synth(
        out: Path = typer.Argument(..., help="Folder of the new cohort."),
        preset: str = typer.Option(
            "demo", help="tiny (seconds), demo (minutes), full (seeds' scale)."
        ),
        brains: str = typer.Option(None, help="Comma-separated brain ids (default: the preset's)."),
        seed: int = typer.Option(0, help="Random seed; the same seed gives byte-identical files."),
        scans_only: bool = typer.Option(
            False,
            "--scans-only",
            help="Keep only scans + section lists (scans/<brain>/); the brain folders move to "
            "ground_truth/<brain>/inputs/ (docs/scans-in.md).",
        ),
        scan_format: str = typer.Option(
            "ome-tiff", "--scan-format", help="Scans of --scans-only: ome-tiff, ome-zarr or png."
        ),
        verbose: bool = VerboseOption,
    ) -> None:
        """Make a phantom cohort from real anatomy, with ground truth for every stage."""
        from cortexgraph.synth.cohort import synthesize_cohort

        setup_logging(verbose)
        brain_ids = [b.strip() for b in brains.split(",")] if brains else None
        progress, callback = stage_progress()
        with progress:
            root = synthesize_cohort(
                out, preset=preset, brains=brain_ids, seed=seed, progress=callback
            )
            if scans_only:
                from cortexgraph.scans.strip import strip_to_scans

                strip_to_scans(root, scan_format, progress=callback)
        console.print(f"[bold green]phantom cohort written to {root}[/]")
        if scans_only:
            console.print(
                f"scans and section lists in {root / 'scans'}; make each brain with "
                f"`cortexgraph ingest {root} <brain> --scans {root / 'scans'}/<brain>`"
            )
