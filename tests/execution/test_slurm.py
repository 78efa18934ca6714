"""The Slurm back ends: generated batch scripts (always), and real jobs through a Slurm cluster when
one answers here (CI starts a single-node one with .ci/slurm-up)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cortexgraph.errors import ParameterError
from cortexgraph.execution.launcher import JobSpec, SlurmJobs
from cortexgraph.execution.slurm import SlurmSettings, batch_script, format_time, slurm_available

ROOT = Path(__file__).resolve().parents[2]


def _job(spec: JobSpec, job_id="20260101-000000-train-abcd"):
    return {"id": job_id, "name": "train", "spec": spec.validated().as_dict()}


def test_batch_script_asks_for_the_resources_and_waits_for_its_upstream(tmp_path):
    settings = SlurmSettings(
        partition="gpu",
        account="lab42",
        setup=("module load cuda/12.4", "source /shared/venv/bin/activate"),
        directives=("--constraint=a100",),
        python="/shared/venv/bin/python",
    )
    spec = JobSpec("train", ["train-gnn", "--root", "/data/cohort", "--name", "gat 3"], gpus=2,
                   cpus=16, memory_gb=64, time_limit_min=70, processes=2)  # fmt: skip
    script = batch_script(tmp_path / "job", _job(spec), settings, after=["101", "102"])
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in (
        "#SBATCH --job-name=cg-train",
        f"#SBATCH --output={(tmp_path / 'job').resolve() / 'log.txt'}",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --mem=65536M",
        "#SBATCH --time=0-01:10:00",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --dependency=afterok:101:102",
        "#SBATCH --kill-on-invalid-dep=yes",
        "#SBATCH --requeue",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab42",
        "#SBATCH --constraint=a100",
    ):
        assert directive in lines, directive
    # every directive comes before the first command (sbatch stops reading them there)
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert all(i < first_command for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    assert lines.index("module load cuda/12.4") < len(lines) - 1
    assert lines[-1] == (
        f"exec /shared/venv/bin/python -m cortexgraph.execution.runjob {(tmp_path / 'job').resolve()}"
    )
    assert "'gat 3'" in script  # the command is quoted in the comment
    if shutil.which("bash"):
        path = tmp_path / "job.sbatch"
        path.write_text(script)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_a_job_without_requests_gets_no_resource_directives(tmp_path):
    script = batch_script(tmp_path, _job(JobSpec("v", ["--version"])), SlurmSettings())
    assert "--gres" not in script and "--time" not in script and "--dependency" not in script
    assert "--mem" not in script and "#SBATCH --cpus-per-task=1" in script


def test_times_and_settings():
    assert format_time(70) == "0-01:10:00"
    assert format_time(0.5) == "0-00:00:30"
    assert format_time(60 * 24 * 2 + 1) == "2-00:01:00"
    settings = SlurmSettings.from_table({"partition": "p", "setup": ["a"], "directives": ["--x"]})
    assert settings.setup == ("a",) and settings.directives == ("--x",)
    with pytest.raises(ParameterError, match="unknown key"):
        SlurmSettings.from_table({"partitions": "p"})
    with pytest.raises(ParameterError, match="list of strings"):
        SlurmSettings.from_table({"setup": "module load x"})


def test_dask_jobqueue_worker_jobs_carry_the_configuration():
    pytest.importorskip("dask_jobqueue", reason="the [cluster] extra is not installed")
    from cortexgraph.execution.slurm import jobqueue_script

    script = jobqueue_script(
        {
            "jobs": 4,
            "cores": 8,
            "memory": "32GB",
            "processes": 2,
            "walltime": "04:00:00",
            "queue": "cpu",
            "job_extra_directives": ["--gres=gpu:1"],
            "job_script_prologue": ["source /shared/venv/bin/activate"],
            "worker_extra_args": ["--resources", "GPU=1"],
        }
    )
    for text in ("#SBATCH -p cpu", "#SBATCH --cpus-per-task=8", "#SBATCH -t 04:00:00",
                 "#SBATCH --gres=gpu:1", "source /shared/venv/bin/activate", "--nworkers 2",
                 "--resources GPU=1"):  # fmt: skip
        assert text in script, text


# --------------------------------------------------------------------------------------------------
# a real Slurm cluster

needs_slurm = pytest.mark.skipif(
    not slurm_available(), reason="no Slurm cluster answers here (CI starts one with .ci/slurm-up)"
)


@pytest.fixture
def slurm_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return SlurmJobs(tmp_path / "jobs")


@needs_slurm
def test_slurm_runs_a_job_after_another_and_cancels_those_after_a_failure(slurm_jobs, tmp_path):
    first = slurm_jobs.submit(JobSpec("first", ["--version"], time_limit_min=5))
    second = slurm_jobs.submit(JobSpec("second", ["--version"], after=(first,), time_limit_min=5))
    bad = slurm_jobs.submit(JobSpec("bad", ["status", "--root", str(tmp_path / "none")], retries=2))
    stranded = slurm_jobs.submit(JobSpec("stranded", ["--version"], after=(bad,)))
    for job_id in (first, second, bad, stranded):
        slurm_jobs.follow(job_id, write=lambda text: None, poll_s=0.5, timeout_s=120)
    a, b = slurm_jobs.status(first), slurm_jobs.status(second)
    assert a["state"] == b["state"] == "done"
    assert b["attempts"][0]["start_unix"] >= a["attempts"][0]["end_unix"] - 1.0
    assert "cortexgraph 0.1.0" in (slurm_jobs.jobs_root / first / "log.txt").read_text()
    assert (
        "#SBATCH --dependency=afterok:"
        in (slurm_jobs.jobs_root / second / "job.sbatch").read_text()
    )
    failed = slurm_jobs.status(bad)
    assert failed["state"] == "failed" and failed["exit_code"] == 2
    assert len(failed["attempts"]) == 1  # exit status 2 is not retried
    assert slurm_jobs.status(stranded)["state"] == "failed"


@needs_slurm
def test_slurm_cancels_a_running_job(slurm_jobs, tmp_path):
    job = slurm_jobs.submit(
        JobSpec("long", ["synth", str(tmp_path / "phantom"), "--preset", "tiny"])
    )
    deadline = time.monotonic() + 60
    while slurm_jobs.status(job)["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2.0)
    status = slurm_jobs.cancel(job, timeout_s=60)
    assert status["state"] == "cancelled"
    result = json.loads((slurm_jobs.jobs_root / job / "result.json").read_text())
    assert result["state"] == "cancelled" and result["attempts"]


@needs_slurm
def test_the_engine_starts_dask_workers_as_slurm_jobs(tiny_cohort, tmp_path):
    pytest.importorskip("dask_jobqueue", reason="the [cluster] extra is not installed")
    import sys

    from cortexgraph.execution.engine import EngineOptions, open_engine
    from cortexgraph.execution.graph import CohortSettings, cohort_graph, run_graph

    slurm = {
        "jobs": 1,
        "cores": 1,
        "memory": "2GB",
        "walltime": "00:10:00",
        "python": sys.executable,
        "job_script_prologue": [f"export PYTHONPATH={ROOT} OMP_NUM_THREADS=1"],
        "log_directory": str(tmp_path / "logs"),
    }
    tasks = cohort_graph(tiny_cohort, CohortSettings(until="check"))
    with open_engine(EngineOptions(slurm=slurm), timeout_s=120) as engine:
        assert engine.kind == "slurm" and engine.worker_count() >= 1
        report = run_graph(tasks, engine, tiny_cohort)
        worker_pids = set(engine.client.run(os.getpid).values())
    assert report.ok and set(report.results) == {"check/B01", "check/B03", "check/B07"}
    assert {r["pid"] for r in report.results.values()} <= worker_pids
    assert os.getpid() not in worker_pids
