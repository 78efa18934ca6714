"""Training and prediction jobs: one launcher interface, a local (Dask) and a Slurm back end.

A job is one ``cortexgraph`` command (``["lsm", "train", "B20", "--area", "hOc1", ...]``,
``["train-gnn", "--root", COHORT, ...]``) with its resources and relations (:class:`JobSpec`): GPUs,
CPUs, memory, a time limit, retries of a failed run, and the jobs it must wait for (``after``:
predict after train). :func:`open_launcher` gives a :class:`Launcher` over a jobs folder; its
methods are what ``cortexgraph jobs`` (and ``cortexgraph lsm jobs``, and the web app) call:

    launcher = open_launcher(jobs_root, cohort_root=cohort, backend="local")   # or "slurm"
    train = launcher.submit(JobSpec("train-hOc1", ["lsm", "train", ...], gpus=1, time_limit_min=90))
    predict = launcher.submit(JobSpec("predict-hOc1", ["lsm", "predict", ...], after=(train,)))
    launcher.list(); launcher.status(predict); launcher.follow(predict); launcher.cancel(train)

A cohort's jobs folder is ``<cohort>/derivatives/cortexgraph/jobs`` (:func:`jobs_folder`;
:func:`cohort_launcher` opens it on the cohort's local engine): every job of the cohort lives there,
whether it was submitted with ``cortexgraph jobs submit``, ``cortexgraph lsm ... --background`` or
from the web app. Every job has a folder ``<jobs_root>/<id>/``::

    job.json     what was submitted: id, name, back end, the JobSpec, the engine's id of the job
                 (Dask key or Slurm job id), the ids it waits for, creation time
    log.txt      the command's output, attempt by attempt
    started.json the current attempt: number, host, pid, start time
    progress.json  what the command reports of its progress ({stage: [done, total]}), if it does
                 (:func:`cortexgraph.execution.runjob.write_progress`; ``CORTEXGRAPH_JOB_DIR``)
    result.json  the outcome, written by the job when it ends (cortexgraph.execution.runjob)
    job.sbatch   (Slurm) the batch script

**The state of a job comes from the engine**: while it is queued or running, from the Dask scheduler
(its task's state; which worker runs it) or from Slurm (``squeue``, then ``sacct``); once it has
ended, from its ``result.json``. A job that the engine no longer knows and that left no result (the
engine was shut down under it, a node died before Slurm requeued it) is ``failed`` with a message
saying so. States: ``queued``, ``running``, ``done``, ``failed``, ``cancelled``.

Back ends:

``local``
    The cohort's local engine service (:mod:`cortexgraph.execution.service`, started on first use):
    a job is a Dask task asking for worker resources ``CPU = cpus`` (and ``GPU = gpus``), whose
    upstream jobs' futures are its arguments (Dask runs it after them, and fails it without running
    it when one failed); retries and the time limit are applied by the job itself; cancelling sets a
    Dask ``Event`` the job polls, so a running command is stopped, and a queued one never starts.
``slurm``
    A batch script per job (:func:`cortexgraph.execution.slurm.batch_script`) submitted with
    ``sbatch``: ``--gres=gpu:N``, ``--time``, ``--dependency=afterok:...``, ``--requeue``; retries
    inside the job; cancelling is ``scancel``.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortexgraph.data.names import check_name, inside, is_name
from cortexgraph.errors import CortexgraphError, ParameterError, ResourceError
from cortexgraph.execution.runjob import (
    read_progress,
    read_result,
    read_started,
    run_job,
    write_cancelled,
)
from cortexgraph.outputs import write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "STATES",
    "TERMINAL",
    "JobSpec",
    "Launcher",
    "DaskJobs",
    "SlurmJobs",
    "open_launcher",
    "cohort_launcher",
    "jobs_folder",
    "new_job_id",
]

TERMINAL = ("done", "failed", "cancelled")
STATES = ("queued", "running", *TERMINAL)


@dataclass(frozen=True)
class JobSpec:
    """One job.

    name : short name, part of the job id (``train-hOc1``).
    argv : the ``cortexgraph`` command's arguments.
    gpus, cpus : GPUs and CPU cores (threads) it needs.
    memory_gb : memory it needs (Slurm ``--mem``; None: the partition's default).
    time_limit_min : wall-time limit of the whole job (None: none / the partition's).
    retries : reruns of a failed run (not for bad input, exit status 2, or stale upstream, 4).
    after : ids of jobs of the same jobs folder that must end ``done`` first.
    processes : processes per node under torchrun (data-parallel training over ``processes`` GPUs).
    env : extra environment variables.
    cwd : working folder (default: the jobs folder's cohort, or the current folder).
    """

    name: str
    argv: Sequence[str]
    gpus: int = 0
    cpus: int = 1
    memory_gb: float | None = None
    time_limit_min: float | None = None
    retries: int = 0
    after: Sequence[str] = ()
    processes: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def validated(self) -> JobSpec:
        """ParameterError for values out of range; returns a copy with plain types."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise ParameterError("a job needs a name", fix="give --name")
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise ParameterError(
                "a job needs a cortexgraph command", fix="give the command after --"
            )
        for key in ("gpus", "retries"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ParameterError(f"{key} must be an integer >= 0, got {value!r}")
        for key in ("cpus", "processes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{key} must be an integer >= 1, got {value!r}")
        for key in ("memory_gb", "time_limit_min"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ParameterError(f"{key} must be a finite number > 0, got {value!r}")
        return JobSpec(
            name=self.name,
            argv=tuple(self.argv),
            gpus=self.gpus,
            cpus=self.cpus,
            memory_gb=None if self.memory_gb is None else float(self.memory_gb),
            time_limit_min=None if self.time_limit_min is None else float(self.time_limit_min),
            retries=self.retries,
            after=tuple(self.after),
            processes=self.processes,
            env={str(k): str(v) for k, v in dict(self.env).items()},
            cwd=self.cwd,
        )

    def as_dict(self) -> dict:
        d = asdict(self)
        d["argv"] = list(self.argv)
        d["after"] = list(self.after)
        d["env"] = dict(self.env)
        return d


def new_job_id(name: str) -> str:
    """``YYYYmmdd-HHMMSS-<name>-<4 hex>``: sortable by submission time, unique, a valid name."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.-")[:40] or "job"
    return check_name(f"{time.strftime('%Y%m%d-%H%M%S')}-{clean}-{secrets.token_hex(2)}", "job id")


class Launcher:
    """Jobs of one jobs folder on one back end (module docstring). Subclasses implement
    ``_submit``, ``_live_state`` and ``_cancel``."""

    backend = ""

    def __init__(self, jobs_root: str | os.PathLike) -> None:
        self.jobs_root = Path(jobs_root)
        self.peers: dict[str, Launcher] = {self.backend: self}

    def for_backend(self, backend: str) -> Launcher:
        """The launcher of this jobs folder for another back end (jobs of a folder may have been
        submitted to both); ParameterError when it was not given to :func:`open_launcher`."""
        if backend not in self.peers:
            raise ParameterError(
                f"job of the {backend} back end, but this command knows only "
                f"{', '.join(self.peers)}",
                fix=f"pass --backend {backend}",
            )
        return self.peers[backend]

    # -- the job folder ------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """The folder of job ``job_id`` (CortexgraphError for an unknown or unsafe id)."""
        check_name(job_id, "job id", fix="give a job id as printed by `cortexgraph jobs list`")
        folder = inside(self.jobs_root, job_id, what="job id")
        if not (folder / "job.json").is_file():
            known = ", ".join(self.ids()) or "none"
            raise CortexgraphError(
                f"no job {job_id!r}", file=str(self.jobs_root), fix=f"pick one of: {known}"
            )
        return folder

    def ids(self) -> list[str]:
        """Job ids of the folder, oldest first."""
        if not self.jobs_root.is_dir():
            return []
        return [
            p.name
            for p in sorted(self.jobs_root.iterdir())
            if is_name(p.name) and (p / "job.json").is_file()
        ]

    def record(self, job_id: str) -> dict:
        try:
            data = json.loads((self.job_dir(job_id) / "job.json").read_text(encoding="utf-8"))
        except ValueError:
            raise CortexgraphError(
                "job.json is not valid JSON",
                file=str(self.jobs_root / job_id / "job.json"),
                fix="delete the job folder",
            ) from None
        return data

    # -- the interface -------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        """Submit a job; returns its id (its folder is ``<jobs_root>/<id>``)."""
        spec = spec.validated()
        upstream = []
        for job_id in spec.after:
            record = self.record(job_id)
            if record.get("backend") != self.backend:
                raise ParameterError(
                    f"job {job_id} runs on the {record.get('backend')} back end, not on "
                    f"{self.backend}",
                    fix="a job can only wait for jobs of the same back end",
                )
            upstream.append(record)
        job_id = new_job_id(spec.name)
        folder = inside(self.jobs_root, job_id, what="job id")
        folder.mkdir(parents=True, exist_ok=False)
        job = {
            "id": job_id,
            "name": re.sub(r"[^A-Za-z0-9._-]+", "_", spec.name)[:40],
            "backend": self.backend,
            "spec": spec.as_dict(),
            "after": list(spec.after),
            "created_unix": round(time.time(), 3),
            "python": sys.executable,
        }
        write_json_atomic(folder / "job.json", job)
        try:
            engine_id = self._submit(folder, job, upstream)
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        job["engine_id"] = engine_id
        write_json_atomic(folder / "job.json", job)
        return job_id

    def status(self, job_id: str) -> dict:
        """The job's description with ``state`` (:data:`STATES`), ``message``, ``where`` (worker
        or node), ``attempts`` and ``exit_code`` when known."""
        record = self.record(job_id)
        folder = self.job_dir(job_id)
        result = read_result(folder)
        status = {
            **record,
            "state": "queued",
            "message": "",
            "where": None,
            "progress": read_progress(folder),
            "started_unix": read_started(folder).get("started_unix"),
        }
        backend = record.get("backend", self.backend)
        if result is None and backend != self.backend:
            return self.for_backend(backend).status(job_id)
        if result is not None:
            status.update(
                state=result["state"],
                message=result.get("message", ""),
                exit_code=result.get("exit_code"),
                attempts=result.get("attempts", []),
                where=result.get("host"),
                finished_unix=result.get("finished_unix"),
            )
            return status
        state, message, where = self._live_state(folder, record)
        status.update(state=state, message=message, where=where)
        return status

    def list(self) -> list[dict]:
        """Every job of the folder, oldest first, as :meth:`status`."""
        return [self.status(job_id) for job_id in self.ids()]

    def follow(
        self,
        job_id: str,
        write: Callable[[str], None] = lambda text: print(text, end="", flush=True),
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> dict:
        """Print the job's log as it grows until the job ends (or ``timeout_s``); its status."""
        folder = self.job_dir(job_id)
        position = 0
        start = time.monotonic()
        while True:
            status = self.status(job_id)
            log = folder / "log.txt"
            if log.is_file():
                with open(log, "rb") as handle:
                    handle.seek(position)
                    chunk = handle.read()
                position += len(chunk)
                if chunk:
                    write(chunk.decode("utf-8", errors="replace"))
            if status["state"] in TERMINAL:
                return status
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                return status
            time.sleep(poll_s)

    def cancel(self, job_id: str, timeout_s: float = 60.0) -> dict:
        """Stop a job: a queued one never starts, a running one is stopped (SIGTERM, then
        SIGKILL); jobs that wait for it fail. Returns its status after at most ``timeout_s``."""
        status = self.status(job_id)
        if status["state"] in TERMINAL:
            return status
        folder = self.job_dir(job_id)
        self.for_backend(status.get("backend", self.backend))._cancel(folder, status)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status(job_id)
            if status["state"] in TERMINAL:
                return status
            time.sleep(0.5)
        return status

    def _write_cancelled(self, folder: Path, message: str) -> None:
        """``result.json`` of a job stopped before it started (nothing else will write it)."""
        write_cancelled(folder, message)

    # -- back end ------------------------------------------------------------------------------
    def _submit(self, folder: Path, job: dict, upstream: builtins.list[dict]) -> str:
        raise NotImplementedError

    def _live_state(self, folder: Path, record: dict) -> tuple[str, str, str | None]:
        raise NotImplementedError

    def _cancel(self, folder: Path, status: dict) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------------
# local back end: Dask


def _cancel_event_name(job_id: str) -> str:
    return f"cortexgraph-cancel-{job_id}"


def _dask_job(job_dir: str, *upstream_results: dict) -> dict:
    """The Dask task of a job: runs it (cortexgraph.execution.runjob) and raises when it did not end
    ``done`` (so that Dask fails the jobs that wait for it without running them)."""
    from distributed import Event

    job_id = Path(job_dir).name
    event = Event(_cancel_event_name(job_id))
    last: dict[str, Any] = {"t": 0.0, "value": False}

    def cancelled() -> bool:
        now = time.monotonic()
        if now - last["t"] >= 1.0:
            last["t"] = now
            last["value"] = bool(event.is_set())
        return last["value"]

    result = run_job(job_dir, cancelled)
    if result["state"] != "done":
        raise JobNotDone(job_id, result["state"], result.get("message", ""))
    return result


def _task_states_function():
    """A function for ``run_on_scheduler`` giving the state, worker and error of tasks (what the
    engine knows of jobs). Made inside a function so that it is shipped by value: the scheduler
    need not run the same cortexgraph version."""

    def task_states(keys, dask_scheduler=None) -> dict:
        out: dict[str, dict[str, Any] | None] = {}
        for key in keys:
            ts = dask_scheduler.tasks.get(key)
            if ts is None:
                out[key] = None
                continue
            out[key] = {
                "state": ts.state,
                "worker": ts.processing_on.address if ts.processing_on is not None else None,
                "error": str(ts.exception_text or ""),
                "blame": ts.exception_blame.key if ts.exception_blame is not None else None,
            }
        return out

    return task_states


class JobNotDone(Exception):
    """A job ended failed or cancelled (Dask passes it on to the jobs that wait for it)."""

    def __init__(self, job_id: str, state: str, message: str) -> None:
        self.job_id, self.state, self.message = job_id, state, message
        super().__init__(f"job {job_id} {state}: {message}")

    def __reduce__(self):
        return (JobNotDone, (self.job_id, self.state, self.message))


class DaskJobs(Launcher):
    """Jobs on a Dask cluster: the cohort's local engine service, or any scheduler (module
    docstring).

    Parameters
    ----------
    jobs_root : the jobs folder.
    cohort_root : the cohort whose local engine service runs the jobs (started on first use).
    scheduler : a scheduler address or scheduler file instead of the service.
    service_options : options of the service when this launcher starts it
        (:func:`cortexgraph.execution.service.ensure_service`: ``gpus``, ``cpus``,
        ``idle_timeout_s``, ``owner_pid``). ``started_engine`` tells whether it did.
    """

    backend = "local"

    def __init__(
        self,
        jobs_root: str | os.PathLike,
        cohort_root: str | os.PathLike | None = None,
        scheduler: str | None = None,
        service_options: Mapping | None = None,
    ) -> None:
        super().__init__(jobs_root)
        if cohort_root is None and scheduler is None:
            raise ParameterError("the local back end needs the cohort folder or a scheduler")
        self.cohort_root = None if cohort_root is None else Path(cohort_root)
        self.scheduler = scheduler
        self.service_options = dict(service_options or {})
        self.started_engine = False
        self._client: Client | None = None
        self._client_lock = threading.RLock()

    def client(self, start: bool = True):
        """The Dask client (the service is started when ``start`` and none runs); None when the
        engine cannot be reached and ``start`` is False. A client whose engine has gone (idle
        timeout, ``engine stop``) is replaced. Thread-safe (the web app calls it from several)."""
        with self._client_lock:
            return self._connect(start)

    def _connect(self, start: bool):
        from cortexgraph.execution import service

        if self._client is not None:
            if self._client.status == "running":
                return self._client
            self.close()
        service._require_distributed()
        from distributed import Client

        if self.scheduler is not None:
            try:
                if Path(self.scheduler).is_file():
                    self._client = Client(scheduler_file=self.scheduler, timeout="10s")
                else:
                    self._client = Client(self.scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                if start:
                    raise CortexgraphError(
                        f"cannot reach the Dask scheduler {self.scheduler} ({exc})",
                        fix="start it, or submit to the local engine without --scheduler",
                    ) from None
                return None
        else:
            assert self.cohort_root is not None  # __init__ refuses neither cohort nor scheduler
            if start:
                self._client, started = service.ensure_service(
                    self.cohort_root, **self.service_options
                )
                self.started_engine = self.started_engine or started
            else:
                self._client = service.service_client(self.cohort_root)
        return self._client

    def close(self) -> None:
        """Close the client (the engine and its jobs keep running)."""
        with self._client_lock:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None

    def largest_cpus(self, gpus: int = 0) -> int:
        """The most CPU cores one worker of the engine offers together with ``gpus`` GPUs (the
        engine is started when none runs); 0 when no worker has that many GPUs."""
        workers = self.client(start=True).scheduler_info(n_workers=-1).get("workers", {})
        offers = [
            int(w.get("resources", {}).get("CPU", 0))
            for w in workers.values()
            if w.get("resources", {}).get("GPU", 0) >= gpus
        ]
        return max(offers, default=0)

    def _resources(self, spec: dict) -> dict:
        resources = {"CPU": int(spec["cpus"])}
        if int(spec["gpus"]) > 0:
            resources["GPU"] = int(spec["gpus"])
        return resources

    def _submit(self, folder: Path, job: dict, upstream: list[dict]) -> str:
        client = self.client(start=True)
        spec = job["spec"]
        needed = self._resources(spec)
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        if not any(
            all(w.get("resources", {}).get(k, 0) >= v for k, v in needed.items())
            for w in workers.values()
        ):
            offered = sorted({str(w.get("resources", {})) for w in workers.values()}) or ["none"]
            raise ResourceError(
                f"no worker of the engine offers {needed} (workers offer: {', '.join(offered)})",
                fix="ask for fewer CPUs/GPUs, start the engine on a machine with GPUs "
                "(`cortexgraph engine start --gpus N`), or submit with --backend slurm",
            )
        futures = []
        for record in upstream:
            result = read_result(self.jobs_root / record["id"])
            if result is not None:
                if result["state"] != "done":
                    raise ParameterError(
                        f"job {record['id']} ended {result['state']}; a job waiting for it "
                        "would never run",
                        fix="resubmit that job first",
                    )
                continue  # finished: nothing to wait for
            try:
                futures.append(client.get_dataset(record["id"]))
            except KeyError:
                raise ParameterError(
                    f"the engine no longer knows job {record['id']} and it left no result",
                    fix="resubmit that job first",
                ) from None
        key = f"cortexgraph-job-{job['id']}"
        future = client.submit(
            _dask_job, str(folder), *futures, key=key, pure=False, resources=needed
        )
        client.publish_dataset(future, name=job["id"])
        client.publish_dataset(str(folder), name=f"cortexgraph-folder-{job['id']}")
        return key

    def _live_state(self, folder: Path, record: dict) -> tuple[str, str, str | None]:
        client = self.client(start=False)
        if client is None:
            return "failed", "the engine has stopped and the job left no result (lost)", None
        key = record.get("engine_id")
        task = client.run_on_scheduler(_task_states_function(), keys=[key])[key]
        if task is None or task["state"] in ("released", "forgotten"):
            time.sleep(0.2)  # the job may have just written its result
            if read_result(folder) is not None:
                return self.status(record["id"])["state"], "", None
            return "failed", "the engine does not know the job and it left no result (lost)", None
        state = task["state"]
        if state == "processing" and (folder / "log.txt").is_file():
            return "running", "", task["worker"]
        if state in ("waiting", "queued", "processing"):
            return "queued", self._waiting_for(record), None
        if state == "no-worker":
            return "queued", "no worker of the engine offers the resources it asks for", None
        if state == "memory":
            return "done", "", None
        blame = task.get("blame")
        if blame and blame != key:
            upstream = blame.removeprefix("cortexgraph-job-")
            result = read_result(self.jobs_root / upstream) or {}
            return (
                "failed",
                f"job {upstream} it waits for ended {result.get('state', 'failed')}",
                None,
            )
        return "failed", task.get("error") or "failed", None

    def _waiting_for(self, record: dict) -> str:
        pending = [j for j in record.get("after", []) if read_result(self.jobs_root / j) is None]
        return f"waiting for {', '.join(pending)}" if pending else ""

    def _cancel(self, folder: Path, status: dict) -> None:
        from distributed import Event

        client = self.client(start=False)
        if client is None:
            self._write_cancelled(folder, "cancelled (the engine had stopped)")
            return
        Event(_cancel_event_name(status["id"]), client=client).set()
        if status["state"] == "queued":
            with contextlib.suppress(KeyError):
                future = client.get_dataset(status["id"])
                client.cancel([future])
            self._write_cancelled(folder, "cancelled before it started")


# --------------------------------------------------------------------------------------------------
# Slurm back end


class SlurmJobs(Launcher):
    """Jobs as Slurm batch jobs (module docstring). ``settings``: site settings
    (:class:`cortexgraph.execution.slurm.SlurmSettings`)."""

    backend = "slurm"

    def __init__(self, jobs_root: str | os.PathLike, settings=None) -> None:
        from cortexgraph.execution.slurm import SlurmSettings

        super().__init__(jobs_root)
        self.settings = settings or SlurmSettings()

    def script(self, folder: Path, job: dict, upstream: list[dict]) -> str:
        """The batch script of a job (written to ``job.sbatch`` by :meth:`submit`)."""
        from cortexgraph.execution.slurm import batch_script

        return batch_script(folder, job, self.settings, [u["engine_id"] for u in upstream])

    def _submit(self, folder: Path, job: dict, upstream: list[dict]) -> str:
        from cortexgraph.execution.slurm import sbatch

        for record in upstream:
            result = read_result(self.jobs_root / record["id"])
            if result is not None and result["state"] != "done":
                raise ParameterError(
                    f"job {record['id']} ended {result['state']}; a job waiting for it would "
                    "never run",
                    fix="resubmit that job first",
                )
        path = folder / "job.sbatch"
        write_text_atomic(path, self.script(folder, job, upstream))
        return sbatch(path)

    def _live_state(self, folder: Path, record: dict) -> tuple[str, str, str | None]:
        from cortexgraph.execution.slurm import STATE_OF, slurm_state

        state, reason = slurm_state(record["engine_id"])
        if state is None:
            time.sleep(0.2)
            if read_result(folder) is not None:
                return self.status(record["id"])["state"], "", None
            return "failed", "Slurm no longer knows the job and it left no result (lost)", None
        mapped = STATE_OF.get(state.split()[0].rstrip("+"), "queued")
        message = f"Slurm: {state}" + (f" ({reason})" if reason and reason != "None" else "")
        if mapped in ("queued", "cancelled") and "Dependency" in reason and "Never" in reason:
            return "failed", "a job it waits for did not end done (Slurm cancelled it)", None
        return mapped, message, None

    def _cancel(self, folder: Path, status: dict) -> None:
        from cortexgraph.execution.slurm import scancel

        scancel(status["engine_id"])
        if status["state"] == "queued":
            self._write_cancelled(folder, "cancelled before it started")


def jobs_folder(cohort_root: str | os.PathLike) -> Path:
    """``<cohort>/derivatives/cortexgraph/jobs``: the jobs of a cohort."""
    from cortexgraph.data.manifest import DERIVATIVES

    return Path(cohort_root) / DERIVATIVES / "jobs"


def cohort_launcher(cohort_root: str | os.PathLike, **service_options) -> DaskJobs:
    """The launcher of the cohort's jobs folder on the cohort's local engine (the ``local`` back
    end; the engine is started on first submit with ``service_options``, see :class:`DaskJobs`).
    What ``cortexgraph lsm ... --background`` and the web app use."""
    launcher = open_launcher(jobs_folder(cohort_root), backend="local", cohort_root=cohort_root)
    assert isinstance(launcher, DaskJobs)  # the local back end of a cohort
    launcher.service_options = dict(service_options)
    return launcher


def open_launcher(
    jobs_root: str | os.PathLike,
    *,
    backend: str = "local",
    cohort_root: str | os.PathLike | None = None,
    scheduler: str | None = None,
    config: str | os.PathLike | None = None,
) -> Launcher:
    """The launcher of a jobs folder.

    Parameters
    ----------
    backend : ``local`` (Dask: the cohort's local engine service, or ``scheduler``) or ``slurm``.
    cohort_root : the cohort (local back end: whose engine service runs the jobs).
    scheduler : a Dask scheduler address or file (local back end).
    config : engine configuration file (Slurm back end: its ``[jobs.slurm]`` table).
    """
    if backend not in ("local", "slurm"):
        raise ParameterError(f"unknown back end {backend!r}", fix="use local or slurm")
    from cortexgraph.execution.slurm import SlurmSettings

    peers: dict[str, Launcher] = {"slurm": SlurmJobs(jobs_root, SlurmSettings.from_file(config))}
    if cohort_root is not None or scheduler is not None:
        peers["local"] = DaskJobs(jobs_root, cohort_root=cohort_root, scheduler=scheduler)
    if backend not in peers:
        raise ParameterError("the local back end needs the cohort folder (--root) or --scheduler")
    for launcher in peers.values():
        launcher.peers = peers
    return peers[backend]
