"""What every command shares: logging, error reporting, progress bars, brain lookup."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cortexgraph.errors import CortexgraphError

console = Console(stderr=True)
log = logging.getLogger("cortexgraph")

RootOption = typer.Option(
    None,
    "--root",
    envvar="CORTEXGRAPH_ROOT",
    help="Cohort folder (default: $CORTEXGRAPH_ROOT); brains are looked up inside it.",
)
VerboseOption = typer.Option(False, "--verbose", "-v", help="Log details and show tracebacks.")
OverwriteOption = typer.Option(False, "--overwrite", help="Recompute outputs that already exist.")


def setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    os.environ["CORTEXGRAPH_VERBOSE"] = "1" if verbose else "0"


def reports_errors(func: Callable) -> Callable:
    """Turn CortexgraphError into a one-line message and exit status 2 (traceback with -v)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except CortexgraphError as exc:
            if os.environ.get("CORTEXGRAPH_VERBOSE") == "1":
                console.print_exception()
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper


@contextmanager
def progress_bar(description: str, total: int | None = None):
    """A rich progress bar on stderr; yields ``advance(n=1)``. Silent when stderr is not a terminal
    and CI is set, so logs stay readable."""
    disable = not sys.stderr.isatty()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1, total: int | None = None, description: str | None = None) -> None:
            progress.update(task, advance=n, total=total, description=description or description_)

        description_ = description
        yield advance


def stage_progress():
    """A callback ``(stage, done, total)`` driving one rich bar per stage."""
    disable = not sys.stderr.isatty()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )
    tasks: dict[str, int] = {}

    def callback(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)
        if disable and (done == total):
            log.info("%s: %d/%d", stage, done, total)

    return progress, callback


def resolve_path(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()
