"""``cortexgraph check <brain>``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cortexgraph.cli.common import RootOption, VerboseOption, console, reports_errors, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("check")
    @reports_errors
    def check(
        brain: str = typer.Argument(..., help="Brain id (e.g. B03) or brain folder."),
        root: Path = RootOption,
        as_json: bool = typer.Option(False, "--json", help="Print the problems as JSON."),
        deep: bool = typer.Option(False, "--deep", help="Decompress every chunk of every image."),
        verbose: bool = VerboseOption,
    ) -> None:
        """Validate a brain: files, spacings, transforms, annotations. Exit 0 only when clean."""
        from cortexgraph.data.check import check_brain, problems_as_json

        setup_logging(verbose)
        problems = check_brain(brain, root=root, deep=deep)
        if as_json:
            typer.echo(
                json.dumps({"brain": brain, "problems": problems_as_json(problems)}, indent=2)
            )
        else:
            for problem in problems:
                console.print(f"[red]problem[/] {problem}", highlight=False, soft_wrap=True)
            if problems:
                console.print(f"[bold red]{brain}: {len(problems)} problem(s)[/]")
            else:
                console.print(f"[bold green]{brain}: clean[/]")
        if problems:
            raise typer.Exit(code=1)
