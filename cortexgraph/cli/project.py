"""``cortexgraph project <brain> --run RUN``: a model run's node labels back onto the sections."""

from __future__ import annotations

import typer

from cortexgraph.cli.common import (
    STAGE,
    BrainArgument,
    StageFlags,
    command,
    console,
    progress_bar,
    reuse_state,
)


def register(app: typer.Typer) -> None:
    @command(app, "project", STAGE)
    def project(
        brain: str = BrainArgument,
        run: str = typer.Option(None, "--run", help="Model run whose predictions to project."),
        labels: str = typer.Option(
            "pred", help="pred (the run's predictions, needs --run) or y (the annotated nodes)."
        ),
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
        *,
        flags: StageFlags,
    ) -> None:
        """Paint a model run's node labels onto every section: label images, contours, overlays,
        pixel F1. Writes derivatives/cortexgraph/BRAIN/labels/gnn-RUN/ (labels/nodes-y for y)."""
        from cortexgraph.errors import ParameterError
        from cortexgraph.mapping.project import project_brain

        ParameterError.check_ranges(
            [
                (spacing_um is None or 0 < spacing_um < 1e5, "--spacing-um", spacing_um,
                 "a spacing > 0 and < 100000 µm"),
                (0 < max_distance_mm < 1e3, "--max-distance-mm", max_distance_mm,
                 "a distance > 0 and < 1000 mm"),
                (smooth >= 0, "--smooth", smooth, "0 or more hops"),
                (overlays >= -1, "--overlays", overlays, "a number of sections, 0 (none) or -1 (all)"),
            ]
        )  # fmt: skip
        with progress_bar(f"project {brain}") as advance:

            def progress(done: int, total: int) -> None:
                advance(1, total=total)

            report = project_brain(
                brain,
                run,
                labels=labels,
                root=flags.root,
                spacing_um=spacing_um,
                max_distance_mm=max_distance_mm,
                smooth_hops=smooth,
                contours=contours,
                overlays=overlays,
                **flags.stage_keywords,
                progress=progress,
            )
        console.print(
            f"[bold green]{report['source']}: {reuse_state(report)}: {report['out_dir']}[/]",
            highlight=False,
            soft_wrap=True,
        )
        scores = report["pixel_f1"]
        if scores:
            console.print(
                f"pixel macro F1 {scores['macro_f1']:.3f}, accuracy {scores['accuracy']:.3f}, "
                f"coverage {scores['coverage']:.3f} ({scores['pixels_scored']} true-area pixels, "
                f"{scores['areas']} areas); per area: {report['out_dir']}/pixel_f1.tsv",
                highlight=False,
                soft_wrap=True,
            )
