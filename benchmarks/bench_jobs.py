"""Benchmark of job start-up: the engine's launcher against a plain detached process, and the web app's
job endpoint.

* **detached process**: ``cortexgraph --version`` started as the LSM background jobs used to be (a
  ``subprocess.Popen`` in a session of its own, output to a log file): time until the command
  runs (Popen returned) and until it has ended;
* **launcher, cold**: the same command submitted with
  :func:`cortexgraph.execution.launcher.cohort_launcher` to a cohort without a running engine (the
  submit starts it): time of the submit, until the job runs (``started.json``) and until its
  ``result.json`` says done;
* **launcher, warm**: the same with the engine running, ``--repeats`` times (median);
* **web POST** (with ``--cohort``, a tiny phantom, e.g. ``cortexgraph synth /tmp/tiny --preset tiny``):
  ``POST /api/brains/B01/jobs`` of an interval of hOc1 as the page sends it, through the app in this
  process (FastAPI TestClient); time of the request, until ``GET .../jobs/{id}`` says ``running``
  (polled every 50 ms), and until the job reports its training progress (polled every 250 ms); first with no engine running (the POST starts
  it), then with the engine warm. The job is cancelled after each measurement.

    .venv/bin/python benchmarks/bench_jobs.py --repeats 5 --cohort /tmp/tiny
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wait(predicate, timeout_s: float = 300.0, poll_s: float = 0.02) -> float:
    """Seconds (perf counter) at which ``predicate`` first held."""
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("timed out")
        time.sleep(poll_s)
    return time.perf_counter()


def detached(folder: Path) -> tuple[float, float]:
    """(to running, to done) of a detached ``cortexgraph --version``, seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(folder / "log.txt", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cortexgraph.cli.main", "--version"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    running = time.perf_counter()
    process.wait()
    return running - t0, time.perf_counter() - t0


def launched(launcher) -> tuple[float, float, float]:
    """(submit, to running, to done) of ``cortexgraph --version`` as a launcher job, seconds."""
    from cortexgraph.execution.launcher import JobSpec
    from cortexgraph.execution.runjob import read_result

    t0 = time.perf_counter()
    job_id = launcher.submit(JobSpec("version", ["--version"]))
    submitted = time.perf_counter()
    folder = launcher.jobs_root / job_id
    running = wait(lambda: (folder / "started.json").is_file())
    done = wait(lambda: read_result(folder) is not None)
    assert read_result(folder)["state"] == "done", read_result(folder)
    return submitted - t0, running - t0, done - t0


def web_post(client) -> tuple[float, float, float, str]:
    """(request, to running, to training progress) of a job started as the page does; job id."""
    t0 = time.perf_counter()
    response = client.post("/api/brains/B01/jobs", json={"area": "hOc1", "sections": [602, 842]},
                           headers={"X-Requested-With": "cortexgraph"})  # fmt: skip
    answered = time.perf_counter()
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def state() -> dict:
        return client.get(f"/api/brains/B01/jobs/{job_id}").json()

    running = wait(lambda: state()["state"] == "running", poll_s=0.05)
    # then as often as the page asks (every second), a little more often for the timing
    training = wait(lambda: "train" in state()["progress"], poll_s=0.25)
    return answered - t0, running - t0, training - t0, job_id


def ms(values) -> str:
    return f"{1000 * statistics.median(values):8.0f}"


def launcher_rows(work: Path, repeats: int) -> None:
    """The detached process against the launcher (cold and warm engine); prints a table."""
    from cortexgraph.execution.launcher import cohort_launcher
    from cortexgraph.execution.service import stop_service

    rows = []
    runs = [detached(work / f"d{i}") for i in range(repeats)]
    rows.append(("detached process", "-", ms([r[0] for r in runs]), ms([r[1] for r in runs])))
    cohort = work / "cohort"
    cohort.mkdir()
    launcher = cohort_launcher(cohort, gpus=0, cpus=1, idle_timeout_s=600)
    cold = launched(launcher)
    rows.append(("launcher, engine cold", *(ms([v]) for v in cold)))
    warm = [launched(launcher) for _ in range(repeats)]
    rows.append(("launcher, engine warm", *(ms([r[i] for r in warm]) for i in range(3))))
    launcher.close()
    t = time.perf_counter()
    stop_service(cohort)
    stop_s = time.perf_counter() - t
    print(f"\n`cortexgraph --version` as a job, median of {repeats} (cold: once), ms")
    print(f"{'':24} {'submit':>8} {'running':>8} {'done':>8}")
    for row in rows:
        print(f"{row[0]:24} {row[1]:>8} {row[2]:>8} {row[3]:>8}")
    print(f"engine stop (SIGTERM, no jobs): {1000 * stop_s:.0f} ms")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cohort", type=Path, default=None, help="a tiny phantom cohort")
    parser.add_argument(
        "--web-only",
        action="store_true",
        help="only the web POST (runs on an older cortexgraph too, for comparison)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()}")
    try:
        if not args.web_only:
            launcher_rows(work, args.repeats)
        if args.cohort is not None:
            from fastapi.testclient import TestClient

            from cortexgraph.web.app import create_app
            from cortexgraph.web.lsm_adapter import cancel_job
            from cortexgraph.web.state import WebSettings

            root = work / "tiny"
            shutil.copytree(args.cohort, root, ignore=shutil.ignore_patterns("derivatives"))
            defaults = {"arch": "hr", "preset": "auto", "iterations": 100000, "seed": 0,
                        "max_interval_mm": 6.0}  # fmt: skip
            app = create_app(root, settings=WebSettings(root=root, job_defaults=defaults))
            print("\nweb: POST /api/brains/B01/jobs (hOc1, sections 602-842), ms")
            print(f"{'':24} {'request':>8} {'running':>8} {'training':>8}")
            with TestClient(app, base_url="http://127.0.0.1") as client:
                from cortexgraph.data.manifest import find_brain

                brain = find_brain("B01", root)
                for label in ("engine cold", "engine warm", "engine warm"):
                    request, running, training, job_id = web_post(client)
                    print(f"{label:24} {ms([request])} {ms([running])} {ms([training])}")
                    cancel_job(brain, job_id)
            # leaving the client shut the app down: its engine (and any job) stopped with it
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
