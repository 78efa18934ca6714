"""Slurm: batch scripts of jobs, the state of a Slurm job, and the settings of the Slurm back ends.

:func:`batch_script` writes the ``sbatch`` script of one job of the launcher
(:mod:`cortexgraph.execution.launcher`): resources as ``#SBATCH`` directives (``--cpus-per-task``,
``--mem``, ``--time``, ``--gres=gpu:N``), the dependencies (``--dependency=afterok:...`` with
``--kill-on-invalid-dep=yes``, so a job whose upstream failed is cancelled rather than left pending),
``--requeue`` (a job on a node that fails is started again), the job's log file, the site's lines
(partition, account, environment set-up) and one command: ``python -m
cortexgraph.execution.runjob JOB_FOLDER``, which runs the job's ``cortexgraph`` command with its
retries and records the outcome (:mod:`cortexgraph.execution.runjob`).

Site settings come from the ``[jobs.slurm]`` table of the engine configuration file::

    [jobs.slurm]
    partition = "gpu"
    account = "lab42"
    qos = "normal"
    setup = ["module load cuda/12.4", "source /gpfs/lab/cortexgraph/.venv/bin/activate"]
    directives = ["--constraint=a100"]      # more #SBATCH lines, as given
    python = "/gpfs/lab/cortexgraph/.venv/bin/python"   # default: the submitting Python

The Dask engine's Slurm workers (``[engine.slurm]``) are dask-jobqueue's business
(:func:`cortexgraph.execution.engine.slurm_cluster_kwargs`); :func:`jobqueue_script` shows the
script it would submit.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexgraph.errors import CortexgraphError, ParameterError

__all__ = [
    "SlurmSettings",
    "batch_script",
    "format_time",
    "slurm_available",
    "sbatch",
    "slurm_state",
    "STATE_OF",
    "jobqueue_script",
]

#: Slurm job states -> launcher states.
STATE_OF = {
    "PENDING": "queued",
    "REQUEUED": "queued",
    "REQUEUE_FED": "queued",
    "REQUEUE_HOLD": "queued",
    "RESV_DEL_HOLD": "queued",
    "SUSPENDED": "queued",
    "PREEMPTED": "queued",
    "CONFIGURING": "running",
    "RUNNING": "running",
    "COMPLETING": "running",
    "STAGE_OUT": "running",
    "SIGNALING": "running",
    "RESIZING": "running",
    "COMPLETED": "done",
    "CANCELLED": "cancelled",
    "FAILED": "failed",
    "TIMEOUT": "failed",
    "OUT_OF_MEMORY": "failed",
    "NODE_FAIL": "failed",
    "BOOT_FAIL": "failed",
    "DEADLINE": "failed",
}


@dataclass(frozen=True)
class SlurmSettings:
    """Site settings of Slurm jobs (module docstring)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    setup: tuple[str, ...] = ()
    directives: tuple[str, ...] = ()
    python: str = field(default_factory=lambda: sys.executable)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], file: str | None = None) -> SlurmSettings:
        known = {"partition", "account", "qos", "setup", "directives", "python"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ParameterError(
                f"unknown key(s) in [jobs.slurm]: {', '.join(unknown)}",
                file=file,
                fix=f"use only {', '.join(sorted(known))}",
            )
        values = dict(table)
        for key in ("setup", "directives"):
            if key in values:
                if not isinstance(values[key], list) or not all(
                    isinstance(v, str) for v in values[key]
                ):
                    raise ParameterError(f"[jobs.slurm] {key} must be a list of strings", file=file)
                values[key] = tuple(values[key])
        for key in ("partition", "account", "qos", "python"):
            if key in values and not isinstance(values[key], str):
                raise ParameterError(f"[jobs.slurm] {key} must be a string", file=file)
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | os.PathLike | None) -> SlurmSettings:
        """The ``[jobs.slurm]`` table of a TOML file (defaults without a file or a table)."""
        if path is None:
            return cls()
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ParameterError(f"cannot read the configuration ({exc})", file=str(path)) from None
        table = data.get("jobs", {}).get("slurm", {})
        return cls.from_table(table, str(path))


def format_time(minutes: float) -> str:
    """Minutes as Slurm's ``D-HH:MM:SS`` (rounded up to the second)."""
    seconds = int(math.ceil(float(minutes) * 60.0))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    mins, secs = divmod(seconds, 60)
    return f"{days}-{hours:02d}:{mins:02d}:{secs:02d}"


def batch_script(
    job_dir: Path,
    job: Mapping[str, Any],
    settings: SlurmSettings,
    after: Sequence[str] = (),
) -> str:
    """The ``sbatch`` script of a job.

    Parameters
    ----------
    job_dir : the job's folder (log, result, the job's description ``job.json``).
    job : the job's description: ``id``, ``name``, ``spec`` (:class:`~.launcher.JobSpec` as a dict:
        ``cpus``, ``gpus``, ``memory_gb``, ``time_limit_min``, ``cwd``).
    settings : site settings.
    after : Slurm job ids that must have completed successfully first.
    """
    spec = job["spec"]
    job_dir = Path(job_dir).resolve()
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=cg-{job['name']}",
        f"#SBATCH --output={job_dir / 'log.txt'}",
        "#SBATCH --open-mode=append",
        f"#SBATCH --chdir={spec.get('cwd') or job_dir}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={int(spec.get('cpus', 1))}",
    ]
    if spec.get("memory_gb"):
        lines.append(f"#SBATCH --mem={int(math.ceil(float(spec['memory_gb']) * 1024))}M")
    if spec.get("time_limit_min"):
        lines.append(f"#SBATCH --time={format_time(spec['time_limit_min'])}")
    if int(spec.get("gpus", 0)) > 0:
        lines.append(f"#SBATCH --gres=gpu:{int(spec['gpus'])}")
    if after:
        lines.append(f"#SBATCH --dependency=afterok:{':'.join(str(a) for a in after)}")
        lines.append("#SBATCH --kill-on-invalid-dep=yes")
    lines.append("#SBATCH --requeue")
    for key in ("partition", "account", "qos"):
        value = getattr(settings, key)
        if value:
            lines.append(f"#SBATCH --{key}={value}")
    lines += [f"#SBATCH {d}" for d in settings.directives]
    lines += [
        "",
        f"# cortexgraph job {job['id']}: cortexgraph {shlex.join(spec['argv'])}",
        "set -eo pipefail",
        *settings.setup,
        f"export CORTEXGRAPH_JOB_DIR={shlex.quote(str(job_dir))}",
        f"exec {shlex.quote(settings.python)} -m cortexgraph.execution.runjob "
        f"{shlex.quote(str(job_dir))}",
        "",
    ]
    return "\n".join(lines)


def slurm_available() -> bool:
    """True when ``sbatch`` and ``squeue`` are on the PATH and the controller answers."""
    if not (shutil.which("sbatch") and shutil.which("squeue")):
        return False
    try:
        done = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _run(command: list[str], timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise CortexgraphError(
            f"{command[0]} not found: Slurm is not installed here",
            fix="submit from a login node of the cluster, or use --backend local",
        ) from None
    except subprocess.TimeoutExpired:
        raise CortexgraphError(
            f"{command[0]} did not answer within {timeout_s:.0f} s",
            fix="check that the Slurm controller runs (sinfo)",
        ) from None


def sbatch(script_path: Path) -> str:
    """Submit a batch script; returns the Slurm job id."""
    done = _run(["sbatch", "--parsable", str(script_path)])
    if done.returncode != 0:
        raise CortexgraphError(
            f"sbatch refused the job: {done.stderr.strip() or done.stdout.strip()}",
            file=str(script_path),
            fix="check the [jobs.slurm] settings (partition, account) and the resources asked for",
        )
    return done.stdout.strip().split(";")[0]


def slurm_state(slurm_id: str) -> tuple[str | None, str]:
    """``(Slurm state, reason)`` of a job from ``squeue``, else from ``sacct`` (accounting); None
    when Slurm no longer knows the job."""
    done = _run(["squeue", "-h", "--states=all", "-j", str(slurm_id), "-o", "%T|%r"])
    if done.returncode == 0 and done.stdout.strip():
        state, _, reason = done.stdout.strip().splitlines()[0].partition("|")
        return state.strip(), reason.strip()
    if shutil.which("sacct"):
        done = _run(["sacct", "-n", "-X", "-P", "-j", str(slurm_id), "-o", "State"])
        if done.returncode == 0 and done.stdout.strip():
            state = done.stdout.strip().splitlines()[0].split()[0]
            return state.strip(), ""
    return None, ""


def scancel(slurm_id: str) -> None:
    """Cancel a Slurm job (its processes get SIGTERM, then SIGKILL after Slurm's KillWait)."""
    done = _run(["scancel", str(slurm_id)])
    if done.returncode != 0:
        raise CortexgraphError(
            f"scancel failed: {done.stderr.strip()}", fix="check the job id with squeue"
        )


def jobqueue_script(settings: Mapping[str, Any]) -> str:
    """The batch script dask-jobqueue submits for one Dask worker job of ``[engine.slurm]``."""
    from dask_jobqueue import SLURMCluster

    from cortexgraph.execution.engine import slurm_cluster_kwargs

    kwargs, _ = slurm_cluster_kwargs(settings)
    cluster = SLURMCluster(**kwargs)
    try:
        return cluster.job_script()
    finally:
        cluster.close()
