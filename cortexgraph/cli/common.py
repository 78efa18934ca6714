"""What every command shares: logging, error reporting, progress bars, brain lookup."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cortexgraph.errors import CortexgraphError

# Not on a terminal (a log file, a pipe), lines are never wrapped: long paths stay whole and can be
# copied; tables take the width they need.
console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 400)
log = logging.getLogger("cortexgraph")

RootOption = typer.Option(
    None,
    "--root",
    envvar="CORTEXGRAPH_ROOT",
    help="Cohort folder (default: $CORTEXGRAPH_ROOT); brains are looked up inside it.",
)
VerboseOption = typer.Option(False, "--verbose", "-v", help="Log details (debug level).")
#: the brain argument of every per-brain command (shown as BRAIN; several: BRAINS): an id (with
#: --root / $CORTEXGRAPH_ROOT) or a folder
BrainArgument = typer.Argument(
    ..., metavar="BRAIN", help="Brain id (e.g. B03, with --root) or brain folder."
)
#: the same for commands that take several brains
BrainsArgument = typer.Argument(
    ..., metavar="BRAINS", help="Brain ids (e.g. B03, with --root) or brain folders."
)
OverwriteOption = typer.Option(
    False, "--overwrite", help="Recompute even when the outputs are up to date."
)
#: how long ``cancel`` of a background job waits for it to stop (``jobs cancel``, ``lsm jobs cancel``)
CancelTimeoutOption = typer.Option(60.0, help="Seconds to wait for the job to stop.")
#: mixed precision off (commands that run an encoder on a GPU)
NoAmpOption = typer.Option(False, "--no-amp", help="Disable mixed precision on GPUs.")


def json_option(what: str) -> Any:
    """The ``--json`` flag of a command that prints ``what`` (e.g. "the jobs"), as JSON on request."""
    return typer.Option(False, "--json", help=f"Print {what} as JSON.")


#: the torch device of every command that trains or predicts (resolve with :func:`resolve_device`
#: where the library wants a concrete device)
DeviceOption = typer.Option(
    "auto", "--device", help="auto (CUDA when available), cpu, cuda or cuda:N (torch device)."
)


def check_device(device: str | None) -> None:
    """``--device`` of a command that computes on this machine: a device it cannot use (unknown,
    CUDA without a GPU, ``cuda:N`` beyond its GPUs) is refused with exit status 2 before any work
    (:func:`cortexgraph.training.runtime.check_device`; torch is imported only now). Commands that
    hand the device to a job engine do not call it: the job's machine decides."""
    from cortexgraph.training.runtime import check_device as check

    check(device)


def resolve_device(device: str | None) -> str:
    """``--device``: ``auto`` (or None) -> ``cuda`` when torch sees a GPU, else ``cpu``; any other
    value unchanged."""
    if device is not None and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler.__init__ assigns it
        pass

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if record.levelno >= logging.INFO:
            message = record.getMessage()
            if message.startswith("progress ") or "still running after" in message:
                _watchdog.touch()
            else:
                _watchdog.touch(message.splitlines()[0] if message else "")


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

    name = func.__name__.removesuffix("_command").removesuffix("_cmd").replace("_", "-")
    command = f"cortexgraph {name}"

    @functools.wraps(func)
    def wrapper(*args, debug: bool = False, **kwargs):
        if debug:
            os.environ["CORTEXGRAPH_DEBUG"] = "1"
        _SIGTERM.clear()
        previous = _terminate_on_sigterm()
        heartbeat = nullcontext() if _interactive() else _Heartbeat(command, progress_interval_s())
        try:
            with heartbeat:
                return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except CortexgraphError as exc:
            _report(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            _report("[bold red]interrupted[/]: outputs being written were discarded")
            _end_despite_busy_threads(130)
            raise typer.Exit(code=130) from None
        except Terminated:
            _report("[bold red]terminated[/] (SIGTERM): outputs being written were discarded")
            _end_despite_busy_threads(143)
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
            if _SIGTERM.is_set():  # Terminated turned into another error on its way up (a C
                # extension's module initialisation reports any exception as an ImportError)
                _report("[bold red]terminated[/] (SIGTERM): outputs being written were discarded")
                _end_despite_busy_threads(143)
                raise typer.Exit(code=143) from None
            _report(
                f"[bold red]internal error:[/] {type(exc).__name__}: {exc}. This is a bug in "
                "cortexgraph: rerun with --debug and report the traceback"
            )
            raise typer.Exit(code=1) from None
        finally:
            _restore_sigterm(previous)

    # typer reads the signature of the wrapper; the functools.wraps type does not declare it
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**getattr(func, "__annotations__", {}), "debug": "bool"}
    return wrapper


#: set by :func:`cortexgraph.cli.main.main`, the ``cortexgraph`` process itself: only there may an
#: interrupted command end the process while worker threads still run (never in a library
#: caller's process, nor in tests that invoke commands in-process)
END_PROCESS_ON_INTERRUPT = False
#: seconds an interrupted command waits for busy worker threads before it ends the process
THREAD_GRACE_S = 10.0


def _end_despite_busy_threads(code: int) -> None:
    """After Ctrl-C or SIGTERM, once locks are released and temporary files removed: worker
    threads still computing (a thread pool's current section, a solver) would keep the
    interpreter from exiting, since it joins them. Wait up to :data:`THREAD_GRACE_S` for them, then
    end the process with ``code`` (``os._exit``, after flushing the output and the logs). Only when
    :data:`END_PROCESS_ON_INTERRUPT` is set."""
    if not END_PROCESS_ON_INTERRUPT:
        return

    def busy() -> list[threading.Thread]:
        main = threading.main_thread()
        return [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]

    deadline = time.monotonic() + THREAD_GRACE_S
    for thread in busy():
        thread.join(max(0.0, deadline - time.monotonic()))
    if busy():
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


class Terminated(BaseException):  # noqa: N818 - a signal, not an error
    """SIGTERM (a cluster scheduler's time limit, ``kill``) turned into an exception, so that locks
    are released and temporary files removed on the way out."""


#: set when a command got SIGTERM (cleared when a command starts)
_SIGTERM = threading.Event()
#: seconds after which a SIGTERM that arrived during an import is delivered again
SIGTERM_RETRY_S = 0.05


def _inside_import(frame) -> bool:
    """Whether ``frame`` or a caller of it runs the import machinery (a module being executed)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _raise_terminated(signum, frame) -> None:
    """The SIGTERM handler of commands: raise :class:`Terminated` in the main thread.

    Not while a module is being imported: an exception there leaves a half-initialised module
    (a C extension's initialisation turns it into ``ImportError: initialization failed``, and a
    later use of that module can crash the process). The signal is then sent again after
    :data:`SIGTERM_RETRY_S`, until it lands outside the import."""
    _SIGTERM.set()
    if _inside_import(frame):
        retry = threading.Timer(SIGTERM_RETRY_S, os.kill, (os.getpid(), signum))
        retry.daemon = True
        retry.start()
        return
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


# -- progress ----------------------------------------------------------------------------------------
#: Seconds between plain progress lines of one task, and the longest silence of a command whose
#: stderr is not a terminal (``$CORTEXGRAPH_PROGRESS_S`` overrides it).
PROGRESS_INTERVAL_S = 20.0


def progress_interval_s() -> float:
    """``$CORTEXGRAPH_PROGRESS_S`` when set to a positive number, else :data:`PROGRESS_INTERVAL_S`."""
    try:
        value = float(os.environ.get("CORTEXGRAPH_PROGRESS_S", ""))
    except ValueError:
        return PROGRESS_INTERVAL_S
    return value if value > 0 else PROGRESS_INTERVAL_S


def _interactive() -> bool:
    return sys.stderr.isatty()


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``-:--:--`` when unknown)."""
    if seconds is None or not seconds == seconds or seconds == float("inf") or seconds < 0:
        return "-:--:--"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Watchdog:
    """The time of the last line a command wrote to its log (plain progress, log records); the
    heartbeat of :func:`reports_errors` speaks only after :func:`progress_interval_s` of silence."""

    def __init__(self) -> None:
        self.last_output = time.monotonic()
        self.current = ""  # the latest progress line, repeated by the heartbeat

    def touch(self, line: str | None = None) -> None:
        self.last_output = time.monotonic()
        if line is not None:
            self.current = line


_watchdog = _Watchdog()


class PlainProgress:
    """Progress as plain log lines, for output that is not a terminal (files, pipes, batch logs).

    One line per task when it starts, then when it has advanced and at least ``interval_s`` passed
    since its last line, and when it completes::

        progress synth: 12/66 (18%), 0.52 per s, elapsed 0:00:23, about 0:01:44 left

    While the ``with`` block is open a background thread repeats the line of every unfinished task
    that has been silent for ``interval_s`` (a step can take minutes without advancing), so a log
    never goes quiet for longer than that. Lines go to ``emit`` (default: the ``cortexgraph`` logger
    at INFO level), one line each, never wrapped.
    """

    def __init__(self, interval_s: float | None = None, emit: Callable[[str], None] | None = None):
        self.interval_s = float(interval_s or progress_interval_s())
        self._emit_line = emit or (lambda line: log.info("%s", line))
        self._tasks: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # context manager: the heartbeat thread runs inside the block
    def __enter__(self) -> PlainProgress:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="cortexgraph-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def update(
        self,
        name: str,
        done: float | None = None,
        total: float | None = None,
        *,
        advance: float = 0.0,
    ) -> None:
        """Set (``done``) or advance (``advance``) the count of task ``name``; ``total`` may change."""
        now = time.monotonic()
        with self._lock:
            task = self._tasks.get(name)
            new = task is None
            if task is None:
                task = {"done": 0.0, "total": None, "start": now, "last": now, "finished": False}
                self._tasks[name] = task
            before = task["done"]
            if total is not None:
                task["total"] = float(total)
            task["done"] = float(done) if done is not None else task["done"] + float(advance)
            finished = task["total"] is not None and task["done"] >= task["total"]
            due = task["done"] > before and now - task["last"] >= self.interval_s
            speak = new or due or (finished and not task["finished"])
            task["finished"] = finished
            if speak:
                task["last"] = now
                line = self._line(name, task, now)
        if speak:
            self._emit(line)

    def _line(self, name: str, task: dict, now: float, *, still: bool = False) -> str:
        done, total = task["done"], task["total"]
        elapsed = now - task["start"]
        count = f"{done:g}/{total:g}" if total else f"{done:g} done"
        if total:
            count += f" ({100.0 * done / total:.0f}%)"
        parts = [f"progress {name}: {count}"]
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        if rate is not None:
            if rate >= 100:
                parts.append(f"{rate:.0f} per s")
            else:
                parts.append(f"{rate:.3g} per s" if rate >= 1 else f"{1 / rate:.3g} s each")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if task["finished"]:
            parts.append("done")
        elif total and rate:
            parts.append(f"about {format_duration((total - done) / rate)} left")
        elif still:
            parts.append("working")
        return ", ".join(parts)

    def _emit(self, line: str) -> None:
        _watchdog.touch(line)
        self._emit_line(line)

    def _beat(self) -> None:
        tick = min(1.0, self.interval_s / 4)
        while not self._stop.wait(tick):
            now = time.monotonic()
            lines = []
            with self._lock:
                for name, task in self._tasks.items():
                    if not task["finished"] and now - task["last"] >= self.interval_s:
                        task["last"] = now
                        lines.append(self._line(name, task, now, still=True))
            for line in lines:
                self._emit(line)


class _Heartbeat:
    """For a whole command on a non-terminal: after ``interval_s`` without a log line, one line
    ``<command>: still running after H:MM:SS (last: <latest progress or log line>)``."""

    def __init__(self, command: str, interval_s: float) -> None:
        self.command, self.interval_s = command, interval_s
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cortexgraph-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        _watchdog.touch()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        tick = min(1.0, self.interval_s / 4)
        while not self._stop.wait(tick):
            now = time.monotonic()
            if now - _watchdog.last_output >= self.interval_s:
                last = f" (last: {_watchdog.current})" if _watchdog.current else ""
                _watchdog.touch()
                log.info(
                    "%s: still running after %s%s",
                    self.command,
                    format_duration(now - self.started),
                    last,
                )


def _bars() -> Progress:
    """Rich progress bars on the terminal: description, bar, done/total, elapsed, time left."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@contextmanager
def progress_bar(description: str, total: int | None = None):
    """Progress of one task; yields ``advance(n=1, total=None, description=None)``.

    On a terminal a rich bar on stderr; otherwise plain log lines (:class:`PlainProgress`: stage,
    done/total, rate, time left; at least every :func:`progress_interval_s` seconds)."""
    if not _interactive():
        with PlainProgress() as plain:
            state = {"name": description}
            plain.update(description, 0, total)

            def advance_plain(n: int = 1, total: int | None = None, description: str | None = None):
                if description and description != state["name"]:
                    task = plain._tasks.pop(state["name"], None)
                    if task is not None:
                        plain._tasks[description] = task
                    state["name"] = description
                plain.update(state["name"], total=total, advance=n)

            yield advance_plain
        return
    with _bars() as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1, total: int | None = None, description: str | None = None) -> None:
            progress.update(task, advance=n, total=total, description=description or description_)

        description_ = description
        yield advance


def stage_progress():
    """``(context manager, callback)``: the callback ``(stage, done, total)`` drives one rich bar per
    stage on a terminal, and plain log lines otherwise (:class:`PlainProgress`)."""
    if not _interactive():
        plain = PlainProgress()

        def plain_callback(stage: str, done: int, total: int) -> None:
            plain.update(stage, done, total)

        return plain, plain_callback
    progress = _bars()
    tasks: dict[str, TaskID] = {}

    def callback(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return progress, callback


# -- shared option groups ------------------------------------------------------------------------------
def _type_hints(func: Callable, skip: str) -> dict:
    """``typing.get_type_hints`` of ``func`` without parameter ``skip``; a name that does not
    resolve stays a string (the value of another option group, whose type a command may import
    only for type checkers: commands import their library lazily)."""
    namespace = getattr(inspect.unwrap(func), "__globals__", {})
    hints = {}
    for name, value in getattr(func, "__annotations__", {}).items():
        if name == skip:
            continue
        try:  # a string annotation (from __future__ import annotations), evaluated as typing does
            hints[name] = eval(value, namespace) if isinstance(value, str) else value  # noqa: S307
        except NameError:  # the parameter of another group, or a type checkers' import
            hints[name] = value
    return hints


#: the options that close a command's list in --help (an option group goes before them)
_TRAILING = frozenset({"root", "overwrite", "wait", "verbose", "background"})


def option_group(build: Callable[..., Any], into: str) -> Callable[[Callable], Callable]:
    """Options declared once and shared by several commands (typer has no option groups).

    ``build``'s parameters are typer options (``name: type = typer.Option(...)``); the decorated
    command gets them on its command line after its own parameters (before ``--root``,
    ``--overwrite``, ``--wait``, ``--verbose`` where it has them), and receives
    ``build(**their values)`` as the keyword argument ``into`` instead. Stack several groups; put
    :func:`reports_errors` above them::

        @app.command("map3d")
        @reports_errors
        @option_group(map_options, "options")
        def map3d(brain_name: str = BrainArgument, *, options: MapOptions) -> None: ...

    (:func:`command` writes the three decorators as one.)
    """
    hints = _type_hints(build, skip="return")
    group = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(build).parameters.values()
    ]
    names = [p.name for p in group]

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)
        own = [p for p in signature.parameters.values() if p.name != into]
        clash = set(names) & {p.name for p in own}
        if clash:
            raise TypeError(f"{func.__name__}: options {sorted(clash)} declared twice")
        func_hints = _type_hints(func, skip=into)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in names if name in kwargs}
            kwargs[into] = build(**values)
            return func(*args, **kwargs)

        parameters = [
            p.replace(
                kind=inspect.Parameter.KEYWORD_ONLY, annotation=func_hints.get(p.name, p.annotation)
            )
            for p in own
        ]
        at = len(parameters)
        if not set(names) <= _TRAILING:  # the closing options themselves go last
            at = next((i for i, p in enumerate(parameters) if p.name in _TRAILING), at)
        # typer reads the signature of the wrapper; the functools.wraps type does not declare it
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters[:at] + group + parameters[at:]
        )
        wrapper.__annotations__ = {
            **{k: v for k, v in func_hints.items() if k != into},
            **{p.name: p.annotation for p in group},
        }
        return wrapper

    return decorate


@dataclass(frozen=True)
class StageFlags:
    """The options every stage command ends with (:func:`stage_flags`)."""

    root: Path | None  #: --root / $CORTEXGRAPH_ROOT: the cohort brains are looked up in
    overwrite: bool  #: --overwrite: recompute even when up to date
    wait_s: float  #: --wait: seconds to wait for another process running the same stage
    verbose: bool  #: --verbose: debug logging

    @property
    def stage_keywords(self) -> dict[str, Any]:
        """What every stage function takes from these flags: ``overwrite`` and ``wait_s``."""
        return {"overwrite": self.overwrite, "wait_s": self.wait_s}


def stage_flags(
    root: Path = RootOption,
    overwrite: bool = OverwriteOption,
    wait: float = WaitOption,
    verbose: bool = VerboseOption,
) -> StageFlags:
    """``--root``, ``--overwrite``, ``--wait``, ``--verbose`` as :class:`StageFlags`; sets up
    logging (:func:`setup_logging`) on the way."""
    setup_logging(verbose)
    return StageFlags(root=root, overwrite=overwrite, wait_s=wait, verbose=verbose)


#: the option group of a stage command (:func:`command`): it ends with the options of
#: :func:`stage_flags` and receives them as the keyword argument ``flags`` (:class:`StageFlags`),
#: logging set up
STAGE = ("flags", stage_flags)


def logging_flag(verbose: bool = VerboseOption) -> bool:
    """``--verbose`` of a command without the stage options: sets up logging
    (:func:`setup_logging`) and returns the flag."""
    setup_logging(verbose)
    return verbose


#: the option group of a command that is no stage (:func:`command`): it ends with ``--verbose``
#: and receives its value as the keyword argument ``verbose``, logging set up
LOGGING = ("verbose", logging_flag)


def command(app: typer.Typer, name: str, *groups: tuple[str, Callable], **settings: Any):
    """Decorator: ``func`` as the command ``name`` of ``app`` (``app.command(name, **settings)``),
    its errors reported (:func:`reports_errors`), with option groups (:func:`option_group`), each
    ``(keyword, build)``; the first group's options come first on the command line::

        @command(app, "map3d", ("options", map_options), STAGE)
        def map3d(brain_name: str = BrainArgument, *, options: MapOptions, flags: StageFlags): ...
    """

    def decorate(func: Callable) -> Callable:
        for into, build in groups:  # each goes after those before it, before the closing options
            func = option_group(build, into)(func)
        return app.command(name, **settings)(reports_errors(func))

    return decorate


# -- stage parameters (cortexgraph.derivatives.parameters; docs/conventions.md "Parameters") ---------
@dataclass(frozen=True)
class ParametersFile:
    """The value of ``--params FILE.toml`` (an option group of :func:`parameters_group`)."""

    cls: type | str  #: the stage's frozen parameters dataclass, or ``"module:Name"`` of it
    stage: str  #: the command's name (in messages)
    path: Path | None  #: the file, or None when not given
    #: the parameter names of the options given on the command line; None: all count as given
    given: frozenset[str] | None = None

    def resolve(self, options: dict[str, Any], names: dict[str, str] | None = None) -> Any:
        """The stage's parameters: defaults < the file < the ``options`` (field -> value) that were
        given on the command line. ``names`` maps a field to its option's parameter name where they
        differ (``{"voxel_size_mm": "voxel_mm"}``)."""
        from cortexgraph.derivatives.parameters import resolve_parameters

        names = names or {}
        given = self.given
        chosen = {
            field: value
            for field, value in options.items()
            if given is None or names.get(field, field) in given
        }
        return resolve_parameters(_parameters_class(self.cls), self.path, chosen, stage=self.stage)


def _parameters_class(cls: type | str) -> type:
    """``cls``, or the class ``"module:Name"`` names (imported now: commands import their library
    only when they run)."""
    if isinstance(cls, type):
        return cls
    import importlib

    module, _, name = cls.partition(":")
    found: type = getattr(importlib.import_module(module), name)
    return found


def given_options(ctx: typer.Context) -> frozenset[str]:
    """The parameter names of the options of ``ctx``'s command that the user gave (on the command
    line or in the environment, not defaults)."""
    given = []
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            given.append(name)
    return frozenset(given)


def parameters_group(cls: type | str, stage: str) -> tuple[str, Callable[..., ParametersFile]]:
    """The option group ``("parameters", build)`` of a stage with parameters dataclass ``cls``
    (for :func:`command`; ``cls`` may be ``"module:Name"``, imported when used):
    ``--params FILE.toml`` (received as a :class:`ParametersFile`) and
    ``--params-template`` (prints every parameter with its default as TOML and exits)."""

    def print_template(value: bool) -> None:
        if value:
            from cortexgraph.derivatives.parameters import parameters_template

            typer.echo(parameters_template(_parameters_class(cls), stage=stage), nl=False)
            raise typer.Exit()

    def build(
        ctx: typer.Context,
        params: Path = typer.Option(
            None,
            "--params",
            metavar="FILE.toml",
            help="Parameters file: `key = value` per parameter (all of them: --params-template); "
            "options given on the command line win over it.",
        ),
        params_template: bool = typer.Option(
            False,
            "--params-template",
            is_eager=True,
            callback=print_template,
            help="Print every parameter with its default, type and unit as a TOML file, and exit.",
        ),
    ) -> ParametersFile:
        return ParametersFile(cls=cls, stage=stage, path=params, given=given_options(ctx))

    return ("parameters", build)


def with_progress(stage: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``stage(*args, progress=callback, **kwargs)`` under :func:`stage_progress` (rich bars on a
    terminal, plain progress lines otherwise); returns what the stage returns."""
    progress, callback = stage_progress()
    with progress:
        return stage(*args, progress=callback, **kwargs)


def on_brain(name: str, flags: StageFlags, stage: Callable[..., Any], *args, **kwargs):
    """Run a stage on the brain of a command's BRAIN argument: ``(brain, report)`` with the brain
    looked up in ``flags.root`` and ``report = stage(brain, *args, overwrite=, wait_s=, progress=,
    **kwargs)`` (the flags' values, :func:`with_progress`)."""
    from cortexgraph.data.manifest import find_brain

    brain = find_brain(name, flags.root)
    return brain, with_progress(stage, brain, *args, **flags.stage_keywords, **kwargs)


def each_brain(names: list[str], flags: StageFlags, stage: Callable[..., dict], *args, **kwargs):
    """Run a stage on each brain of a command's BRAINS argument: yields ``(brain, report)`` of
    :func:`on_brain`. Brains are looked up one at a time: an unknown one fails when the loop
    reaches it, after the ones before it ran."""
    for name in names:
        yield on_brain(name, flags, stage, *args, **kwargs)


def split_list(values: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """The items of a list option, given comma-separated (``--area hOc1,hOc2``), repeated
    (``--area hOc1 --area hOc2``) or both; blanks dropped, order kept. None -> []."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def reuse_state(report: dict) -> str:
    """``up to date, reused`` or ``computed (<why>)``: a stage's report in words."""
    return "up to date, reused" if report["reused"] else f"computed ({report['why']})"


def resolve_path(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()
