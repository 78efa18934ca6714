"""The local engine service: a Dask cluster that outlives the command that started it, for jobs.

Jobs of the local back end (:class:`cortexgraph.execution.launcher.DaskJobs`) are Dask tasks; they
must keep running, and stay listable, after ``cortexgraph jobs submit`` (or the web app's request)
has returned. So they run on a cluster in a detached process of its own, one per cohort, whose
scheduler writes its address to ``<cohort>/derivatives/cortexgraph/engine/jobs-scheduler.json``
(Dask's scheduler-file format) and which ends after ``idle_timeout_s`` without work, or with
:func:`stop_service` (``cortexgraph engine stop``).

Workers: without GPUs, one worker with a thread per core and the resource ``CPU = cores`` (jobs ask
for ``CPU = cpus``, so several small jobs share the machine and a large one waits for the cores);
with G GPUs, one worker per GPU (``CUDA_VISIBLE_DEVICES`` set to it) with ``GPU = 1`` and its share
of the cores. Runs ``python -m cortexgraph.execution.service FOLDER [--gpus G] [--cpus C]
[--idle-timeout S]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from cortexgraph.data.manifest import DERIVATIVES
from cortexgraph.errors import CortexgraphError

__all__ = ["engine_folder", "scheduler_file", "start_service", "stop_service", "service_client"]

SCHEDULER_FILE = "jobs-scheduler.json"


def engine_folder(cohort_root: str | os.PathLike) -> Path:
    """``<cohort>/derivatives/cortexgraph/engine``."""
    return Path(cohort_root) / DERIVATIVES / "engine"


def scheduler_file(cohort_root: str | os.PathLike) -> Path:
    return engine_folder(cohort_root) / SCHEDULER_FILE


def service_client(cohort_root: str | os.PathLike, timeout_s: float = 5.0):
    """A ``distributed.Client`` of the cohort's running service, or None when none answers."""
    from distributed import Client

    path = scheduler_file(cohort_root)
    if not path.is_file():
        return None
    try:
        return Client(scheduler_file=str(path), timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError):
        return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch or no driver: no GPU
        return 0


def start_service(
    cohort_root: str | os.PathLike,
    *,
    gpus: int | None = None,
    cpus: int | None = None,
    idle_timeout_s: float = 3600.0,
    timeout_s: float = 120.0,
):
    """The client of the cohort's service, started first when none runs (module docstring).

    Parameters
    ----------
    gpus : GPUs to give the workers (default: every GPU torch sees).
    cpus : cores to give the workers (default: this process's).
    idle_timeout_s : the service ends after this long without work.
    timeout_s : how long to wait for it to come up.
    """
    client = service_client(cohort_root)
    if client is not None:
        return client
    folder = engine_folder(cohort_root)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        scheduler_file(cohort_root).unlink()  # of a service that has ended
    command = [
        sys.executable, "-m", "cortexgraph.execution.service", str(folder),
        "--idle-timeout", str(float(idle_timeout_s)),
    ]  # fmt: skip
    if gpus is not None:
        command += ["--gpus", str(int(gpus))]
    if cpus is not None:
        command += ["--cpus", str(int(cpus))]
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
            return client
        time.sleep(0.5)
    raise CortexgraphError(
        f"the local engine did not start within {timeout_s:.0f} s",
        file=str(folder / "service.log"),
        fix="read service.log",
    )


def stop_service(cohort_root: str | os.PathLike) -> bool:
    """Shut the cohort's service down (running jobs are stopped with it). False when none ran."""
    client = service_client(cohort_root)
    if client is None:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cortexgraph.execution.service")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--gpus", type=int, default=None)
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--idle-timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)

    import dask
    from distributed import Client, Scheduler, SpecCluster

    gpus = _gpu_count() if args.gpus is None else args.gpus
    cpus = args.cpus or _cores()
    path = args.folder / SCHEDULER_FILE
    with dask.config.set({"distributed.worker.daemon": False}):
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
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        client.write_scheduler_file(str(tmp))
        os.replace(tmp, path)
        print(
            f"cortexgraph local engine: scheduler {cluster.scheduler_address}, {gpus} GPU(s), "
            f"{cpus} core(s), idle timeout {args.idle_timeout:.0f} s",
            flush=True,
        )
        try:
            while cluster.scheduler.status.name not in ("closed", "closing", "failed"):
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            with contextlib.suppress(Exception):
                client.close()
            with contextlib.suppress(Exception):
                cluster.close(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
