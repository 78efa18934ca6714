"""Background jobs of the LSM workflow: start, list, follow and cancel (the seeds' web front end runs
training and prediction as cluster jobs, 000:430-439; here they are detached local processes).

A job runs one ``cortexgraph lsm ...`` command in a detached subprocess (its own session, so it
survives the shell that started it). Everything about it lives in ``<out>/lsm/jobs/<id>/``::

    job.json     what was started: id, name, argv, working folder, output folders, creation time
    state.json   state (queued, running, done, failed, cancelled), pid, progress per stage
                 ({stage: [done, total]}), start / end times, message
    log.txt      the command's stdout and stderr

Inside the job, :class:`JobContext` (entered by the CLI when ``CORTEXGRAPH_LSM_JOB`` names the job
folder) marks it running, turns SIGTERM into :class:`JobCancelled` and records progress and the final
state. Cancelling sends SIGTERM to the job's process group: the exception unwinds the command, every
output being written is a temporary file that :func:`cortexgraph.outputs.atomic_path` removes, so no
half-written output remains; completed outputs (a finished model of a chain) stay and are reused by a
later run. A job that does not stop within the timeout is killed and the temporary files it left in
its output folders are removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cortexgraph.errors import CortexgraphError
from cortexgraph.outputs import write_json_atomic

JOB_ENV = "CORTEXGRAPH_LSM_JOB"
TERMINAL = ("done", "failed", "cancelled")
STATES = ("queued", "running", *TERMINAL)


class JobCancelled(BaseException):  # noqa: N818 - a signal, not an error
    """Raised inside a job when it receives SIGTERM (``cortexgraph lsm jobs cancel``)."""


def jobs_dir(out_dir: Path) -> Path:
    """``<out>/lsm/jobs``: the jobs of one brain."""
    return Path(out_dir) / "lsm" / "jobs"


def new_job_id(name: str) -> str:
    """``YYYYmmdd-HHMMSS-<name>-<4 hex>``: sortable by start time, unique."""
    clean = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{clean}-{secrets.token_hex(2)}"


def _write_state(job_dir: Path, **changes) -> dict:
    state = read_state(job_dir)
    state.update(changes)
    write_json_atomic(job_dir / "state.json", state)
    return state


def read_state(job_dir: Path) -> dict:
    """The recorded state of a job (``{}`` when it has none yet)."""
    path = Path(job_dir) / "state.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def start_job(
    jobs_root: Path,
    argv: Sequence[str],
    *,
    name: str,
    outputs: Sequence[Path] = (),
    cwd: Path | None = None,
    env: dict | None = None,
) -> str:
    """Start ``cortexgraph <argv...>`` as a detached background job.

    Parameters
    ----------
    jobs_root : the brain's jobs folder (:func:`jobs_dir`).
    argv : the command's arguments after ``cortexgraph`` (e.g. ``["lsm", "train", ...]``), without
        ``--background``.
    name : short name used in the job id (e.g. ``train-hOc1``).
    outputs : folders the job writes into (swept for temporary files if it has to be killed).
    cwd, env : working folder and extra environment of the job.

    Returns
    -------
    The job id. The job folder holds job.json, state.json (``queued``, then the job's own states)
    and log.txt.
    """
    job_id = new_job_id(name)
    job_dir = Path(jobs_root) / job_id
    job_dir.mkdir(parents=True, exist_ok=False)
    command = [sys.executable, "-m", "cortexgraph.cli.main", *[str(a) for a in argv]]
    created = time.time()
    write_json_atomic(
        job_dir / "job.json",
        {
            "id": job_id,
            "name": name,
            "argv": list(map(str, argv)),
            "command": command,
            "cwd": str(cwd or Path.cwd()),
            "outputs": [str(Path(o).resolve()) for o in outputs],
            "created_unix": round(created, 3),
        },
    )
    _write_state(job_dir, state="queued", progress={}, created_unix=round(created, 3))
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env[JOB_ENV] = str(job_dir.resolve())
    with open(job_dir / "log.txt", "ab") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(cwd or Path.cwd()),
            env=child_env,
            start_new_session=True,
        )
    (job_dir / "pid").write_text(f"{process.pid}\n")
    return job_id


def _job_dir(jobs_root: Path, job_id: str) -> Path:
    job_dir = Path(jobs_root) / job_id
    if not (job_dir / "job.json").is_file():
        known = ", ".join(sorted(p.name for p in Path(jobs_root).glob("*") if p.is_dir())) or "none"
        raise CortexgraphError(f"no job {job_id!r}", file=jobs_root, fix=f"pick one of: {known}")
    return job_dir


def _pid(job_dir: Path) -> int | None:
    try:
        return int((job_dir / "pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    """True when the process exists and is not a zombie (a finished child not yet reaped)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    except (FileNotFoundError, IndexError):
        pass
    return True


def job_status(jobs_root: Path, job_id: str) -> dict:
    """The job's record merged with its state; a queued/running job whose process is gone is
    reported as ``failed`` ("process ended without reporting")."""
    job_dir = _job_dir(jobs_root, job_id)
    record = json.loads((job_dir / "job.json").read_text())
    state = read_state(job_dir)
    record.update(state)
    record["pid"] = _pid(job_dir)
    record["alive"] = pid_alive(record["pid"])
    if record.get("state") in ("queued", "running") and not record["alive"]:
        # the state file may be written just after the process ended: read it once more
        time.sleep(0.05)
        state = read_state(job_dir)
        record.update(state)
        if record.get("state") in ("queued", "running"):
            record["state"] = "failed"
            record["message"] = "process ended without reporting (killed?)"
    return record


def list_jobs(jobs_root: Path) -> list[dict]:
    """Every job of the folder, oldest first, as :func:`job_status`."""
    root = Path(jobs_root)
    if not root.is_dir():
        return []
    return [job_status(root, p.name) for p in sorted(root.iterdir()) if (p / "job.json").is_file()]


def progress_text(progress: dict) -> str:
    """``train 120/300, models 2/5``."""
    return ", ".join(f"{stage} {done}/{total}" for stage, (done, total) in progress.items())


def follow_job(
    jobs_root: Path,
    job_id: str,
    write: Callable[[str], None] = lambda text: print(text, end="", flush=True),
    poll_s: float = 0.5,
    timeout_s: float | None = None,
) -> dict:
    """Print the job's log as it grows until the job ends (or ``timeout_s``); returns its status."""
    job_dir = _job_dir(jobs_root, job_id)
    log_path = job_dir / "log.txt"
    position = 0
    start = time.monotonic()
    while True:
        status = job_status(jobs_root, job_id)
        if log_path.is_file():
            with open(log_path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read()
                position += len(chunk)
            if chunk:
                write(chunk.decode("utf-8", errors="replace"))
        if status.get("state") in TERMINAL:
            return status
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            return status
        time.sleep(poll_s)


def sweep_temporary_files(folders: Sequence[Path], since_unix: float) -> list[Path]:
    """Remove the temporary files of interrupted atomic writes (hidden ``.<name>.*`` files, not
    ``.lock``) created after ``since_unix`` under ``folders``; returns what was removed."""
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in folder.rglob(".*"):
            if not path.is_file() or path.name == ".lock":
                continue
            if path.stat().st_mtime + 1.0 >= since_unix:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def cancel_job(jobs_root: Path, job_id: str, timeout_s: float = 30.0) -> dict:
    """Stop a job cleanly: SIGTERM to its process group, wait for it to record ``cancelled``; after
    ``timeout_s`` kill it and remove the temporary files it left. Returns the final status."""
    job_dir = _job_dir(jobs_root, job_id)
    status = job_status(jobs_root, job_id)
    if status.get("state") in TERMINAL:
        return status
    pid = status["pid"]
    record = json.loads((job_dir / "job.json").read_text())
    if pid and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)
    removed = sweep_temporary_files(
        [Path(o) for o in record.get("outputs", [])], record.get("created_unix", 0.0)
    )
    state = read_state(job_dir)
    if state.get("state") not in TERMINAL:
        _write_state(
            job_dir,
            state="cancelled",
            finished_unix=round(time.time(), 3),
            message="cancelled (stopped before it could record it)",
        )
    if removed:
        _write_state(job_dir, removed_temporary_files=[str(p) for p in removed])
    return job_status(jobs_root, job_id)


class JobContext:
    """The running side of a job: state, progress and SIGTERM handling.

    ``with JobContext(job_dir) as job: ...`` marks the job running (with this process's pid), makes
    SIGTERM raise :class:`JobCancelled`, and on exit records ``done``, ``cancelled`` (the exception is
    swallowed; :attr:`cancelled` is set) or ``failed`` (the exception propagates).
    ``job.progress(stage, done, total)`` records progress (at most every ``min_interval_s``; always
    when a stage completes) and prints a line to the log.
    """

    def __init__(self, job_dir: Path, min_interval_s: float = 1.0) -> None:
        self.job_dir = Path(job_dir)
        self.min_interval_s = min_interval_s
        self.cancelled = False
        self._progress: dict[str, list[int]] = {}
        self._last_write = 0.0
        self._previous_handler = None

    def __enter__(self) -> JobContext:
        (self.job_dir / "pid").write_text(f"{os.getpid()}\n")
        _write_state(
            self.job_dir, state="running", pid=os.getpid(), started_unix=round(time.time(), 3)
        )
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def _on_sigterm(self, signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one cancellation is enough
        raise JobCancelled()

    def progress(self, stage: str, done: int, total: int) -> None:
        self._progress[stage] = [int(done), int(total)]
        now = time.monotonic()
        if done >= total or now - self._last_write >= self.min_interval_s:
            self._last_write = now
            _write_state(self.job_dir, progress=dict(self._progress))
            print(f"[{time.strftime('%H:%M:%S')}] {stage} {done}/{total}", flush=True)

    def __exit__(self, exc_type, exc, tb) -> bool:
        signal.signal(signal.SIGTERM, self._previous_handler or signal.SIG_DFL)
        finished = round(time.time(), 3)
        if exc_type is None:
            _write_state(
                self.job_dir, state="done", progress=self._progress, finished_unix=finished
            )
        elif issubclass(exc_type, JobCancelled | KeyboardInterrupt):
            self.cancelled = True
            _write_state(
                self.job_dir,
                state="cancelled",
                progress=self._progress,
                finished_unix=finished,
                message="cancelled",
            )
            print("job cancelled", flush=True)
            return True
        else:
            _write_state(
                self.job_dir,
                state="failed",
                progress=self._progress,
                finished_unix=finished,
                message=f"{exc_type.__name__}: {exc}",
            )
        return False


def current_job_dir() -> Path | None:
    """The job folder when this process runs as a job (``CORTEXGRAPH_LSM_JOB``), else None."""
    value = os.environ.get(JOB_ENV)
    return Path(value) if value else None
