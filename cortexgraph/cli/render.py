"""``cortexgraph render <brain> --labels y|pred|errors|proba:<area>|co|pm:<i>``: surface
pictures."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import (
    OverwriteOption,
    RootOption,
    VerboseOption,
    console,
    reports_errors,
    setup_logging,
)


def register(app: typer.Typer) -> None:
    @app.command("render")
    @reports_errors
    def render(
        brain: str = typer.Argument(..., help="Brain id (e.g. B03) or brain folder."),
        labels: str = typer.Option(
            "pred",
            help="Comma-separated: y, pred, errors, proba:<area>, co, pm:<index or name>.",
        ),
        hemis: str = typer.Option("lh,rh", help="Hemispheres to render."),
        views: str = typer.Option(
            "lateral,medial,dorsal,ventral,anterior,posterior", help="Comma-separated views."
        ),
        size: str = typer.Option("480x400", help="Picture size per view, WIDTHxHEIGHT pixels."),
        backend: str = typer.Option(
            "auto", help="auto (VTK off screen if it works here), vtk or matplotlib."
        ),
        compare: bool = typer.Option(
            True, help="With pred: also annotation | prediction side by side."
        ),
        exports: bool = typer.Option(
            True, help="Also write .label.gii, .annot, .func.gii, .ply and .surf.gii files."
        ),
        graph_dir: Path = typer.Option(
            None, "--graph-dir", help="Folder of <hemi>.h5 (default: <derivatives>/<brain>/graph)."
        ),
        out: Path = typer.Option(None, "--out", help="Output folder (default: see the docs)."),
        root: Path = RootOption,
        overwrite: bool = OverwriteOption,
        verbose: bool = VerboseOption,
    ) -> None:
        """Render the midsurfaces coloured by area, probability or feature; export for other
        tools."""
        from cortexgraph.errors import CortexgraphError
        from cortexgraph.render.brain import render_brain

        setup_logging(verbose)
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise CortexgraphError(
                f"bad --size {size!r}", fix="write WIDTHxHEIGHT, e.g. 480x400"
            ) from None
        written = render_brain(
            brain,
            labels,
            root=root,
            hemis=[h.strip() for h in hemis.split(",") if h.strip()],
            views=[v.strip() for v in views.split(",") if v.strip()],
            size_px=(width, height),
            backend=backend,
            compare=compare,
            exports=exports,
            graph_dir=graph_dir,
            out_dir=out,
            overwrite=overwrite,
        )
        pictures = [p for p in written if p.suffix == ".png"]
        console.print(
            f"[bold green]{len(pictures)} pictures, {len(written) - len(pictures)} other files "
            f"in {written[-1].parent}[/]",
            highlight=False,
        )
        for path in pictures:
            console.print(f"  {path}", highlight=False)
