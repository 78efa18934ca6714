"""What every command shares: logging, error reporting, progress bars, brain lookup."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import click
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

console = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("cortexgraph")

RootOption = typer.Option(
    None,
    "--root",
    envvar="CORTEXGRAPH_ROOT",
    help="Cohort folder (default: $CORTEXGRAPH_ROOT); brains are looked up inside it.",
)
VerboseOption = typer.Option(False, "--verbose", "-v", help="Log details (debug level).")
OverwriteOption = typer.Option(
    False, "--overwrite", help="Recompute even when the outputs are up to date."
)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler.__init__ assigns it
        pass


def setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    os.environ["CORTEXGRAPH_VERBOSE"] = "1" if verbose else "0"


DebugOption = typer.Option(
    False, "--debug", help="Show the traceback of an error (for reporting bugs)."
)
WaitOption = typer.Option(
    0.0,
    "--wait",
    metavar="SECONDS",
    help="When another process runs this stage on the same brain, wait up to SECONDS for it "
    "(default: refuse at once, exit 3).",
)


def _debug() -> bool:
    return os.environ.get("CORTEXGRAPH_DEBUG") == "1"


def reports_errors(func: Callable) -> Callable:
    """Turn every failure into a one-line message and a documented exit status (cortexgraph.errors):
    CortexgraphError -> its ``exit_code`` (2 input/parameters, 3 busy, 4 upstream, 5 memory);
    an unreadable or unwritable file -> 2; Ctrl-C -> 130; anything else is a bug -> 1. Tracebacks
    only with ``--debug`` (an option this decorator adds to the command)."""
    signature = inspect.signature(func)
    parameters = list(signature.parameters.values())
    if "debug" not in signature.parameters:
        parameters.append(
            inspect.Parameter(
                "debug", inspect.Parameter.KEYWORD_ONLY, default=DebugOption, annotation=bool
            )
        )

    @functools.wraps(func)
    def wrapper(*args, debug: bool = False, **kwargs):
        if debug:
            os.environ["CORTEXGRAPH_DEBUG"] = "1"
        previous = _terminate_on_sigterm()
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except CortexgraphError as exc:
            _report(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            _report("[bold red]interrupted[/]: outputs being written were discarded")
            raise typer.Exit(code=130) from None
        except Terminated:
            _report("[bold red]terminated[/] (SIGTERM): outputs being written were discarded")
            raise typer.Exit(code=143) from None
        except MemoryError:
            _report(
                "[bold red]error:[/] out of memory. Fix: use a coarser voxel size or a smaller "
                "preset, or run on a machine with more memory"
            )
            raise typer.Exit(code=5) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _report(
                f"[bold red]error:[/] {where}{exc.strerror or exc}. Fix: check that the file "
                "exists, that you may read and write it, and that the disk has space"
            )
            raise typer.Exit(code=2) from None
        except Exception as exc:
            _report(
                f"[bold red]internal error:[/] {type(exc).__name__}: {exc}. This is a bug in "
                "cortexgraph: rerun with --debug and report the traceback"
            )
            raise typer.Exit(code=1) from None
        finally:
            _restore_sigterm(previous)

    wrapper.__signature__ = signature.replace(parameters=parameters)
    wrapper.__annotations__ = {**getattr(func, "__annotations__", {}), "debug": "bool"}
    return wrapper


class Terminated(BaseException):  # noqa: N818 - a signal, not an error
    """SIGTERM (a cluster scheduler's time limit, ``kill``) turned into an exception, so that locks
    are released and temporary files removed on the way out."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def _terminate_on_sigterm():
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):  # keep handlers others installed (LSM jobs)
        signal.signal(signal.SIGTERM, _raise_terminated)
        return signal.SIG_DFL
    return None


def _restore_sigterm(previous) -> None:
    import signal
    import threading

    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def _report(message: str) -> None:
    if _debug():
        console.print_exception()
    console.print(message, highlight=False, soft_wrap=True)


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
