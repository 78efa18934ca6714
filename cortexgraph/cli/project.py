"""``cortexgraph project <brain> --labels pred|y``: node labels back onto the sections."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import (
    OverwriteOption,
    RootOption,
    VerboseOption,
    console,
    progress_bar,
    reports_errors,
    setup_logging,
)


def register(app: typer.Typer) -> None:
    @app.command("project")
    @reports_errors
    def project(
        brain: str = typer.Argument(..., help="Brain id (e.g. B03) or brain folder."),
        labels: str = typer.Option(
            "pred", help="Node array of class indices to project: pred (predict) or y (features)."
        ),
        run: str = typer.Option(None, help="GNN run name; output folder labels/gnn-<run>."),
        source: str = typer.Option(None, help="Output folder name under labels/ (overrides)."),
        hemis: str = typer.Option("lh,rh", help="Hemispheres whose graphs are read."),
        spacing_um: float = typer.Option(
            None, "--spacing-um", help="Label image spacing (default: the annotation spacing)."
        ),
        max_distance_mm: float = typer.Option(
            3.0,
            "--max-distance-mm",
            help="Gray-matter pixels farther than this from every point stay unlabelled.",
        ),
        smooth: int = typer.Option(
            0,
            "--smooth",
            help="Majority vote over this many graph hops along the cortex before projecting "
            "(0 = off).",
        ),
        contours: bool = typer.Option(True, help="Also write GeoJSON contours."),
        overlays: int = typer.Option(
            6, help="Overlay PNGs of that many sections (-1 = all, 0 = none)."
        ),
        graph_dir: Path = typer.Option(
            None, "--graph-dir", help="Folder of <hemi>.h5 (default: <derivatives>/<brain>/graph)."
        ),
        out: Path = typer.Option(None, "--out", help="Output folder (default: see the docs)."),
        root: Path = RootOption,
        overwrite: bool = OverwriteOption,
        verbose: bool = VerboseOption,
    ) -> None:
        """Paint node labels onto every section: label images, contours, overlays, pixel F1."""
        from cortexgraph.mapping.project import project_brain

        setup_logging(verbose)
        with progress_bar(f"project {brain}") as advance:

            def progress(done: int, total: int) -> None:
                advance(1, total=total)

            report = project_brain(
                brain,
                labels,
                root=root,
                run=run,
                source=source,
                hemis=[h.strip() for h in hemis.split(",") if h.strip()],
                spacing_um=spacing_um,
                max_distance_mm=max_distance_mm,
                smooth_hops=smooth,
                contours=contours,
                overlays=overlays,
                graph_dir=graph_dir,
                out_dir=out,
                overwrite=overwrite,
                progress=progress,
            )
        console.print(
            f"[bold green]{len(report['sections'])} label images written to {report['out_dir']}[/]",
            highlight=False,
        )
        scores = report["pixel_f1"]
        if scores:
            console.print(
                f"pixel macro F1 {scores['macro_f1']:.3f}, accuracy {scores['accuracy']:.3f}, "
                f"coverage {scores['coverage']:.3f} ({scores['pixels_scored']} true-area pixels, "
                f"{scores['areas']} areas); per area: {report['out_dir']}/pixel_f1.tsv",
                highlight=False,
            )
