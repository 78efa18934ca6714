"""Jobs: the job runner (retries, no retry for bad input, time limit) and the local back end on the
cohort's Dask engine service (state from the engine, dependencies, cancellation, resources)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cortexgraph.errors import CortexgraphError, ParameterError, ResourceError
from cortexgraph.execution.launcher import JobSpec, Launcher, new_job_id, open_launcher
from cortexgraph.execution.runjob import ProgressWriter, progress_text, run_job, write_progress

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _job_environment(monkeypatch):
    """Jobs run `python -m cortexgraph.cli.main` from this checkout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def _job(folder: Path, argv, **spec) -> Path:
    job_dir = folder / new_job_id("t")
    job_dir.mkdir(parents=True)
    full = JobSpec("t", argv, **spec).validated().as_dict()
    (job_dir / "job.json").write_text(json.dumps({"id": job_dir.name, "spec": full}))
    return job_dir


def test_a_failed_run_is_retried_but_bad_input_is_not(tmp_path, tiny_cohort):
    # `status` exits 1 while stages are missing: a failure a rerun might not repeat -> retried
    retried = run_job(_job(tmp_path, ["status", "--root", str(tiny_cohort)], retries=2))
    assert retried["state"] == "failed" and retried["exit_code"] == 1
    assert [a["exit_code"] for a in retried["attempts"]] == [1, 1, 1]
    # exit status 2 (no cohort there): a rerun cannot fix it
    bad = _job(tmp_path, ["status", "--root", str(tmp_path / "nowhere")], retries=2)
    result = run_job(bad)
    assert result["exit_code"] == 2 and len(result["attempts"]) == 1
    assert "not retried" in result["message"]
    assert json.loads((bad / "result.json").read_text())["state"] == "failed"
    log = (bad / "log.txt").read_text()
    assert "attempt 1/3" in log and "cohort.toml" in log
    job_dir = _job(tmp_path, ["--version"])
    done = run_job(job_dir)
    assert done["state"] == "done" and done["exit_code"] == 0
    write_progress("models", 2, 5, job_dir=job_dir)
    write_progress("tiles", 10, 10, job_dir=job_dir)
    status = Launcher(tmp_path).status(job_dir.name)
    assert status["state"] == "done" and status["progress"] == {"models": [2, 5], "tiles": [10, 10]}


def test_progress_writer_records_progress_in_the_job_folder_only(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CORTEXGRAPH_JOB_DIR", raising=False)
    ProgressWriter()("train", 1, 10)  # outside a job: nothing written, nothing printed
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("CORTEXGRAPH_JOB_DIR", str(tmp_path))
    writer = ProgressWriter(min_interval_s=3600)
    writer("plan", 3, 3)
    writer("train", 1, 10)  # within the interval: skipped
    writer("train", 10, 10)  # a stage that completes is always written
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress == {"plan": [3, 3], "train": [10, 10]}
    assert progress_text(progress) == "plan 3/3, train 10/10"
    assert capsys.readouterr().out.count("\n") == 2


def test_a_job_past_its_time_limit_is_stopped_and_not_retried(tmp_path):
    job_dir = _job(tmp_path, ["synth", str(tmp_path / "phantom"), "--preset", "tiny"],
                   time_limit_min=3 / 60, retries=1)  # fmt: skip
    start = time.monotonic()
    result = run_job(job_dir, grace_s=10)
    assert time.monotonic() - start < 30
    assert result["state"] == "failed" and "time limit" in result["message"]
    assert len(result["attempts"]) == 1 and result["exit_code"] != 0


def test_job_specs_and_ids_are_checked(tmp_path):
    with pytest.raises(ParameterError):
        JobSpec("x", []).validated()
    with pytest.raises(ParameterError):
        JobSpec("x", ["--version"], gpus=-1).validated()
    with pytest.raises(ParameterError):
        JobSpec("x", ["--version"], time_limit_min=0).validated()
    launcher = Launcher(tmp_path)
    for bad in ("../x", "/etc", "a/b"):
        with pytest.raises(CortexgraphError):
            launcher.status(bad)
    assert new_job_id("train hOc1/../x").count("/") == 0


# --------------------------------------------------------------------------------------------------
# the local back end


@pytest.fixture(scope="module")
def local_jobs(tmp_path_factory):
    """A launcher on a cohort folder's local engine service (2 cores, no GPU), stopped at the end."""
    pytest.importorskip("distributed", reason="the [cluster] extra is not installed")
    from cortexgraph.execution.service import start_service, stop_service

    cohort = tmp_path_factory.mktemp("jobs") / "cohort"
    cohort.mkdir()
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), old])
    try:
        start_service(cohort, gpus=0, cpus=2, idle_timeout_s=900).close()
    finally:
        os.environ["PYTHONPATH"] = old
    launcher = open_launcher(cohort / "jobs", backend="local", cohort_root=cohort)
    try:
        yield launcher
    finally:
        launcher.close()
        stop_service(cohort)


def _wait(launcher, job_id, states, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = launcher.status(job_id)
        if status["state"] in states:
            return status
        time.sleep(0.3)
    raise AssertionError(f"{job_id} still {launcher.status(job_id)['state']}")


def test_local_jobs_run_after_the_jobs_they_wait_for(local_jobs):
    first = local_jobs.submit(JobSpec("first", ["--version"]))
    second = local_jobs.submit(JobSpec("second", ["--version"], after=(first,)))
    assert local_jobs.follow(second, write=lambda text: None, timeout_s=120)["state"] == "done"
    a, b = local_jobs.status(first), local_jobs.status(second)
    assert a["state"] == "done" and a["where"]
    assert b["attempts"][0]["start_unix"] >= a["attempts"][0]["end_unix"]
    assert "cortexgraph 0.1.0" in (local_jobs.jobs_root / second / "log.txt").read_text()
    assert {s["id"] for s in local_jobs.list()} >= {first, second}


def test_a_job_waiting_for_a_failed_job_fails_without_running(local_jobs, tmp_path):
    bad = local_jobs.submit(JobSpec("bad", ["status", "--root", str(tmp_path / "nowhere")]))
    waiting = local_jobs.submit(JobSpec("waiting", ["--version"], after=(bad,)))
    status = _wait(local_jobs, waiting, ("failed", "done"))
    assert status["state"] == "failed" and bad in status["message"]
    assert not (local_jobs.jobs_root / waiting / "log.txt").exists()  # it never started
    assert local_jobs.status(bad)["exit_code"] == 2
    with pytest.raises(ParameterError, match="ended failed"):
        local_jobs.submit(JobSpec("late", ["--version"], after=(bad,)))


def test_cancelling_stops_a_running_job_and_the_jobs_waiting_for_it(local_jobs, tmp_path):
    out = tmp_path / "phantom"
    long = local_jobs.submit(JobSpec("long", ["synth", str(out), "--preset", "tiny"]))
    after = local_jobs.submit(JobSpec("after", ["--version"], after=(long,)))
    running = _wait(local_jobs, long, ("running", "done", "failed"))
    assert running["state"] == "running" and running["where"]
    assert local_jobs.status(after)["state"] == "queued"
    time.sleep(2.0)
    status = local_jobs.cancel(long, timeout_s=60)
    assert status["state"] == "cancelled"
    assert _wait(local_jobs, after, ("failed", "cancelled", "done"))["state"] == "failed"
    # nothing half-written is left: interrupted atomic writes remove their temporary files
    leftovers = [p for p in out.rglob(".*") if p.is_file()] if out.exists() else []
    assert leftovers == []


def test_a_job_the_engine_cannot_place_is_refused(local_jobs):
    with pytest.raises(ResourceError, match="GPU"):
        local_jobs.submit(JobSpec("gpu", ["--version"], gpus=1))
    with pytest.raises(ResourceError):
        local_jobs.submit(JobSpec("wide", ["--version"], cpus=64))
    assert not [s for s in local_jobs.list() if s["name"] in ("gpu", "wide")]


def test_the_jobs_and_engine_commands(copy_tiny):
    pytest.importorskip("distributed", reason="the [cluster] extra is not installed")
    from typer.testing import CliRunner

    from cortexgraph.cli.main import app

    root = str(copy_tiny())
    runner = CliRunner()
    try:
        submitted = runner.invoke(
            app, ["jobs", "submit", "--root", root, "--name", "version", "--cpus", "1", "--",
                  "--version"],
        )  # fmt: skip
        assert submitted.exit_code == 0, submitted.output
        job_id = submitted.stdout.strip().splitlines()[0]
        followed = runner.invoke(
            app, ["jobs", "follow", job_id, "--root", root, "--timeout", "120"]
        )
        assert followed.exit_code == 0, followed.output
        assert "cortexgraph 0.1.0" in followed.stdout
        listed = runner.invoke(app, ["jobs", "list", "--root", root, "--json"])
        jobs = json.loads(listed.stdout)
        assert [j["id"] for j in jobs] == [job_id] and jobs[0]["state"] == "done"
        engine = runner.invoke(app, ["engine", "status", "--root", root])
        assert engine.exit_code == 0 and "CPU" in engine.output
        unknown = runner.invoke(app, ["jobs", "status", "../../etc", "--root", root])
        assert unknown.exit_code == 2
    finally:
        stopped = runner.invoke(app, ["engine", "stop", "--root", root])
    assert "stopped" in stopped.output
    assert runner.invoke(app, ["engine", "status", "--root", root]).exit_code == 1
