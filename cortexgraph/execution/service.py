"""The local engine service: a Dask cluster that outlives the command that started it, for jobs.

Jobs of the local back end (:class:`cortexgraph.execution.launcher.DaskJobs`) are Dask tasks; they
must keep running, and stay listable, after ``cortexgraph jobs submit`` (or ``cortexgraph lsm train
--background``, or the web app's request) has returned. So they run on a cluster in a detached
process of its own, **one per cohort**: the scheduler writes its address to
``<cohort>/derivatives/cortexgraph/engine/jobs-scheduler.json`` (Dask's scheduler-file format) and the
service its identity (host, boot id, pid, start time) to ``engine/service.json``. Starting is
serialised by a lock (``engine/engine.lock``): a second ``serve`` or command on the same cohort
attaches to the running engine; an engine whose process runs but does not answer is refused with a
message naming its pid, never duplicated.

The service ends

* after ``idle_timeout_s`` without work;
* on SIGTERM (:func:`stop_service`, ``cortexgraph engine stop``): it cancels every job it knows
  (running commands get SIGTERM and unwind without half-written outputs; queued ones are recorded
  ``cancelled``), waits for them to record it, then shuts the cluster down;
* the same way when its *owner* ends (``owner_pid``: the web server that started it; polled every
  second), so that jobs do not outlive the server they were started from. An engine started by a
  command-line job (``--background``) has no owner: it outlives the command by design.

If the service itself is killed (SIGKILL), its worker processes exit at once (Dask's parent watch)
and each job's command gets SIGTERM from the kernel (:mod:`cortexgraph.execution.guard`).

Workers: without GPUs, one worker with a thread per core and the resource ``CPU = cores`` (jobs ask
for ``CPU = cpus``, so several small jobs share the machine and a large one waits for the cores);
with G GPUs, one worker per GPU (``CUDA_VISIBLE_DEVICES`` set to it) with ``GPU = 1`` and its share
of the cores. Runs ``python -m cortexgraph.execution.service FOLDER [--gpus G] [--cpus C]
[--idle-timeout S] [--owner PID]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cortexgraph.data.manifest import DERIVATIVES
from cortexgraph.errors import CortexgraphError, ResourceError, StageBusyError
from cortexgraph.execution.guard import process_identity, same_process
from cortexgraph.resources import usable_cores

__all__ = [
    "engine_folder",
    "scheduler_file",
    "service_record",
    "start_service",
    "ensure_service",
    "stop_service",
    "service_client",
    "FOLDER_DATASET_PREFIX",
]

SCHEDULER_FILE = "jobs-scheduler.json"
SERVICE_FILE = "service.json"
LOCK_FILE = "engine.lock"
#: Dask datasets ``cortexgraph-folder-<job id>`` hold each job's folder (for the drain at shutdown).
FOLDER_DATASET_PREFIX = "cortexgraph-folder-"
JOB_KEY_PREFIX = "cortexgraph-job-"


def engine_folder(cohort_root: str | os.PathLike) -> Path:
    """``<cohort>/derivatives/cortexgraph/engine``."""
    return Path(cohort_root) / DERIVATIVES / "engine"


def scheduler_file(cohort_root: str | os.PathLike) -> Path:
    return engine_folder(cohort_root) / SCHEDULER_FILE


def service_record(cohort_root: str | os.PathLike) -> dict:
    """The ``service.json`` of the cohort's engine (``{}`` when there is none)."""
    try:
        data = json.loads((engine_folder(cohort_root) / SERVICE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ResourceError(
            "jobs run on the local engine (Dask distributed), which is not installed",
            fix="pip install 'cortexgraph[cluster]'",
        ) from None


def service_client(cohort_root: str | os.PathLike, timeout_s: float = 5.0):
    """A ``distributed.Client`` of the cohort's running service, or None when none answers."""
    _require_distributed()
    from distributed import Client

    path = scheduler_file(cohort_root)
    if not path.is_file():
        return None
    try:
        return Client(scheduler_file=str(path), timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError):
        return None


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch or no driver: no GPU
        return 0


@contextlib.contextmanager
def _start_lock(folder: Path, timeout_s: float):
    """An exclusive ``flock`` on ``engine/engine.lock`` (waits up to ``timeout_s``)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StageBusyError(
                        f"another process has been starting the local engine for over "
                        f"{timeout_s:.0f} s",
                        file=str(folder / LOCK_FILE),
                        fix="wait for it, or read engine/service.log",
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def ensure_service(
    cohort_root: str | os.PathLike,
    *,
    gpus: int | None = None,
    cpus: int | None = None,
    idle_timeout_s: float = 3600.0,
    owner_pid: int | None = None,
    timeout_s: float = 120.0,
):
    """``(client, started)``: the client of the cohort's engine, and whether this call started it
    (module docstring). An engine that already runs is reused as it is (its resources, its owner).

    Parameters
    ----------
    gpus : GPUs to give the workers (default: every GPU torch sees).
    cpus : cores to give the workers (default: this process's).
    idle_timeout_s : the service ends after this long without work.
    owner_pid : a process whose end stops the service (the web server); None: no owner.
    timeout_s : how long to wait for it to come up.

    Raises StageBusyError (exit status 3) when the cohort's engine process runs but does not answer.
    """
    _require_distributed()
    client = service_client(cohort_root)
    if client is not None:
        return client, False
    folder = engine_folder(cohort_root)
    with _start_lock(folder, timeout_s):
        client = service_client(cohort_root)  # started while we waited for the lock
        if client is not None:
            return client, False
        record = service_record(cohort_root)
        if record and same_process(record):
            raise StageBusyError(
                f"the cohort's local engine (pid {record['pid']}) runs but does not answer",
                file=str(folder / SERVICE_FILE),
                fix=f"stop it with `cortexgraph engine stop` (or kill {record['pid']}), then retry",
            )
        for name in (SCHEDULER_FILE, SERVICE_FILE):  # of a service that has ended
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
        command = [
            sys.executable, "-m", "cortexgraph.execution.service", str(folder),
            "--idle-timeout", str(float(idle_timeout_s)),
        ]  # fmt: skip
        if gpus is not None:
            command += ["--gpus", str(int(gpus))]
        if cpus is not None:
            command += ["--cpus", str(int(cpus))]
        if owner_pid is not None:
            command += ["--owner", str(int(owner_pid))]
        with open(folder / "service.log", "ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise CortexgraphError(
                    f"the local engine stopped at start (exit status {process.returncode})",
                    file=str(folder / "service.log"),
                    fix="read service.log; is the [cluster] extra installed?",
                )
            client = service_client(cohort_root)
            if client is not None:
                return client, True
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        raise CortexgraphError(
            f"the local engine did not start within {timeout_s:.0f} s",
            file=str(folder / "service.log"),
            fix="read service.log",
        )


def start_service(cohort_root: str | os.PathLike, **options):
    """The client of the cohort's service, started first when none runs (:func:`ensure_service`)."""
    return ensure_service(cohort_root, **options)[0]


def stop_service(cohort_root: str | os.PathLike, timeout_s: float = 90.0) -> bool:
    """Stop the cohort's service with SIGTERM (it cancels its jobs cleanly first; module
    docstring); False when none ran. A service on another host (no process of it here) is asked to
    shut down through its scheduler instead."""
    record = service_record(cohort_root)
    if record and same_process(record):
        pid = int(record["pid"])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while same_process(record) and time.monotonic() < deadline:
            time.sleep(0.1)
        if same_process(record):
            os.kill(pid, signal.SIGKILL)  # its workers exit, its jobs get SIGTERM (guard)
            while same_process(record) and time.monotonic() < deadline + 30:
                time.sleep(0.1)
        for name in (SCHEDULER_FILE, SERVICE_FILE):
            with contextlib.suppress(FileNotFoundError):
                (engine_folder(cohort_root) / name).unlink()
        return True
    if not scheduler_file(cohort_root).is_file():
        return False
    client = service_client(cohort_root)
    if client is None:
        with contextlib.suppress(FileNotFoundError):
            scheduler_file(cohort_root).unlink()  # stale
        return False
    with contextlib.suppress(Exception):
        client.shutdown()
    with contextlib.suppress(Exception):
        client.close()
    deadline = time.monotonic() + 30
    while scheduler_file(cohort_root).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(FileNotFoundError):
        scheduler_file(cohort_root).unlink()
    return True


def worker_specs(gpus: int, cpus: int, local_directory: str) -> dict:
    """Dask ``SpecCluster`` worker specifications (module docstring)."""
    from distributed import Nanny

    if gpus <= 0:
        return {
            "cpu": {
                "cls": Nanny,
                "options": {
                    "nthreads": cpus,
                    "resources": {"CPU": cpus},
                    "local_directory": local_directory,
                },
            }
        }
    share = max(1, cpus // gpus)
    return {
        f"gpu{i}": {
            "cls": Nanny,
            "options": {
                "nthreads": share,
                "resources": {"CPU": share, "GPU": 1},
                "env": {"CUDA_VISIBLE_DEVICES": str(i)},
                "local_directory": local_directory,
            },
        }
        for i in range(gpus)
    }


def _job_tasks_function():
    """For ``run_on_scheduler``: ``{key: state}`` of the job tasks the scheduler knows (shipped by
    value, like the launcher's own)."""

    def job_tasks(prefix, dask_scheduler=None) -> dict:
        return {
            key: ts.state
            for key, ts in dask_scheduler.tasks.items()
            if isinstance(key, str) and key.startswith(prefix)
        }

    return job_tasks


def drain(client, grace_s: float = 60.0) -> list[str]:
    """Cancel every job of the engine and wait (up to ``grace_s``) until none is queued or running;
    a job that never started gets a ``cancelled`` result. Returns the ids of the jobs cancelled."""
    from distributed import Event

    from cortexgraph.execution.runjob import read_result, write_cancelled

    folders = {}
    for name in client.list_datasets():
        if isinstance(name, str) and name.startswith(FOLDER_DATASET_PREFIX):
            with contextlib.suppress(Exception):
                folders[name.removeprefix(FOLDER_DATASET_PREFIX)] = Path(client.get_dataset(name))
    pending = [j for j, folder in folders.items() if read_result(folder) is None]
    for job_id in pending:
        Event(f"cortexgraph-cancel-{job_id}", client=client).set()
    live = ("waiting", "queued", "processing")  # not no-worker: those will never run
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        states = client.run_on_scheduler(_job_tasks_function(), prefix=JOB_KEY_PREFIX)
        if not any(state in live for state in states.values()):
            break
        time.sleep(0.2)
    for job_id in pending:
        write_cancelled(folders[job_id], "cancelled: the local engine was stopped")
    return pending


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cortexgraph.execution.service")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--gpus", type=int, default=None)
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--idle-timeout", type=float, default=3600.0)
    parser.add_argument("--owner", type=int, default=None, help="stop when this process ends")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds for jobs to stop")
    args = parser.parse_args(argv)

    import dask
    from distributed import Client, Scheduler, SpecCluster

    stop: dict[str, str | None] = {"why": None}

    def on_signal(signum, frame) -> None:
        stop["why"] = signal.Signals(signum).name

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    owner = process_identity(args.owner) if args.owner else None
    gpus = _gpu_count() if args.gpus is None else args.gpus
    cpus = args.cpus or usable_cores()
    path = args.folder / SCHEDULER_FILE
    record_path = args.folder / SERVICE_FILE
    from cortexgraph.outputs import write_json_atomic

    # the workers only launch job commands: they keep this process's environment (not Dask's
    # pre-spawn settings: one BLAS thread, aggressive malloc trimming), each command gets its own
    # thread counts from its job (cortexgraph.execution.runjob)
    settings = {"distributed.worker.daemon": False, "distributed.nanny.pre-spawn-environ": {}}
    with dask.config.set(settings):
        cluster = SpecCluster(
            scheduler={
                "cls": Scheduler,
                "options": {
                    "host": "127.0.0.1",
                    "dashboard_address": None,
                    "idle_timeout": f"{args.idle_timeout}s",
                },
            },
            workers=worker_specs(gpus, cpus, str(args.folder / "scratch")),
        )
        client = Client(cluster)
        write_json_atomic(
            record_path,
            {**process_identity(), "scheduler": cluster.scheduler_address, "gpus": gpus,
             "cpus": cpus, "owner": owner, "started_unix": round(time.time(), 3)},
        )  # fmt: skip
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        client.write_scheduler_file(str(tmp))
        os.replace(tmp, path)
        print(
            f"cortexgraph local engine: scheduler {cluster.scheduler_address}, {gpus} GPU(s), "
            f"{cpus} core(s), idle timeout {args.idle_timeout:.0f} s"
            + (f", owner pid {args.owner}" if owner else ""),
            flush=True,
        )
        scheduler = cluster.scheduler
        assert scheduler is not None  # SpecCluster starts its scheduler on creation
        try:
            while scheduler.status.name not in ("closed", "closing", "failed"):
                if stop["why"] is None and owner is not None and not same_process(owner):
                    stop["why"] = f"its owner (pid {args.owner}) has ended"
                if stop["why"] is not None:
                    print(f"stopping ({stop['why']}): cancelling the jobs", flush=True)
                    cancelled = drain(client, args.grace)
                    print(f"cancelled {len(cancelled)} job(s): {', '.join(cancelled)}", flush=True)
                    break
                time.sleep(0.5)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            with contextlib.suppress(Exception):
                client.close()
            with contextlib.suppress(Exception):
                cluster.close(timeout=30)
            with contextlib.suppress(FileNotFoundError):
                record_path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
