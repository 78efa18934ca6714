"""Background jobs of the LSM workflow: start, list, status, follow and cancel (the published web
front end runs training and prediction as cluster jobs, Schiffer et al. 2021, NeuroImage, Sect. 2.6;
here they are detached local processes).

A job runs one ``cortexgraph lsm ...`` command in a detached subprocess (its own session, so it
survives the shell that started it). Everything about it lives in ``<brain out>/lsm/jobs/<id>/``::

    job.json      what was started: id, name, argv, working folder, output folders, creation time
    state.json    state (queued, running, done, failed, cancelled), progress per stage
                  ({stage: [done, total]}), start / end times, message
    process.json  the job's process: host, boot id, pid, start time (clock ticks since boot)
    log.txt       the command's stdout and stderr

Inside the job, :class:`JobContext` (entered by the CLI when ``CORTEXGRAPH_LSM_JOB`` names the job
folder) marks it running, turns SIGTERM into :class:`JobCancelled` and records progress and the final
state. Cancelling sends SIGTERM to the job's process group: the exception unwinds the command, every
output being written is a temporary file that :func:`cortexgraph.outputs.atomic_path` removes, so no
half-written output remains; completed stages (a finished model of a chain) keep their records and
are reused by a later run. A job that does not stop within the timeout is killed and the temporary
files it left in its output folders are removed.

Safety rules (the job folder is plain files that anyone with write access can edit):

* a job id must be a name (:func:`cortexgraph.data.names.check_name`) and its folder must resolve
  inside the jobs folder (:func:`cortexgraph.data.names.inside`): ``../x``, absolute paths, slashes
  and symbolic links out of the folder are refused;
* a process is signalled only when it is still the job's: same host and boot as recorded, its start
  time in ``/proc/<pid>/stat`` equal to the recorded one (so a recycled pid is never signalled), and
  its environment naming this job's folder in ``CORTEXGRAPH_LSM_JOB``;
* the sweep of temporary files only deletes hidden files inside the brain's derivatives folder;
  output folders listed in job.json outside it are skipped, and symbolic links are not followed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cortexgraph.data.names import NAME_RULE, check_name, inside, is_inside, is_name
from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm.layout import jobs_dir  # noqa: F401 - re-exported: where a brain's jobs live
from cortexgraph.outputs import write_json_atomic

log = logging.getLogger(__name__)

JOB_ENV = "CORTEXGRAPH_LSM_JOB"
TERMINAL = ("done", "failed", "cancelled")
STATES = ("queued", "running", *TERMINAL)


class JobCancelled(BaseException):  # noqa: N818 - a signal, not an error
    """Raised inside a job when it receives SIGTERM (``cortexgraph lsm jobs cancel``)."""


def new_job_id(name: str) -> str:
    """``YYYYmmdd-HHMMSS-<name>-<4 hex>``: sortable by start time, unique, a valid name."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.-")[:40] or "job"
    return check_name(f"{time.strftime('%Y%m%d-%H%M%S')}-{clean}-{secrets.token_hex(2)}", "job id")


# --------------------------------------------------------------------------------------------------
# process identity


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks after boot (field 22 of /proc/<pid>/stat)."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _job_env(pid: int) -> str | None:
    """The value of ``CORTEXGRAPH_LSM_JOB`` in the environment of ``pid`` (None: unset/unreadable)."""
    try:
        data = Path(f"/proc/{int(pid)}/environ").read_bytes()
    except OSError:
        return None
    prefix = f"{JOB_ENV}=".encode()
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode("utf-8", errors="replace")
    return None


def process_identity(pid: int) -> dict:
    """What identifies process ``pid`` on this machine: host, boot id, pid, start ticks."""
    return {
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "pid": int(pid),
        "start_ticks": _start_ticks(pid),
    }


def read_process(job_dir: Path) -> dict:
    """The recorded process of a job (``{}`` when none was recorded or the file is unreadable)."""
    try:
        data = json.loads((Path(job_dir) / "process.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def job_process(job_dir: Path) -> tuple[int | None, str]:
    """``(pid, "")`` when the job's recorded process is running and is still the job's, else
    ``(None, why not)``. See the module docstring for the checks."""
    proc = read_process(job_dir)
    pid = proc.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return None, "no process recorded"
    if proc.get("host") != socket.gethostname():
        return None, f"the job ran on host {proc.get('host')!r}, not this one"
    if proc.get("boot_id") != _boot_id():
        return None, "the machine has restarted since the job started"
    ticks = _start_ticks(pid)
    if ticks is None or not pid_alive(pid):
        return None, f"process {pid} has ended"
    if ticks != proc.get("start_ticks"):
        return None, f"pid {pid} now belongs to another process (started at another time)"
    expected = str(Path(job_dir).resolve())
    if _job_env(pid) != expected:
        return None, f"process {pid} is not this job's (its environment names another job)"
    return pid, ""


def _write_process(job_dir: Path, pid: int) -> None:
    write_json_atomic(Path(job_dir) / "process.json", process_identity(pid))


def _write_state(job_dir: Path, **changes) -> dict:
    state = read_state(job_dir)
    state.update(changes)
    write_json_atomic(job_dir / "state.json", state)
    return state


def read_state(job_dir: Path) -> dict:
    """The recorded state of a job (``{}`` when it has none yet)."""
    path = Path(job_dir) / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


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
    outputs : folders the job writes into (swept for temporary files if it has to be killed; only
        those inside the brain's derivatives folder, the parent of ``lsm/jobs``, are ever swept).
    cwd, env : working folder and extra environment of the job.

    Returns
    -------
    The job id. The job folder holds job.json, state.json (``queued``, then the job's own states)
    and log.txt.
    """
    job_id = new_job_id(name)
    job_dir = inside(jobs_root, job_id, what="job id")
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
    _write_process(job_dir, process.pid)
    return job_id


def job_folder(jobs_root: Path, job_id: str) -> Path:
    """The folder of job ``job_id``: the id must be a name and its folder must resolve inside
    ``jobs_root`` and hold a job.json (else CortexgraphError, exit status 2)."""
    check_name(
        job_id,
        "job id",
        fix=f"give a job id as printed by `cortexgraph lsm jobs list` ({NAME_RULE})",
    )
    job_dir = inside(jobs_root, job_id, what="job id")
    if not (job_dir / "job.json").is_file():
        known = ", ".join(j["id"] for j in _job_records(jobs_root)) or "none"
        raise CortexgraphError(f"no job {job_id!r}", file=jobs_root, fix=f"pick one of: {known}")
    return job_dir


def _job_records(jobs_root: Path) -> list[dict]:
    root = Path(jobs_root)
    if not root.is_dir():
        return []
    return [
        {"id": p.name}
        for p in sorted(root.iterdir())
        if is_name(p.name) and is_inside(p, root) and (p / "job.json").is_file()
    ]


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
    """The job's record merged with its state and process. ``alive`` is true while the job's own
    process runs (:func:`job_process`); a queued/running job whose process is gone is reported as
    ``failed`` ("process ended without reporting")."""
    job_dir = job_folder(jobs_root, job_id)
    try:
        record = json.loads((job_dir / "job.json").read_text())
    except ValueError:
        raise CortexgraphError(
            "job.json is not valid JSON", file=job_dir / "job.json", fix="delete the job folder"
        ) from None
    if not isinstance(record, dict):
        raise CortexgraphError(
            "job.json does not hold a job", file=job_dir / "job.json", fix="delete the job folder"
        )
    record = {k: v for k, v in record.items() if k not in ("state", "alive")}
    record.update(read_state(job_dir))
    record["id"] = job_id
    record["pid"] = read_process(job_dir).get("pid")
    pid, why = job_process(job_dir)
    record["alive"] = pid is not None
    if record.get("state") in ("queued", "running") and pid is None:
        # the state file may be written just after the process ended: read it once more
        time.sleep(0.05)
        record.update(read_state(job_dir))
        if record.get("state") in ("queued", "running"):
            record["state"] = "failed"
            record["message"] = f"process ended without reporting (killed?): {why}"
    return record


def list_jobs(jobs_root: Path) -> list[dict]:
    """Every job of the folder, oldest first, as :func:`job_status` (folders whose name is not a
    valid job id are left out)."""
    return [job_status(jobs_root, j["id"]) for j in _job_records(jobs_root)]


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
    job_dir = job_folder(jobs_root, job_id)
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


def sweep_temporary_files(folders: Sequence[Path], since_unix: float, root: Path) -> list[Path]:
    """Remove the temporary files of interrupted atomic writes (hidden ``.<name>.*`` files, not
    ``.lock``) modified after ``since_unix`` under ``folders``; returns what was removed.

    Only files inside ``root`` are touched: a folder outside it is skipped with a warning, symbolic
    links are neither followed nor removed.
    """
    removed = []
    for folder in folders:
        folder = Path(folder)
        if not is_inside(folder, root):
            log.warning("not sweeping %s: it is outside %s", folder, root)
            continue
        if not folder.is_dir() or folder.is_symlink():
            continue
        for dirpath, _, names in os.walk(folder, followlinks=False):
            for name in names:
                path = Path(dirpath) / name
                if not name.startswith(".") or name == ".lock" or path.is_symlink():
                    continue
                try:
                    if not path.is_file() or not is_inside(path, root):
                        continue
                    if path.stat().st_mtime + 1.0 >= since_unix:
                        path.unlink()
                        removed.append(path)
                except FileNotFoundError:
                    continue
    return removed


def _send(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:  # the job leads its own session (start_new_session)
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _stop(job_dir: Path, timeout_s: float) -> bool:
    """SIGTERM to the job's process group, SIGKILL after ``timeout_s``; only while the process is
    still the job's (:func:`job_process`, checked again before the SIGKILL). Returns False when
    there was no process of the job to signal."""
    pid, _ = job_process(job_dir)
    if pid is None:
        return False
    ticks = _start_ticks(pid)

    def running() -> bool:  # the same process (pid and start time), not yet reaped
        return pid_alive(pid) and _start_ticks(pid) == ticks

    _send(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    if running() and job_process(job_dir)[0] == pid:
        _send(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30.0
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def cancel_job(jobs_root: Path, job_id: str, timeout_s: float = 30.0) -> dict:
    """Stop a job cleanly: SIGTERM to its process group, wait for it to record ``cancelled``; after
    ``timeout_s`` kill it and remove the temporary files it left. Returns the final status.

    Nothing is signalled unless the process is still the job's (module docstring); a job running on
    another host is refused with a CortexgraphError.
    """
    job_dir = job_folder(jobs_root, job_id)
    status = job_status(jobs_root, job_id)
    if status.get("state") in TERMINAL:
        return status
    process = read_process(job_dir)
    if process.get("host") not in (None, socket.gethostname()):
        raise CortexgraphError(
            f"job {job_id} runs on host {process.get('host')!r}",
            file=job_dir / "process.json",
            fix="cancel it on that host",
        )
    _stop(job_dir, timeout_s)
    try:
        record = json.loads((job_dir / "job.json").read_text())
    except ValueError:
        record = {}
    outputs = record.get("outputs", []) if isinstance(record, dict) else []
    created = record.get("created_unix", 0.0) if isinstance(record, dict) else 0.0
    removed = sweep_temporary_files(
        [Path(str(o)) for o in outputs if isinstance(o, str)],
        float(created) if isinstance(created, int | float) else 0.0,
        root=Path(jobs_root).parent.parent,
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
        _write_process(self.job_dir, os.getpid())
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
