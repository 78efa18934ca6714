"""SIGTERM in a command (what a cluster scheduler sends at its time limit): exit status 143 and
the "terminated" message, also when the signal lands in the middle of an import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import typer
from typer.testing import CliRunner

from cortexgraph.cli import common
from cortexgraph.cli.common import Terminated, command


def _app(body):
    app = typer.Typer()

    @command(app, "work")
    def work() -> None:
        body()

    @app.command("other")
    def other() -> None:  # a second command, so typer keeps the name "work"
        pass

    return app


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")
def test_terminated_turned_into_another_error_still_exits_143():
    """A C extension's module initialisation reports any exception as ImportError: a SIGTERM
    that became another error on its way up is still a termination, not an internal error."""

    def body() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated as exc:
            raise ImportError("initialization failed") from exc

    result = CliRunner().invoke(_app(body), ["work"])
    assert result.exit_code == 143, result.output
    assert "terminated" in result.output and "internal error" not in result.output

    # without a SIGTERM the same error is an internal error (exit 1)
    def failing() -> None:
        raise ImportError("initialization failed")

    result = CliRunner().invoke(_app(failing), ["work"])
    assert result.exit_code == 1 and "internal error" in result.output


def test_a_sigterm_inside_an_import_is_delivered_after_it(monkeypatch):
    """The handler does not raise inside the import machinery; it sends the signal again."""
    sent = []
    monkeypatch.setattr(common, "SIGTERM_RETRY_S", 0.0)
    monkeypatch.setattr(common.os, "kill", lambda pid, sig: sent.append((pid, sig)))

    class Code:
        def __init__(self, filename):
            self.co_filename = filename

    class Frame:
        def __init__(self, filename, back=None):
            self.f_code, self.f_back = Code(filename), back

    importing = Frame("/x/numpy/__init__.py", Frame("<frozen importlib._bootstrap>", Frame("a.py")))
    common._SIGTERM.clear()
    common._raise_terminated(signal.SIGTERM, importing)  # no exception
    deadline = time.time() + 5
    while not sent and time.time() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGTERM)] and common._SIGTERM.is_set()
    with pytest.raises(Terminated):
        common._raise_terminated(signal.SIGTERM, Frame("/x/stage.py", Frame("main.py")))
    common._SIGTERM.clear()


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")
def test_sigterm_during_a_slow_import_waits_for_it_then_exits_143(tmp_path):
    """A real process: SIGTERM while a module is executing at import; the command ends with 143
    once the import is done, and the module is whole (its last line ran)."""
    (tmp_path / "slowmod.py").write_text(
        "import time\nSTARTED = open(__file__ + '.started', 'w').close()\n"
        "time.sleep(1.0)\nDONE = True\nopen(__file__ + '.done', 'w').close()\n"
    )
    script = textwrap.dedent(
        """
        import sys, time, typer
        sys.path.insert(0, sys.argv[1])
        from cortexgraph.cli.common import command
        app = typer.Typer()

        @command(app, "work")
        def work() -> None:
            import slowmod
            assert slowmod.DONE
            time.sleep(30)

        @app.command("other")
        def other() -> None:
            pass

        app(["work"])
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = tmp_path / "slowmod.py.started"
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.01)
    assert started.exists()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert "terminated" in out and "internal error" not in out
    assert (tmp_path / "slowmod.py.done").exists()  # the import finished before the exception


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")
def test_sigterm_ends_the_process_although_a_worker_thread_never_ends(tmp_path):
    """A real process, started like the ``cortexgraph`` entry point (END_PROCESS_ON_INTERRUPT):
    a worker thread computes without end (as a solver loop did) when SIGTERM comes. The command
    reports "terminated" and the process exits 143 after the grace period, instead of waiting on
    the thread for ever (the interpreter joins worker threads at exit)."""
    script = textwrap.dedent(
        """
        import os, signal, threading, time, typer
        from cortexgraph.cli import common
        from cortexgraph.cli.common import command
        common.END_PROCESS_ON_INTERRUPT = True
        common.THREAD_GRACE_S = 1.0
        app = typer.Typer()

        @command(app, "work")
        def work() -> None:
            threading.Thread(target=lambda: time.sleep(3600)).start()  # not a daemon
            open(os.environ["STARTED"], "w").close()
            time.sleep(60)

        @app.command("other")
        def other() -> None:
            pass

        app(["work"])
        """
    )
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "STARTED": str(started)},
    )
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.01)
    assert started.exists()
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the process waited for its worker thread after SIGTERM")
    assert proc.returncode == 143, out
    assert "terminated" in out
    assert time.monotonic() - sent < 25  # the grace period (1 s here), not the thread's hour
