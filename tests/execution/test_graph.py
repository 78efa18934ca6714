"""The cohort task graph: its structure, and runs on a local Dask cluster of 2 workers against a
serial run (same outputs), with a killed worker, with two runs of one stage at once, a second run
(everything reused), and the CLI attached to the cluster by its address."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.execution.engine import Engine, EngineOptions, open_engine
from cortexgraph.execution.graph import (
    STEPS,
    CohortSettings,
    Ref,
    Task,
    cohort_graph,
    run_graph,
)
from tests.execution.conftest import TEST_SETTINGS, assert_same_outputs, records

# --------------------------------------------------------------------------------------------------
# structure


def test_graph_of_a_phantom_demo_orders_every_dependency(tmp_path):
    tasks = cohort_graph(
        tmp_path / "new", CohortSettings(synth_preset="tiny", map3d_areas=("hOc1",))
    )
    keys = [t.key for t in tasks]
    brains = ["B01", "B03", "B07"]
    assert keys[0] == "synth" and "synth-done" in keys
    for b in brains:
        for step in ("synth", "check", "build-graph", "features", "predict", "project", "render"):
            assert f"{step}/{b}" in keys
        assert f"map3d/{b}/hOc1" in keys and f"stats-table/{b}" in keys
    by_key = {t.key: t for t in tasks}
    position = {k: i for i, k in enumerate(keys)}
    for t in tasks:
        for d in t.dependencies():
            assert position[d] < position[t.key]
    # a check reads the whole cohort (cohort.toml lists every brain): on a phantom being made it
    # waits for every brain; the demo failed when B01's check ran while B05 was being written
    for b in brains:
        assert by_key[f"check/{b}"].dependencies() == ("synth-done",)
    # the encoder reads every brain's images: it waits for every check, not for any graph
    assert set(by_key["train-encoder"].dependencies()) == {f"check/{b}" for b in brains}
    assert set(by_key["features/B03"].dependencies()) == {"build-graph/B03", "train-encoder"}
    assert set(by_key["train-gnn"].dependencies()) == {"train-encoder"} | {
        f"features/{b}" for b in brains
    }
    assert by_key["train-gnn"].kwargs["settings"]["transfer"] == "B07"
    assert isinstance(by_key["predict/B01"].kwargs["run"], Ref)
    assert set(by_key["stats-table/B01"].dependencies()) >= {"map3d/B01/hOc1"}
    assert by_key["build-graph/B01"].kwargs["phantom"] is True


def test_until_stops_the_graph_and_unknown_brains_are_refused(tiny_cohort):
    tasks = cohort_graph(tiny_cohort, CohortSettings(until="build-graph", brains=("B03",)))
    assert [t.key for t in tasks] == ["check/B03", "build-graph/B03"]
    assert STEPS.index("build-graph") < STEPS.index("train-encoder")
    # the GNN is trained on the cohort: every brain gets graphs and features, one gets predictions
    keys = [
        t.key for t in cohort_graph(tiny_cohort, CohortSettings(until="predict", brains=("B03",)))
    ]
    assert {f"features/{b}" for b in ("B01", "B03", "B07")} <= set(keys)
    assert [k for k in keys if k.startswith("predict/")] == ["predict/B03"]
    with pytest.raises(ParameterError, match="B99"):
        cohort_graph(tiny_cohort, CohortSettings(brains=("B99",)))
    with pytest.raises(ParameterError, match="unknown step"):
        cohort_graph(tiny_cohort, CohortSettings(until="everything"))
    gpu = cohort_graph(tiny_cohort, CohortSettings(until="train-gnn"), gpu_tasks=True)
    assert {t.key for t in gpu if t.resources} == {"train-encoder", "train-gnn"}


def _fail(x):
    raise ParameterError(f"bad {x}")


def _echo(x, y=None):
    return [x, y]


def test_a_failure_stops_only_what_depends_on_it(tmp_path):
    tasks = [
        Task("a", _echo, {"x": 1}),
        Task("b", _fail, {"x": 2}),
        Task("c", _echo, {"x": 3, "y": Ref("b")}),
        Task("d", _echo, {"x": 4, "y": Ref("a")}),
    ]
    report = run_graph(tasks, Engine(EngineOptions(workers=0)), tmp_path)
    assert report.value("d") == [4, [1, None]]
    assert report.failed["b"][1] == 2 and report.skipped == {"c": "b"}
    with pytest.raises(CortexgraphError, match="task b failed: bad 2") as error:
        report.raise_for_failures()
    assert error.value.exit_code == 2


def _record_once(path):
    """A stage that computes (writes its record, naming this process) only when it has none."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"host": socket.gethostname(), "pid": os.getpid(), "started_unix": time.time()}
        path.write_text(json.dumps(record), encoding="utf-8")
    return path.name


def test_computed_or_reused_is_told_apart_within_one_second(tmp_path):
    # a second run of a stage right after the first, in the same process (a fast stage, a warm
    # cache): its record is within a second of the second run's start but was not written by it
    task = Task("s", _record_once, {"path": str(tmp_path / "derivatives/cortexgraph/B01/records/s.json")},
                records=("B01/records/s.json",))  # fmt: skip
    engine = Engine(EngineOptions(workers=0))
    first = run_graph([task], engine, tmp_path)
    again = run_graph([task], engine, tmp_path)
    assert first.results["s"]["reused"] is False
    assert again.results["s"]["reused"] is True
    assert again.results["s"]["started_unix"] - first.results["s"]["started_unix"] < 1.0
    # a task without records says neither
    assert run_graph([Task("e", _echo, {"x": 1})], engine, tmp_path).results["e"]["reused"] is None


def test_engine_options_from_a_file(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text("[engine]\nworkers = 3\nretries = 1\n[engine.slurm]\njobs = 2\ncores = 8\n")
    options = EngineOptions.from_file(path)
    assert options.workers == 3 and options.retries == 1 and options.kind == "slurm"
    assert dict(options.slurm) == {"jobs": 2, "cores": 8}
    path.write_text("[engine]\nworker = 3\n")
    with pytest.raises(ParameterError, match="unknown key"):
        EngineOptions.from_file(path)
    path.write_text('[engine]\nscheduler = "tcp://x:1"\n[engine.slurm]\njobs = 1\n')
    with pytest.raises(ParameterError, match="not both"):
        EngineOptions.from_file(path)
    assert EngineOptions(workers=0).kind == "serial"
    assert EngineOptions().kind == "local"


def test_a_task_on_a_local_cluster_runs_in_a_worker_process(tmp_path, monkeypatch):
    pytest.importorskip("distributed", reason="the [cluster] extra is not installed")
    # a function every worker can import (the standard library) ...
    tasks = [Task("a", dict, {"x": 1}), Task("b", dict, {"x": 2, "y": Ref("a")})]
    # ... and one only this process can: a module imported from a file that is on no sys.path
    # (as pytest imports this test module)
    source = tmp_path / "only_here_0f3a.py"
    source.write_text("def echo(x):\n    return x\n")
    spec = importlib.util.spec_from_file_location("only_here_0f3a", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "only_here_0f3a", module)
    echo = module.echo

    tasks.append(Task("c", echo, {"x": 3}))
    tasks.append(Task("d", dict, {"x": Ref("c")}))
    with open_engine(EngineOptions(workers=2)) as engine:
        assert engine.worker_count() == 2
        report = run_graph(tasks, engine, tmp_path / "cohort")
    assert report.value("b") == {"x": 2, "y": {"x": 1}}
    assert all(r["pid"] != os.getpid() for r in report.results.values())
    # the unimportable task fails with a message naming the cause (it used to hang the run)
    message, code = report.failed["c"]
    assert "cannot load the task" in message and "only_here_0f3a" in message and code == 2
    assert report.skipped == {"d": "c"}


def test_tasks_below_one_setup_task_spread_over_the_workers(tmp_path):
    # Four per-brain tasks wait for one setup task (as every brain's build-graph waits for the
    # phantom's cohort files). Dask places a task that takes futures as arguments only on the
    # workers holding them, so all four queued on the setup task's worker (measured on the demo:
    # 3 of 4 brains' tasks on one worker; here 4 and 0, 12 s instead of 6 s for four 3-s tasks),
    # unless work stealing happened to move some. With stealing off, only the engine's own
    # placement is tested: handed over as values, the tasks spread.
    distributed = pytest.importorskip("distributed", reason="the [cluster] extra is not installed")
    import dask

    def busy(upstream, seconds=1.0):  # holds the worker as a stage does (not a sleep)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            pass
        return upstream

    setup = Task("synth", dict, {"x": 1})
    brains = [Task(f"synth/B0{i}", busy, {"upstream": Ref("synth")}) for i in range(4)]
    settings = {"distributed.worker.daemon": False, "distributed.scheduler.work-stealing": False}
    with (
        dask.config.set(settings),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        engine = Engine(EngineOptions(scheduler=cluster.scheduler_address), client=client)
        report = run_graph([setup, *brains], engine, tmp_path / "cohort")
    assert report.ok, report.failed
    assert all(report.value(t.key) == {"x": 1} for t in brains)
    pids = [report.results[t.key]["pid"] for t in brains]
    assert len(set(pids)) == 2, pids  # 2 and 2 when the machine is quiet


# --------------------------------------------------------------------------------------------------
# the tiny phantom, serial and on 2 workers


@pytest.fixture(scope="module")
def serial_cohort(tiny_cohort, tmp_path_factory):
    """The tiny phantom's graph path run serially (the reference)."""
    import shutil

    root = tmp_path_factory.mktemp("serial") / "cohort"
    shutil.copytree(tiny_cohort, root)
    tasks = cohort_graph(root, CohortSettings(**TEST_SETTINGS))
    report = run_graph(tasks, Engine(EngineOptions(workers=0)), root)
    report.raise_for_failures()
    return root


def _engine(dask_cluster) -> Engine:
    cluster, client = dask_cluster
    return Engine(EngineOptions(scheduler=cluster.scheduler_address, wait_s=600), client=client)


@pytest.mark.slow
def test_two_workers_give_the_serial_outputs_and_a_rerun_reuses_them(
    serial_cohort, dask_cluster, copy_tiny
):
    root = copy_tiny()
    engine = _engine(dask_cluster)
    tasks = cohort_graph(root, CohortSettings(**TEST_SETTINGS))
    report = run_graph(tasks, engine, root)
    report.raise_for_failures()
    # the brains ran in both worker processes, none in this one
    assert len({r["pid"] for r in report.results.values()}) == 2
    assert all(r["pid"] != os.getpid() for r in report.results.values())
    compared = assert_same_outputs(serial_cohort, root)
    assert compared > 40
    # one writer per file: no output belongs to two stage records
    owners: dict[str, list[str]] = {}
    for name, rec in records(root).items():
        for output in rec["outputs"]:
            owners.setdefault(output, []).append(name)
    assert all(len(v) == 1 for v in owners.values()), {
        k: v for k, v in owners.items() if len(v) > 1
    }
    assert all(r["reused"] is False for r in report.results.values() if r["reused"] is not None)
    # the same command again: everything is up to date
    again = run_graph(cohort_graph(root, CohortSettings(**TEST_SETTINGS)), engine, root)
    assert again.ok
    assert all(r["reused"] is True for r in again.results.values() if r["reused"] is not None)
    assert again.seconds < report.seconds


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_replaced_and_the_task_rerun(
    serial_cohort, dask_cluster, copy_tiny
):
    root = copy_tiny()
    engine = _engine(dask_cluster)
    tasks = cohort_graph(root, CohortSettings(brains=("B01",), until="build-graph"))
    lock = root / "derivatives" / "cortexgraph" / "B01" / "locks" / "build-graph.lock"
    out: list = []
    thread = threading.Thread(target=lambda: out.append(run_graph(tasks, engine, root)))
    thread.start()
    deadline = time.monotonic() + 120
    holder = None
    while time.monotonic() < deadline and holder is None:
        try:
            holder = json.loads(lock.read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    assert holder is not None, "build-graph never started"
    time.sleep(1.0)  # mid-task: reading sections, stacking the volume
    os.kill(int(holder["pid"]), signal.SIGKILL)
    thread.join(timeout=300)
    report = out[0]
    assert report.ok, (report.failed, report.skipped)
    assert report.results["build-graph/B01"]["pid"] != int(holder["pid"])
    assert assert_same_outputs(serial_cohort, root, only="B01/records/build-graph") >= 5
    client = dask_cluster[1]
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


@pytest.mark.slow
def test_two_runs_of_one_stage_at_once_write_its_files_once(dask_cluster, copy_tiny):
    root = copy_tiny()
    engine = _engine(dask_cluster)
    settings = CohortSettings(brains=("B03",), until="build-graph")
    out: list = []
    threads = [
        threading.Thread(target=lambda: out.append(run_graph(cohort_graph(root, settings), engine, root)))
        for _ in range(2)
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    runs = sorted((r.results["build-graph/B03"] for r in out), key=lambda r: r["reused"])
    computed, waited = runs
    assert computed["reused"] is False and waited["reused"] is True
    assert computed["pid"] != waited["pid"]
    # they ran at the same time: the second waited for the lock, then reused the first's outputs
    assert waited["started_unix"] < computed["started_unix"] + computed["seconds"]
    assert (
        waited["started_unix"] + waited["seconds"]
        >= computed["started_unix"] + computed["seconds"] - 1
    )
    assert len([k for k in records(root) if "build-graph" in k]) == 1


@pytest.mark.slow
def test_the_cli_runs_on_a_cluster_given_its_address(dask_cluster, copy_tiny):
    from typer.testing import CliRunner

    from cortexgraph.cli.main import app

    root = copy_tiny()
    cluster = dask_cluster[0]
    result = CliRunner().invoke(
        app,
        ["run-cohort", "--root", str(root), "--brains", "B07", "--until", "build-graph",
         "--scheduler", cluster.scheduler_address, "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert set(report["tasks"]) == {"check/B07", "build-graph/B07"}
    record = json.loads(
        (root / "derivatives" / "cortexgraph" / "B07" / "records" / "build-graph.json").read_text()
    )
    worker_pids = set(dask_cluster[1].run(os.getpid).values())
    assert record["pid"] in worker_pids and record["pid"] != os.getpid()
    assert report["tasks"]["build-graph/B07"]["pid"] == record["pid"]
    assert Path(report["tasks"]["build-graph/B07"]["value"]["qc_png"]).is_file()
