"""Background jobs: start a training job, list it, cancel it; states of the running side; job ids that
are paths, forged pids and output folders outside the brain (refused, never signalled, never swept)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm.jobs import (
    JOB_ENV,
    JobContext,
    cancel_job,
    follow_job,
    job_status,
    jobs_dir,
    list_jobs,
    new_job_id,
    pid_alive,
    process_identity,
    progress_text,
    read_state,
    start_job,
    sweep_temporary_files,
)


def wait_for(predicate, timeout_s: float, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    return predicate()


@pytest.mark.slow
def test_start_list_and_cancel_a_training_job(cohort):
    brain_out = cohort / "derivatives" / "cortexgraph" / "B01"
    run_out = brain_out / "lsm" / "lsm-hr-s0722-s0842"
    root = jobs_dir(brain_out)
    argv = ["lsm", "train", str(cohort / "B01"), "--area", "hOc1", "--sections", "722,842"]
    argv += ["--arch", "hr", "--iterations", "100000", "--allow-long-intervals"]
    job_id = start_job(
        root, argv, name="train-hOc1", outputs=[run_out], env={"OMP_NUM_THREADS": "1"}
    )
    assert job_status(root, job_id)["state"] in ("queued", "running")

    def training() -> bool:
        status = job_status(root, job_id)
        assert status["state"] in ("queued", "running"), status
        return "train" in status.get("progress", {})

    assert wait_for(training, 180.0), "the job did not start training"
    listed = list_jobs(root)
    assert [j["id"] for j in listed] == [job_id]
    assert listed[0]["state"] == "running" and listed[0]["alive"]
    done, total = listed[0]["progress"]["train"]
    assert total == 100000 and 1 <= done < total
    assert progress_text(listed[0]["progress"]).startswith("plan 3/3, train ")
    pid = listed[0]["pid"]

    status = cancel_job(root, job_id, timeout_s=60.0)
    assert status["state"] == "cancelled" and not status["alive"] and not pid_alive(pid)
    assert status["message"] == "cancelled"  # recorded by the job itself (clean shutdown)
    # no model, no record of it, no half-written file anywhere under the brain's outputs
    assert not (run_out / "hOc1" / "models" / "s0722-s0842" / "model.pt").exists()
    assert not (
        brain_out / "records" / "lsm-train@lsm-hr-s0722-s0842@hOc1@s0722-s0842.json"
    ).exists()
    leftovers = [p for p in brain_out.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []
    assert not list((brain_out / "locks").glob("*.lock"))  # the stage released its lock
    log = (root / job_id / "log.txt").read_text()
    assert "job cancelled" in log
    # cancelling again is harmless; an unknown job is a clear error
    assert cancel_job(root, job_id)["state"] == "cancelled"
    with pytest.raises(CortexgraphError, match="no job"):
        job_status(root, "nope")


def _job_folder(tmp_path, name="x"):
    folder = tmp_path / new_job_id(name)
    folder.mkdir()
    (folder / "job.json").write_text(json.dumps({"id": folder.name, "outputs": []}))
    return folder


def test_job_context_records_done_failed_and_cancelled(tmp_path):
    folder = _job_folder(tmp_path)
    with JobContext(folder, min_interval_s=0.0) as job:
        assert read_state(folder)["state"] == "running"
        assert read_state(folder)["pid"] == os.getpid()
        job.progress("train", 5, 10)
        assert read_state(folder)["progress"] == {"train": [5, 10]}
    assert read_state(folder)["state"] == "done"

    folder = _job_folder(tmp_path)
    with pytest.raises(RuntimeError), JobContext(folder):
        raise RuntimeError("boom")
    state = read_state(folder)
    assert state["state"] == "failed" and "boom" in state["message"]

    folder = _job_folder(tmp_path)
    previous = signal.getsignal(signal.SIGTERM)
    with JobContext(folder) as job:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1.0)  # the handler raises before this returns
        pytest.fail("SIGTERM did not interrupt the job")
    assert job.cancelled and read_state(folder)["state"] == "cancelled"
    assert signal.getsignal(signal.SIGTERM) == previous


def test_dead_job_is_reported_failed(tmp_path):
    folder = _job_folder(tmp_path)
    (folder / "state.json").write_text(json.dumps({"state": "running"}))
    identity = process_identity(os.getpid()) | {"pid": 999999999}  # no such process
    (folder / "process.json").write_text(json.dumps(identity))
    status = job_status(tmp_path, folder.name)
    assert status["state"] == "failed" and "without reporting" in status["message"]
    assert not status["alive"]


def test_sweep_temporary_files(tmp_path):
    start = time.time()
    root = tmp_path / "brain"
    (root / "a").mkdir(parents=True)
    keep = root / "a" / "model.pt"
    keep.write_bytes(b"x")
    stale = root / "a" / ".model.pt.k2j3.pt"
    stale.write_bytes(b"partial")
    lock = root / "a" / ".lock"
    lock.write_text("")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".precious").write_text("keep me")
    (root / "a" / "link").symlink_to(outside, target_is_directory=True)
    (root / "a" / ".linked-file").symlink_to(outside / ".precious")
    removed = sweep_temporary_files(
        [root / "a", root / "missing", outside, root / ".." / "outside"], start, root=root
    )
    assert removed == [stale] and keep.exists() and lock.exists() and not stale.exists()
    assert (outside / ".precious").read_text() == "keep me"
    assert (root / "a" / ".linked-file").is_symlink()


# --------------------------------------------------------------------------------------------------
# safety: job ids, processes, sweeps


def _sleeper(env_job: str | None = None) -> subprocess.Popen:
    """A process that is not a cortexgraph job (or pretends to be ``env_job``'s)."""
    env = dict(os.environ)
    env.pop(JOB_ENV, None)
    if env_job is not None:
        env[JOB_ENV] = env_job
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], env=env, start_new_session=True
    )


def _forged_job(root, job_id: str, pid: int, outputs, **identity) -> None:
    folder = root / job_id
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(
        json.dumps({"id": job_id, "outputs": [str(o) for o in outputs], "created_unix": 0.0})
    )
    (folder / "state.json").write_text(json.dumps({"state": "running"}))
    (folder / "process.json").write_text(json.dumps(process_identity(pid) | identity))


@pytest.fixture
def victim():
    process = _sleeper()
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_job_ids_that_are_paths_are_refused(cohort, victim):
    """``lsm jobs cancel B01 ../../<dir>`` and friends: exit 2, nothing signalled or deleted."""
    brain_out = cohort / "derivatives" / "cortexgraph" / "B01"
    root = jobs_dir(brain_out)
    root.mkdir(parents=True)
    decoy_root = cohort.parent / "decoy-jobs"
    outside = cohort.parent / "precious"
    outside.mkdir()
    precious = outside / ".important.h5.tmp"
    precious.write_text("do not delete")
    # a complete, running-looking job outside the jobs folder, naming a live process
    _forged_job(decoy_root, "evil", victim.pid, [outside])
    (root / "linked").symlink_to(decoy_root / "evil", target_is_directory=True)
    relative = os.path.relpath(decoy_root / "evil", root)
    runner = CliRunner()
    bad_ids = [
        relative,
        str(decoy_root / "evil"),
        "a/b",
        "..",
        ".",
        "-evil",
        " ",
        "linked",
        "x\x00",
    ]
    bad_ids += ["../" * 6 + "etc", "evil/../../../decoy-jobs/evil", "~"]
    for job_id in bad_ids:
        for command in ("cancel", "status", "follow"):
            result = runner.invoke(
                app, ["lsm", "jobs", command, "B01", "--root", str(cohort), job_id]
            )
            assert result.exit_code == 2, (command, job_id, result.output)
            assert "Traceback" not in result.output
        with pytest.raises(CortexgraphError):
            cancel_job(root, job_id, timeout_s=0.1)
        with pytest.raises(CortexgraphError):
            follow_job(root, job_id, timeout_s=0.1)
    assert victim.poll() is None and pid_alive(victim.pid)
    assert precious.read_text() == "do not delete"
    assert list_jobs(root) == []  # the link and the decoy are not jobs of this folder


def test_cancel_signals_only_the_jobs_own_process(cohort, victim):
    brain_out = cohort / "derivatives" / "cortexgraph" / "B01"
    root = jobs_dir(brain_out)
    outside = cohort.parent / "outside"
    outside.mkdir()
    outside_tmp = outside / ".model.pt.abcd.pt"
    outside_tmp.write_text("not ours")
    inside_dir = brain_out / "lsm" / "lsm-ms"
    inside_dir.mkdir(parents=True)
    inside_tmp = inside_dir / ".s0001.h5.abcd.h5"
    inside_tmp.write_text("partial")

    # another process's pid with its true start time (a forged or stale job): not signalled
    _forged_job(root, new_job_id("forged"), victim.pid, [outside, inside_dir])
    # the same pid with another start time (a recycled pid): not signalled
    _forged_job(root, new_job_id("recycled"), victim.pid, [], start_ticks=1)
    # a process on another host or before a reboot: not signalled here
    _forged_job(root, new_job_id("elsewhere"), victim.pid, [], boot_id="another-boot")
    for job in list_jobs(root):
        assert job["state"] == "failed" and not job["alive"], job
        status = cancel_job(root, job["id"], timeout_s=0.1)
        assert status["state"] == "failed"
    assert victim.poll() is None
    remote = new_job_id("remote")
    _forged_job(root, remote, victim.pid, [], host="some-other-host")
    assert job_status(root, remote)["state"] == "failed"  # cannot be checked here: not alive
    assert victim.poll() is None

    # the job's own process (its environment names the job folder): signalled, then swept inside
    # the brain's derivatives folder only
    job_id = new_job_id("own")
    folder = root / job_id
    own = _sleeper(env_job=str(folder.resolve()))
    try:
        time.sleep(0.2)  # let the interpreter start, so its environment is its own
        _forged_job(root, job_id, own.pid, [outside, inside_dir])
        assert job_status(root, job_id)["alive"]
        start = time.monotonic()
        status = cancel_job(root, job_id, timeout_s=10.0)
        # gone long before its 120 s sleep (cancel_job reaps it, so its exit status is lost here)
        own.wait(timeout=10)
        assert time.monotonic() - start < 10.0 and not pid_alive(own.pid)
        assert status["state"] == "cancelled" and not status["alive"]
    finally:
        if own.poll() is None:
            own.kill()
            own.wait()
    assert not inside_tmp.exists() and outside_tmp.read_text() == "not ours"
    assert victim.poll() is None
