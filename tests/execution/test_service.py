"""The cohort's local engine service with real processes: one engine per cohort (concurrent starts
attach to one; a live engine that does not answer is refused, never duplicated), stopping it with
SIGTERM or by the end of its owner cancels its jobs cleanly, and a killed engine takes its jobs'
commands with it (parent-death signal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cortexgraph.errors import StageBusyError
from cortexgraph.execution.guard import pdeathsig_supported, pid_alive, process_identity
from cortexgraph.execution.launcher import JobSpec, cohort_launcher
from cortexgraph.execution.runjob import read_started

pytest.importorskip("distributed", reason="the [cluster] extra is not installed")

from cortexgraph.execution.service import (  # noqa: E402
    engine_folder,
    ensure_service,
    scheduler_file,
    service_record,
    stop_service,
)

ROOT = Path(__file__).resolve().parents[2]
#: a command that runs for a minute or more on 2 cores and writes its outputs atomically
LONG = ["synth", "{out}", "--preset", "tiny"]


@pytest.fixture(autouse=True)
def _job_environment(monkeypatch):
    """Engines and jobs run `python -m cortexgraph...` from this checkout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture
def cohort(tmp_path):
    root = tmp_path / "cohort"
    root.mkdir()
    yield root
    stop_service(root, timeout_s=30)  # whatever a failed test left running


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _long_job(launcher, out: Path, **spec) -> str:
    job_id = launcher.submit(JobSpec("long", [a.format(out=out) for a in LONG], **spec))
    folder = launcher.jobs_root / job_id
    _wait(lambda: read_started(folder).get("pid"), 120, "the job to start")
    time.sleep(2.0)  # past the imports: it is writing outputs
    return job_id


def _leftovers(out: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes (hidden files)."""
    return [p for p in out.rglob(".*") if p.is_file()] if out.exists() else []


def test_one_engine_per_cohort(cohort):
    code = (
        "import sys; from cortexgraph.execution.service import ensure_service, service_record; "
        "c, s = ensure_service(sys.argv[1], gpus=0, cpus=1, idle_timeout_s=300); "
        "print(s, service_record(sys.argv[1])['pid'], c.scheduler.address); c.close()"
    )
    starters = [
        subprocess.Popen([sys.executable, "-c", code, str(cohort)], stdout=subprocess.PIPE,
                         text=True)  # fmt: skip
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180)[0].split() for p in starters]
    assert all(p.returncode == 0 for p in starters), outs
    assert sorted(o[0] for o in outs) == ["False", "True"]  # one started it, one attached
    assert outs[0][1:] == outs[1][1:]  # the same engine process and scheduler
    record = service_record(cohort)
    assert record["pid"] == int(outs[0][1]) and pid_alive(record["pid"])
    client, started = ensure_service(cohort)  # a third launch attaches too
    assert not started and client.scheduler.address == outs[0][2]
    client.close()

    assert stop_service(cohort)  # SIGTERM
    assert not pid_alive(record["pid"])
    assert not scheduler_file(cohort).exists() and not service_record(cohort)
    assert not stop_service(cohort)

    # an engine process that runs but does not answer is refused, not duplicated
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        folder = engine_folder(cohort)
        (folder / "service.json").write_text(json.dumps(process_identity(hung.pid)))
        scheduler_file(cohort).write_text(json.dumps({"address": "tcp://127.0.0.1:9"}))
        with pytest.raises(StageBusyError, match=f"pid {hung.pid}.*does not answer"):
            ensure_service(cohort)
        assert hung.poll() is None
    finally:
        hung.kill()
        hung.wait()
    # once that process has ended, its files are stale: a new engine starts
    client, started = ensure_service(cohort, gpus=0, cpus=1)
    assert started and service_record(cohort)["pid"] != hung.pid
    client.close()


def test_an_engine_stops_with_its_owner_and_cancels_its_jobs(cohort, tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        launcher = cohort_launcher(cohort, gpus=0, cpus=1, owner_pid=owner.pid)
        out = tmp_path / "phantom"
        running = _long_job(launcher, out)
        queued = launcher.submit(JobSpec("queued", ["--version"]))  # waits for the core
        assert launcher.status(queued)["state"] == "queued"
        command = read_started(launcher.jobs_root / running)["pid"]
        engine = service_record(cohort)
        launcher.close()
        owner.kill()  # the server that started the engine ends (here: without a word)
        owner.wait()
        _wait(lambda: not pid_alive(engine["pid"]), 120, "the engine to stop")
    finally:
        if owner.poll() is None:
            owner.kill()
    assert not pid_alive(command)
    jobs = cohort_launcher(cohort)
    first, second = jobs.status(running), jobs.status(queued)
    assert first["state"] == "cancelled" and first["attempts"][0]["exit_code"] == 143
    assert second["state"] == "cancelled" and second["attempts"] == []  # it never started
    assert _leftovers(out) == []
    assert "job cancelled" in (jobs.jobs_root / running / "log.txt").read_text()
    assert "owner" in (engine_folder(cohort) / "service.log").read_text()


@pytest.mark.skipif(not pdeathsig_supported(), reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_killed_engine_takes_its_jobs_commands_with_it(cohort, tmp_path):
    launcher = cohort_launcher(cohort, gpus=0, cpus=1)
    out = tmp_path / "phantom"
    job_id = _long_job(launcher, out)
    command = read_started(launcher.jobs_root / job_id)["pid"]
    engine = service_record(cohort)["pid"]
    launcher.close()
    os.kill(engine, signal.SIGKILL)  # nothing of the engine can clean up
    # its worker exits (Dask's parent watch) and the kernel sends the command SIGTERM
    _wait(lambda: not pid_alive(command), 60, "the job's command to end")
    assert _leftovers(out) == []  # the command unwound: its temporary files are gone
    status = cohort_launcher(cohort).status(job_id)
    assert status["state"] == "failed" and "left no result" in status["message"]
