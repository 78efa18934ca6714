"""Running one launcher job: its ``cortexgraph`` command, with retries, a time limit and cancellation.

Used by both back ends of :mod:`cortexgraph.execution.launcher`: inside a Dask task of the local
engine, and as ``python -m cortexgraph.execution.runjob JOB_FOLDER`` in a Slurm batch script.

An attempt runs ``python -m cortexgraph.cli.main ARGV...`` (or, with ``processes > 1``, under
``torch.distributed.run --standalone --nproc-per-node P``) in its own process group, with its output
appended to ``log.txt`` and ``CORTEXGRAPH_JOB_DIR`` naming the job folder; ``started.json`` records
the attempt (number, host, pid, start time). On Linux the command gets SIGTERM when the process that
runs it dies (:mod:`cortexgraph.execution.guard`), so a job never outlives its engine worker. A failed attempt is
retried up to ``retries`` times, except for failures a rerun cannot fix: exit status 2 (bad input or
parameters) and 4 (an upstream stage is missing or stale), and a time limit. The stages resume
(checkpoints, reused records), so a retry continues where the attempt stopped.

Cancellation (SIGTERM to this process: ``scancel``; or the ``cancelled`` callback: the local engine)
sends SIGTERM to the attempt's process group, which unwinds the command (every output being written
is a temporary file that is removed), and SIGKILL after ``grace_s``.

The outcome is written last to ``result.json``: ``state`` (done, failed, cancelled), ``exit_code``,
``message``, ``attempts`` (start, end, exit status of each), ``host``, ``started_unix``,
``finished_unix``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cortexgraph.execution.guard import parent_death_preexec
from cortexgraph.outputs import write_json_atomic

__all__ = [
    "NO_RETRY_EXIT_CODES",
    "run_job",
    "read_result",
    "write_cancelled",
    "current_job_dir",
    "write_progress",
    "read_progress",
    "read_started",
    "progress_text",
    "ProgressWriter",
    "main",
]

#: Exit statuses a rerun cannot change (cortexgraph.errors): bad input, stale upstream.
NO_RETRY_EXIT_CODES = (2, 4)
JOB_DIR_ENV = "CORTEXGRAPH_JOB_DIR"


class _Terminated(Exception):
    pass


def _read_json_object(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable, not JSON or not an
    object (a job's files are written atomically, so None means "not written yet")."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_result(job_dir: str | os.PathLike) -> dict | None:
    """The ``result.json`` of a job (None while it has none)."""
    return _read_json_object(Path(job_dir) / "result.json")


def write_cancelled(job_dir: str | os.PathLike, message: str) -> None:
    """``result.json`` of a job stopped before it started (nothing else will write it); kept when
    the job has a result already."""
    if read_result(job_dir) is None:
        write_json_atomic(
            Path(job_dir) / "result.json",
            {"id": Path(job_dir).name, "state": "cancelled", "exit_code": None,
             "message": message, "attempts": [], "host": None, "started_unix": None,
             "finished_unix": round(time.time(), 3)},
        )  # fmt: skip


def current_job_dir() -> Path | None:
    """The job folder when this process runs as a launcher job (``CORTEXGRAPH_JOB_DIR``)."""
    value = os.environ.get(JOB_DIR_ENV)
    return Path(value) if value else None


def write_progress(stage: str, done: int, total: int, job_dir: Path | None = None) -> None:
    """Record a command's progress in its job folder (``progress.json``: ``{stage: [done, total]}``),
    which :meth:`cortexgraph.execution.launcher.Launcher.status` reports. A no-op outside a job. For
    the command-line layer (a computing module reports through its ``progress`` callback)."""
    job_dir = job_dir or current_job_dir()
    if job_dir is None:
        return
    progress = read_progress(job_dir)
    progress[str(stage)] = [int(done), int(total)]
    write_json_atomic(Path(job_dir) / "progress.json", progress)


def read_progress(job_dir: str | os.PathLike) -> dict:
    """The ``progress.json`` of a job (``{}`` when it has none)."""
    return _read_json_object(Path(job_dir) / "progress.json") or {}


def read_started(job_dir: str | os.PathLike) -> dict:
    """The ``started.json`` of a job: its current attempt (``{}`` before the first one)."""
    return _read_json_object(Path(job_dir) / "started.json") or {}


def progress_text(progress: dict) -> str:
    """``train 120/300, models 2/5``."""
    return ", ".join(f"{stage} {done}/{total}" for stage, (done, total) in progress.items())


class ProgressWriter:
    """A progress callback ``(stage, done, total)`` for a command running as a job: it writes
    ``progress.json`` (:func:`write_progress`) at most every ``min_interval_s`` and whenever a stage
    completes, and prints a line to the job's log. A no-op outside a job."""

    def __init__(self, job_dir: Path | None = None, min_interval_s: float = 1.0) -> None:
        self.job_dir = job_dir or current_job_dir()
        self.min_interval_s = float(min_interval_s)
        self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.job_dir is None:
            return
        now = time.monotonic()
        if done >= total or now - self._last >= self.min_interval_s:
            self._last = now
            write_progress(stage, done, total, job_dir=self.job_dir)
            print(f"[{time.strftime('%H:%M:%S')}] {stage} {done}/{total}", flush=True)


def _command(spec: dict) -> list[str]:
    argv = [str(a) for a in spec["argv"]]
    processes = int(spec.get("processes", 1))
    if processes > 1:
        return [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={processes}", "-m", "cortexgraph.cli.main", *argv,
        ]  # fmt: skip
    return [sys.executable, "-m", "cortexgraph.cli.main", *argv]


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the process group, SIGKILL after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_job(
    job_dir: str | os.PathLike,
    cancelled: Callable[[], bool] | None = None,
    *,
    enforce_time_limit: bool = True,
    poll_s: float = 0.5,
    grace_s: float = 30.0,
) -> dict:
    """Run the job of ``job_dir/job.json`` to its end; returns (and writes) its result.

    Parameters
    ----------
    cancelled : polled every ``poll_s``; True stops the job (state ``cancelled``).
    enforce_time_limit : stop an attempt after ``time_limit_min`` (Slurm enforces it itself).
    grace_s : between SIGTERM and SIGKILL.
    """
    job_dir = Path(job_dir)
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    spec = job["spec"]
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
    env[JOB_DIR_ENV] = str(job_dir.resolve())
    threads = max(1, int(spec.get("cpus", 1)) // max(1, int(spec.get("processes", 1))))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if name not in (spec.get("env") or {}):
            env[name] = str(threads)  # the CPUs asked for, shared by the processes
    limit_s = (
        float(spec["time_limit_min"]) * 60.0
        if enforce_time_limit and spec.get("time_limit_min")
        else None
    )
    retries = int(spec.get("retries", 0))
    result = {
        "id": job["id"],
        "state": "failed",
        "exit_code": None,
        "message": "",
        "attempts": [],
        "host": socket.gethostname(),
        "started_unix": round(time.time(), 3),
    }
    terminated = {"flag": False}

    def on_sigterm(signum, frame):
        terminated["flag"] = True

    previous = None
    with contextlib.suppress(ValueError):  # not the main thread (a Dask worker): no handler
        previous = signal.signal(signal.SIGTERM, on_sigterm)

    def stop_requested() -> bool:
        return terminated["flag"] or (cancelled is not None and cancelled())

    try:
        for attempt in range(1, retries + 2):
            if stop_requested():
                result.update(state="cancelled", message="cancelled")
                break
            with open(job_dir / "log.txt", "ab") as log:
                log.write(
                    f"=== cortexgraph job {job['id']}: attempt {attempt}/{retries + 1} on "
                    f"{socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode()
                )
                log.flush()
                start = time.time()
                process = subprocess.Popen(
                    _command(spec),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=spec.get("cwd") or None,
                    env=env,
                    start_new_session=True,
                    preexec_fn=parent_death_preexec(signal.SIGTERM),
                )
                write_json_atomic(
                    job_dir / "started.json",
                    {"attempt": attempt, "host": socket.gethostname(), "pid": process.pid,
                     "started_unix": round(start, 3)},
                )  # fmt: skip
                outcome = None
                while process.poll() is None:
                    if stop_requested():
                        _stop(process, grace_s)
                        outcome = "cancelled"
                        break
                    if limit_s is not None and time.time() - start > limit_s:
                        _stop(process, grace_s)
                        outcome = "timeout"
                        break
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=poll_s)  # returns as soon as the command ends
                code = process.returncode
                if outcome is None and code != 0:
                    # Slurm's scancel signals every process of the job: the command may end
                    # before this process has seen its own SIGTERM
                    time.sleep(0.3)
                    if stop_requested():
                        outcome = "cancelled"
            result["attempts"].append(
                {
                    "start_unix": round(start, 3),
                    "end_unix": round(time.time(), 3),
                    "exit_code": code,
                }
            )
            result["exit_code"] = code
            if outcome == "cancelled":
                result.update(state="cancelled", message="cancelled")
                with open(job_dir / "log.txt", "ab") as log:
                    log.write(f"=== job cancelled (exit status {code}) ===\n".encode())
                break
            if outcome == "timeout":
                result.update(
                    state="failed",
                    message=f"time limit of {spec['time_limit_min']} min reached (not retried)",
                )
                break
            if code == 0:
                result.update(state="done", message="")
                break
            result.update(state="failed", message=f"exit status {code}")
            if code in NO_RETRY_EXIT_CODES:
                result["message"] += " (bad input or stale upstream: not retried)"
                break
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    result["finished_unix"] = round(time.time(), 3)
    write_json_atomic(job_dir / "result.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m cortexgraph.execution.runjob JOB_FOLDER`` (Slurm): exit 0 when the job is done,
    1 when it failed, 130 when it was cancelled."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cortexgraph.execution.runjob JOB_FOLDER", file=sys.stderr)
        return 2
    result = run_job(args[0], enforce_time_limit=False)
    return {"done": 0, "cancelled": 130}.get(result["state"], 1)


if __name__ == "__main__":
    sys.exit(main())
