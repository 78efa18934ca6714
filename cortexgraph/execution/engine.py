"""The execution engine: a Dask distributed client made from options or a configuration file.

Four ways to run the task graph of :mod:`cortexgraph.execution.graph`:

``workers=0``
    serially in this process, in dependency order (no Dask; for debugging and as the reference the
    parallel runs are compared with);
default
    a local Dask cluster sized to the machine: ``min(CPU cores, most tasks that can run at once)``
    worker *processes* with one thread each (the stages are CPU-bound Python and numpy code, which
    threads would serialise on the GIL);
``scheduler``
    an existing Dask scheduler, by address (``tcp://host:8786``) or scheduler file (what
    ``dask scheduler --scheduler-file F`` writes); its workers may be anywhere that sees the cohort
    folder under the same path;
``slurm``
    workers started as Slurm batch jobs by dask-jobqueue (``SLURMCluster``; every key of the
    ``[engine.slurm]`` table but ``jobs`` is passed to it, ``jobs`` worker jobs are submitted).

Configuration file (TOML; command-line options win over it)::

    [engine]
    scheduler = "tcp://login01:8786"   # or a scheduler file; or leave out for a local cluster
    workers = 4                        # local cluster size (0 = serial)
    threads_per_worker = 1
    memory_limit = "auto"              # per local worker ("auto": machine memory / workers)
    gpu_tasks = false                  # training tasks ask their worker for resources GPU=1
                                       # (local workers then offer GPU=1 each)
    wait_s = 3600                      # a task waits this long for a stage lock held elsewhere
    retries = 0                        # reruns of a task that raised (lost workers are always rerun)

    [engine.slurm]                     # dask-jobqueue SLURMCluster(**table), docs/scaling.md
    jobs = 4
    cores = 16
    memory = "64GB"
    processes = 4
    walltime = "04:00:00"
    queue = "cpu"
    job_script_prologue = ["source /gpfs/lab/cortexgraph/.venv/bin/activate"]

Dask workers of a local cluster are not daemonic processes here (``distributed.worker.daemon`` is
off while the engine runs), so a task may start processes of its own (DataLoader workers, torchrun).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.resources import usable_cores

__all__ = ["EngineOptions", "Engine", "open_engine", "default_workers", "slurm_cluster_kwargs"]

log = logging.getLogger(__name__)

#: Environment of the local cluster's worker processes: one BLAS / OpenMP thread per worker (Dask's
#: default), without Dask's default ``MALLOC_TRIM_THRESHOLD_=65536``: with it glibc returns freed
#: memory to the system at once, and every large allocation faults its pages in again. Measured on the
#: demo phantom (`cortexgraph train-encoder`, one process, 2-core machine): 128 s with it, 77 s
#: without (system time 59 s vs 13 s); build-graph of one brain 25.4 s vs 24.1 s.
WORKER_ENVIRON = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class EngineOptions:
    """How to run tasks (module docstring). ``None`` fields take their defaults."""

    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str | float | None = "auto"
    dashboard: bool = False
    gpu_tasks: bool = False
    wait_s: float = 3600.0
    retries: int = 0
    slurm: Mapping[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> EngineOptions:
        """Options from the ``[engine]`` table of a TOML file (ParameterError naming the file for an
        unknown key, a wrong type or unreadable TOML)."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ParameterError(
                "engine configuration file not found",
                file=str(path),
                fix="give an existing TOML file",
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ParameterError(
                f"not valid TOML ({exc})", file=str(path), fix="fix the syntax"
            ) from None
        table = data.get("engine", {})
        if not isinstance(table, dict):
            raise ParameterError("[engine] must be a table", file=str(path))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ParameterError(
                f"unknown key(s) in [engine]: {', '.join(unknown)}",
                file=str(path),
                fix=f"use only {', '.join(sorted(known))}",
            )
        options = cls(**table)
        options.validate(str(path))
        return options

    def updated(self, **changes: Any) -> EngineOptions:
        """A copy with the given fields replaced, ignoring ``None`` values (unset options)."""
        options = replace(self, **{k: v for k, v in changes.items() if v is not None})
        options.validate()
        return options

    def validate(self, file: str | None = None) -> None:
        """ParameterError for values out of range."""
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0
        ):
            raise ParameterError(
                f"workers must be an integer >= 0, got {self.workers!r}", file=file
            )
        if not isinstance(self.threads_per_worker, int) or self.threads_per_worker < 1:
            raise ParameterError(
                f"threads_per_worker must be an integer >= 1, got {self.threads_per_worker!r}",
                file=file,
            )
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ParameterError(
                f"retries must be an integer >= 0, got {self.retries!r}", file=file
            )
        if not isinstance(self.wait_s, int | float) or self.wait_s < 0:
            raise ParameterError(f"wait_s must be a number >= 0, got {self.wait_s!r}", file=file)
        if self.slurm is not None and not isinstance(self.slurm, Mapping):
            raise ParameterError("[engine.slurm] must be a table", file=file)
        if self.scheduler and self.slurm:
            raise ParameterError(
                "give either scheduler or [engine.slurm], not both",
                file=file,
                fix="remove one of them",
            )

    @property
    def kind(self) -> str:
        """``serial``, ``scheduler``, ``slurm`` or ``local``."""
        if self.workers == 0 and not self.scheduler and not self.slurm:
            return "serial"
        if self.scheduler:
            return "scheduler"
        if self.slurm:
            return "slurm"
        return "local"


def default_workers(max_parallel: int | None = None) -> int:
    """Workers of a local cluster: the CPU cores this process may use, at most ``max_parallel``."""
    cores = usable_cores()
    if max_parallel is not None:
        cores = min(cores, max(1, int(max_parallel)))
    return max(1, cores)


def slurm_cluster_kwargs(settings: Mapping[str, Any]) -> tuple[dict, int]:
    """``(SLURMCluster keyword arguments, number of worker jobs)`` from an ``[engine.slurm]`` table."""
    kwargs = dict(settings)
    jobs = kwargs.pop("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ParameterError(f"[engine.slurm] jobs must be an integer >= 1, got {jobs!r}")
    kwargs.setdefault("cores", 1)
    kwargs.setdefault("memory", "4GB")
    return kwargs, jobs


@dataclass
class Engine:
    """A running engine: ``client`` is a ``distributed.Client`` (None when serial)."""

    options: EngineOptions
    client: Any = None
    cluster: Any = None

    def __post_init__(self) -> None:
        if self.client is not None:
            # libraries that must be first imported in a worker's main thread (module docstring
            # of cortexgraph.execution.worker_setup); reaches workers that join later too
            from cortexgraph.execution.worker_setup import PLUGIN_NAME, MainThreadImports

            self.client.register_plugin(MainThreadImports(), name=PLUGIN_NAME)

    @property
    def kind(self) -> str:
        return self.options.kind

    @property
    def serial(self) -> bool:
        return self.client is None

    def worker_count(self) -> int:
        """Workers connected now (1 when serial)."""
        if self.client is None:
            return 1
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def describe(self) -> str:
        if self.client is None:
            return "serial (this process)"
        where = self.client.scheduler.address if self.client.scheduler else "?"
        return f"{self.kind} Dask cluster, {self.worker_count()} worker(s), scheduler {where}"


@contextlib.contextmanager
def open_engine(
    options: EngineOptions | None = None,
    *,
    max_parallel: int | None = None,
    local_directory: str | os.PathLike | None = None,
    timeout_s: float = 120.0,
) -> Iterator[Engine]:
    """Start or attach to the engine of ``options`` for the duration of the ``with`` block.

    Parameters
    ----------
    options : see :class:`EngineOptions` (default: a local cluster).
    max_parallel : most tasks the graph can run at once (caps the size of a local cluster).
    local_directory : scratch folder of local workers (default: Dask's, in the system's temp dir).
    timeout_s : how long to wait for the first worker of an existing scheduler or of Slurm jobs.

    A local cluster, or the Slurm worker jobs, end with the block; an existing scheduler is left
    running.
    """
    options = options or EngineOptions()
    options.validate()
    if options.kind == "serial":
        yield Engine(options)
        return
    try:
        import dask
        from distributed import Client
    except ImportError:  # pragma: no cover - the [cluster] extra is missing
        raise CortexgraphError(
            "the Dask distributed engine is not installed",
            fix="pip install 'cortexgraph[cluster]', or run serially with --workers 0",
        ) from None
    settings = {
        "distributed.worker.daemon": False,
        "distributed.nanny.pre-spawn-environ": dict(WORKER_ENVIRON),
    }
    with dask.config.set(settings):
        if options.kind == "scheduler":
            address = str(options.scheduler)
            try:
                if Path(address).is_file():
                    client = Client(scheduler_file=address, timeout=f"{timeout_s}s")
                else:
                    client = Client(address, timeout=f"{timeout_s}s")
            except OSError as exc:
                raise CortexgraphError(
                    f"cannot reach the Dask scheduler {address} ({exc})",
                    fix="start it (`dask scheduler`, or `cortexgraph engine start`) or check "
                    "the address",
                ) from None
            try:
                client.wait_for_workers(1, timeout=timeout_s)
                yield Engine(options, client=client)
            finally:
                client.close()
            return
        if options.kind == "slurm":
            from dask_jobqueue import SLURMCluster

            kwargs, jobs = slurm_cluster_kwargs(options.slurm or {})
            if local_directory is not None:
                kwargs.setdefault("local_directory", str(local_directory))
            slurm_cluster = SLURMCluster(**kwargs)
            try:
                slurm_cluster.scale(jobs=jobs)
                client = Client(slurm_cluster)
                try:
                    client.wait_for_workers(1, timeout=timeout_s)
                    yield Engine(options, client=client, cluster=slurm_cluster)
                finally:
                    client.close()
            finally:
                slurm_cluster.close()
            return
        from distributed import LocalCluster

        n = options.workers or default_workers(max_parallel)
        extra: dict[str, Any] = {}
        if options.gpu_tasks:
            extra["resources"] = {"GPU": 1}  # every local worker may run a training task
        if local_directory is not None:
            Path(local_directory).mkdir(parents=True, exist_ok=True)
            extra["local_directory"] = str(local_directory)
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=options.threads_per_worker,
            processes=True,
            memory_limit=options.memory_limit,
            dashboard_address=":8787" if options.dashboard else None,
            silence_logs=logging.WARNING,
            **extra,
        )
        try:
            client = Client(cluster)
            try:
                yield Engine(options, client=client, cluster=cluster)
            finally:
                client.close()
        finally:
            cluster.close()
