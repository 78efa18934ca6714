"""Background LSM jobs on the cohort's local engine: ``lsm train --background`` is a job of the
cohort's jobs folder (listed by ``cortexgraph jobs list`` and ``lsm jobs list``), reports progress,
and is cancelled cleanly (the record says cancelled, finished stages stay whole, nothing
half-written); job ids that are paths, and jobs of other brains or commands, are refused."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.data.manifest import find_brain
from cortexgraph.errors import CortexgraphError
from cortexgraph.execution.launcher import JobSpec, Launcher, jobs_folder, new_job_id
from cortexgraph.lsm.layout import brain_job, brain_jobs, is_brain_job

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _job_environment(monkeypatch):
    """The engine and its jobs run `python -m cortexgraph...` from this checkout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _cli(*argv):
    result = CliRunner().invoke(app, [str(a) for a in argv])
    return result


@pytest.mark.slow
def test_a_background_training_job_runs_on_the_engine_and_is_cancelled_cleanly(cohort):
    pytest.importorskip("distributed", reason="the [cluster] extra is not installed")
    brain_out = cohort / "derivatives" / "cortexgraph" / "B01"
    run_out = brain_out / "lsm" / "lsm-hr-s0722-s0842"
    try:
        started = _cli(
            "lsm", "train", "B01", "--root", cohort, "--area", "hOc1", "--sections", "722,842",
            "--arch", "hr", "--iterations", "100000", "--allow-long-intervals", "--background",
        )  # fmt: skip
        assert started.exit_code == 0, started.output
        job_id = started.stdout.strip().splitlines()[-1]
        folder = jobs_folder(cohort) / job_id
        assert folder.is_dir()  # the cohort's jobs folder: one place for every job
        listed = json.loads(_cli("jobs", "list", "--root", cohort, "--json").stdout)
        assert [j["id"] for j in listed] == [job_id]
        assert listed[0]["state"] in ("queued", "running")

        deadline = time.monotonic() + 180
        while True:  # until it trains (imports and the plan stage take a few seconds)
            mine = json.loads(_cli("lsm", "jobs", "list", "B01", "--root", cohort, "--json").stdout)
            assert [j["id"] for j in mine] == [job_id]
            assert mine[0]["state"] in ("queued", "running"), mine[0]
            if "train" in mine[0]["progress"]:
                break
            assert time.monotonic() < deadline, mine[0]
            time.sleep(0.5)
        assert mine[0]["state"] == "running" and mine[0]["where"] and mine[0]["started_unix"]
        done, total = mine[0]["progress"]["train"]
        assert total == 100000 and 0 <= done < total
        assert mine[0]["progress"]["plan"] == [3, 3]

        cancelled = _cli("jobs", "cancel", job_id, "--root", cohort, "--timeout", "60")
        assert cancelled.exit_code == 0 and "cancelled" in cancelled.output, cancelled.output
        status = json.loads(_cli("lsm", "jobs", "status", "B01", job_id, "--root", cohort).stdout)
        assert status["state"] == "cancelled" and status["message"] == "cancelled"
        result = json.loads((folder / "result.json").read_text())
        assert result["state"] == "cancelled" and result["attempts"][0]["exit_code"] == 143
        assert "job cancelled" in (folder / "log.txt").read_text()
    finally:
        stopped = _cli("engine", "stop", "--root", cohort)
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    # no model, no record of it, no half-written file anywhere under the brain's outputs
    assert not (run_out / "hOc1" / "models" / "s0722-s0842" / "model.pt").exists()
    records = brain_out / "records"
    assert not (records / "lsm-train@lsm-hr-s0722-s0842@hOc1@s0722-s0842.json").exists()
    leftovers = [p for p in brain_out.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []
    assert not list((brain_out / "locks").glob("*.lock"))  # the stage released its lock
    # the stage that finished before the cancel is whole: its record and every output it lists
    finished = [json.loads(p.read_text()) for p in records.glob("lsm-plan@*.json")]
    assert len(finished) == 1
    derivatives = cohort / "derivatives" / "cortexgraph"
    for output in finished[0]["outputs"]:
        path = cohort / output if (cohort / output).exists() else derivatives / output
        assert path.is_file() and path.stat().st_size > 0, output
        if path.suffix == ".json":
            json.loads(path.read_text())  # complete JSON


def _job(root: Path, argv: list[str], state: str = "done") -> str:
    """A finished job of the folder (as the launcher writes it)."""
    job_id = new_job_id("x")
    folder = root / job_id
    folder.mkdir(parents=True)
    spec = JobSpec("x", argv).validated().as_dict()
    (folder / "job.json").write_text(
        json.dumps({"id": job_id, "name": "x", "backend": "local", "spec": spec})
    )
    (folder / "result.json").write_text(json.dumps({"id": job_id, "state": state}))
    return job_id


def test_a_brains_jobs_and_refused_ids(cohort):
    brain = find_brain("B01", cohort)
    root = jobs_folder(cohort)
    assert is_brain_job(["lsm", "train", str(brain.root), "--area", "hOc1"], brain)
    assert is_brain_job(["lsm", "chain", "B01"], brain)
    assert not is_brain_job(["lsm", "train", str(cohort / "B02")], brain)
    assert not is_brain_job(["lsm", "runs", "B01"], brain)
    assert not is_brain_job(["train-gnn", "--root", str(cohort)], brain)
    mine = _job(root, ["lsm", "train", str(brain.root), "--area", "hOc1", "--sections", "722,842"])
    other = _job(root, ["--version"])
    launcher = Launcher(root)
    assert [j["id"] for j in brain_jobs(launcher, brain)] == [mine]
    assert brain_job(launcher, brain, mine)["state"] == "done"
    with pytest.raises(CortexgraphError, match="not an LSM job of brain B01"):
        brain_job(launcher, brain, other)

    # job ids that are paths: exit 2, no traceback, nothing read outside the jobs folder
    decoy = cohort.parent / "decoy-jobs"
    evil = _job(decoy, ["lsm", "train", str(brain.root)], state="running")
    (root / "linked").symlink_to(decoy / evil, target_is_directory=True)
    bad_ids = [os.path.relpath(decoy / evil, root), str(decoy / evil), "a/b", "..", ".",
               "-evil", " ", "linked", "x\x00", "../" * 6 + "etc", "~", other]  # fmt: skip
    for job_id in bad_ids:
        for command in ("cancel", "status", "follow"):
            result = _cli("lsm", "jobs", command, "B01", "--root", cohort, job_id)
            assert result.exit_code == 2, (command, job_id, result.output)
            assert "Traceback" not in result.output
    listed = json.loads(_cli("lsm", "jobs", "list", "B01", "--root", cohort, "--json").stdout)
    assert [j["id"] for j in listed] == [mine]  # the link and the decoy are not jobs here
