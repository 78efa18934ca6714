"""``cortexgraph check <brain>``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cortexgraph.cli.common import LOGGING, BrainArgument, RootOption, command, console, json_option

EXIT_PROBLEMS = 2
"""Exit status when check finds problems: the status of every data error (cortexgraph.errors)."""


def register(app: typer.Typer) -> None:
    @command(app, "check", LOGGING)
    def check(
        brain: str = BrainArgument,
        root: Path = RootOption,
        as_json: bool = json_option("the problems"),
        deep: bool = typer.Option(
            False, "--deep", help="Decode every chunk of every raster, values at full resolution."
        ),
        *,
        verbose: bool,
    ) -> None:
        """Validate a brain: manifests, tables, rasters, transforms, atlas, exclusion mask.

        Exit 0 when clean, 2 when problems were found (each printed with its file, section and fix).
        """
        from rich.markup import escape

        from cortexgraph.data.check import check_brain, problems_as_json

        problems = check_brain(brain, root=root, deep=deep)
        if as_json:
            typer.echo(
                json.dumps({"brain": brain, "problems": problems_as_json(problems)}, indent=2)
            )
        else:
            for problem in problems:
                console.print(
                    f"[red]problem[/] {escape(str(problem))}", highlight=False, soft_wrap=True
                )
            if problems:
                console.print(
                    f"[bold red]{escape(brain)}: {len(problems)} problem(s)[/]", highlight=False
                )
            else:
                console.print(f"[bold green]{escape(brain)}: clean[/]", highlight=False)
        if problems:
            raise typer.Exit(code=EXIT_PROBLEMS)
