"""``cortexgraph render <brain> --labels y|pred|errors|proba:<area>|co|pm:<i> [--run RUN]``: surface
pictures."""

from __future__ import annotations

import typer

from cortexgraph.cli.common import (
    STAGE,
    BrainArgument,
    StageFlags,
    command,
    console,
    split_list,
)


def register(app: typer.Typer) -> None:
    @command(app, "render", STAGE)
    def render(
        brain: str = BrainArgument,
        labels: str = typer.Option(
            "pred",
            help="Comma-separated: y, pred, errors, proba:<area>, co, pm:<index or name>.",
        ),
        run: str = typer.Option(
            None, "--run", help="Model run whose predictions pred, errors and proba show."
        ),
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
            True, help="Also write .label.gii, .annot, .func.gii and .ply files."
        ),
        *,
        flags: StageFlags,
    ) -> None:
        """Render the midsurfaces coloured by area, probability or feature; export for other
        tools.

        Writes derivatives/cortexgraph/BRAIN/render/gnn-RUN/ (with --run) or render/nodes/; every
        picture names its brain, hemisphere and run.
        """
        from cortexgraph.errors import ParameterError
        from cortexgraph.render.brain import render_brain
        from cortexgraph.render.surface import BACKENDS

        if backend not in BACKENDS:  # before the stage starts (it was an internal error there)
            raise ParameterError(f"unknown --backend {backend!r}", fix=f"use {', '.join(BACKENDS)}")

        try:
            width, height = (int(v) for v in size.lower().split("x"))
            if not (16 <= width <= 8192 and 16 <= height <= 8192):
                raise ValueError
        except ValueError:
            raise ParameterError(
                f"bad --size {size!r}", fix="write WIDTHxHEIGHT with 16..8192 pixels, e.g. 480x400"
            ) from None
        written = render_brain(
            brain,
            labels,
            run=run,
            root=flags.root,
            views=split_list(views),
            size_px=(width, height),
            backend=backend,
            compare=compare,
            exports=exports,
            **flags.stage_keywords,
        )
        pictures = [p for p in written if p.suffix == ".png"]
        console.print(
            f"[bold green]{len(pictures)} pictures, {len(written) - len(pictures)} other files[/]",
            highlight=False,
        )
        for path in pictures:
            console.print(f"  {path}", highlight=False, soft_wrap=True)
