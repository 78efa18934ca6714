"""Background jobs: start a training job, list it, cancel it; states of the running side."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm.jobs import (
    JobContext,
    cancel_job,
    job_status,
    jobs_dir,
    list_jobs,
    new_job_id,
    pid_alive,
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
def test_start_list_and_cancel_a_training_job(tiny_cohort, tmp_path):
    out = tmp_path / "derivatives"
    brain_out = out / "B01"
    area_out = brain_out / "lsm" / "hOc1"
    root = jobs_dir(brain_out)
    argv = ["lsm", "train", str(tiny_cohort / "B01"), "--area", "hOc1", "--sections", "722,842"]
    argv += ["--arch", "hr", "--iterations", "100000", "--derivatives", str(out)]
    job_id = start_job(
        root, argv, name="train-hOc1", outputs=[area_out], env={"OMP_NUM_THREADS": "1"}
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
    assert progress_text(listed[0]["progress"]).startswith("train ")
    pid = listed[0]["pid"]

    status = cancel_job(root, job_id, timeout_s=60.0)
    assert status["state"] == "cancelled" and not status["alive"] and not pid_alive(pid)
    assert status["message"] == "cancelled"  # recorded by the job itself (clean shutdown)
    # no model, no half-written file anywhere under the job's outputs
    model_dir = area_out / "lsm-hr" / "s0722-s0842"
    assert not (model_dir / "model.pt").exists()
    leftovers = [p for p in brain_out.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []
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
    (folder / "pid").write_text("999999999\n")  # no such process
    status = job_status(tmp_path, folder.name)
    assert status["state"] == "failed" and "without reporting" in status["message"]


def test_sweep_temporary_files(tmp_path):
    start = time.time()
    (tmp_path / "a").mkdir()
    keep = tmp_path / "a" / "model.pt"
    keep.write_bytes(b"x")
    stale = tmp_path / "a" / ".model.pt.k2j3.pt"
    stale.write_bytes(b"partial")
    lock = tmp_path / "a" / ".lock"
    lock.write_text("")
    removed = sweep_temporary_files([tmp_path / "a", tmp_path / "missing"], start)
    assert removed == [stale] and keep.exists() and lock.exists() and not stale.exists()
