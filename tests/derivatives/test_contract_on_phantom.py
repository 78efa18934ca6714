"""The stage contract end to end on the tiny phantom: reuse, recompute with reasons, what an edit
makes stale, two concurrent runs of one stage, a run killed mid-way."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from cortexgraph.build_graph import BuildGraphParameters, build_graph, build_graph_outputs
from cortexgraph.data.manifest import find_brain
from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.status import cohort_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort(tiny_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("contract") / "tiny"
    shutil.copytree(tiny_cohort, root)
    for brain in ("B01", "B03"):
        build_graph(find_brain(brain, root), qc_picture=False)
    return root


def _cli(*args, env=None):
    return [sys.executable, "-m", "cortexgraph.cli.main", *args]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


def _graph_arrays(path):
    with h5py.File(path, "r") as h5:
        return {k: h5[k][...] for k in ("pos", "face", "edge_index")} | {
            f"nodes/{k}": h5["nodes"][k][...] for k in h5["nodes"]
        }


def test_unchanged_inputs_reuse_and_a_parameter_change_recomputes(cohort):
    brain = find_brain("B01", cohort)
    graph = build_graph_outputs(brain)["graph_lh"]
    stamp = graph.stat().st_mtime_ns
    again = build_graph(brain, qc_picture=False)
    assert again["reused"] and graph.stat().st_mtime_ns == stamp
    changed = build_graph(brain, BuildGraphParameters(remesh_iterations=9), qc_picture=False)
    assert not changed["reused"]
    assert "parameter build_graph.remesh_iterations changed (10 -> 9)" in changed["why"]
    assert graph.stat().st_mtime_ns != stamp
    back = build_graph(brain, qc_picture=False)  # back to the defaults: recomputed again
    assert not back["reused"] and back["key"] == again["key"]


def test_editing_one_mask_makes_exactly_that_brains_stages_stale(cohort):
    brain = find_brain("B03", cohort)
    record = next(r for r in brain.sections if r.mask and not r.missing)
    before = {
        b: {s.label: s.state for s in rows}
        for b, rows in cohort_status(brain.cohort)["brains"].items()
    }
    assert before["B03"]["B03/build-graph"] == "done" and before["B01"]["B01/build-graph"] == "done"
    mask = brain.path(record.mask)
    original = mask.read_bytes()
    with h5py.File(mask, "r+") as h5:
        level = h5["levels/0"] if "levels" in h5 else h5[next(iter(h5))]
        data = level[...]
        data[data == 2] = 1
        level[...] = data
    try:
        after = cohort_status(brain.cohort)["brains"]
        b03 = {s.label: s for s in after["B03"]}
        assert b03["B03/build-graph"].state == "stale"
        assert b03["B03/build-graph"].reasons == [f"input B03/{record.mask} changed"]
        assert b03["B03/build-graph"].command == "cortexgraph build-graph B03"
        assert {s.label: s.state for s in after["B01"]} == before["B01"]
    finally:
        mask.write_bytes(original)  # the old content restores the old key
    assert {s.label: s.state for s in cohort_status(brain.cohort)["brains"]["B03"]} == before["B03"]


#: A build-graph run that holds its lock until the file ``go`` exists (it waits in its first
#: progress report), so the test does not depend on how fast the machine is.
HELD_RUN = """
import sys, time
from pathlib import Path
from cortexgraph.build_graph import build_graph
from cortexgraph.data.manifest import find_brain
go = Path(sys.argv[2])
def progress(stage, done, total):
    while not go.exists():
        time.sleep(0.05)
build_graph(find_brain("B07", sys.argv[1]), qc_picture=False, progress=progress)
"""


def test_two_concurrent_runs_one_refuses_then_one_waits(cohort, tmp_path):
    store = Derivatives(cohort)
    lock = StageId("build-graph", "B07").lock_path(store.root)
    go = tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-c", HELD_RUN, str(cohort), str(go)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not lock.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert lock.exists(), "the first run never took its lock"
        second = subprocess.run(
            _cli("build-graph", "B07", "--root", str(cohort)),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 3, second.stderr
        assert "running already" in second.stderr and f"pid {first.pid}" in second.stderr
        third = subprocess.Popen(
            _cli("build-graph", "B07", "--root", str(cohort), "--no-qc-picture", "--wait", "300"),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # it cannot finish while the first run holds the lock (without --wait it would exit 3)
        time.sleep(2.0)
        assert third.poll() is None, "the waiting run ended while the lock was held"
    finally:
        go.touch()
    assert first.wait(300) == 0, first.stdout.read()
    _, third_err = third.communicate(timeout=400)
    assert third.returncode == 0, third_err
    assert "up to date, reused" in third_err  # it waited, then found the first run's outputs


def test_killed_run_leaves_nothing_trusted_and_the_rerun_equals_an_uninterrupted_one(
    cohort, tmp_path
):
    clean = tmp_path / "clean"
    shutil.copytree(cohort, clean, ignore=shutil.ignore_patterns("derivatives"))
    reference = build_graph(find_brain("B01", clean), qc_picture=False)
    store = Derivatives(cohort)
    sid = StageId("build-graph", "B01")
    out = build_graph_outputs(find_brain("B01", cohort))
    proc = subprocess.Popen(
        _cli("build-graph", "B01", "--root", str(cohort), "--no-qc-picture", "--overwrite"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while store.record(sid) is not None and time.time() < deadline:  # deleted first
        time.sleep(0.02)
    time.sleep(1.0)  # into the computation
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert store.record(sid) is None
    status = {s.label: s.state for s in cohort_status(find_brain("B01", cohort).cohort)["brains"]["B01"]}
    assert status["B01/build-graph"] == "missing"
    rerun = subprocess.run(
        _cli("build-graph", "B01", "--root", str(cohort), "--no-qc-picture"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr  # the killed run's stale lock did not block it
    assert store.record(sid).key == reference["key"]
    clean_graph = build_graph_outputs(find_brain("B01", clean))["graph_lh"]
    got, want = _graph_arrays(out["graph_lh"]), _graph_arrays(clean_graph)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_names_that_would_become_paths_are_refused(cohort, tmp_path):
    for args in (
        ["build-graph", "../B01", "--root", str(cohort)],
        ["predict", "../../x", "B01", "--root", str(cohort)],
        ["map3d", "B01", "--area", "hOc1", "--labels", "../x", "--root", str(cohort)],
        ["render", "B01", "--labels", "y", "--run", "a/b", "--root", str(cohort)],
    ):
        result = subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (cohort.parent / "x").exists() and not (cohort / "derivatives/cortexgraph/x").exists()


def test_sigterm_releases_the_lock_and_leaves_no_temporary_file(cohort):
    store = Derivatives(cohort)
    sid = StageId("build-graph", "B03")
    before = store.record(sid)
    proc = subprocess.Popen(
        _cli("build-graph", "B03", "--root", str(cohort), "--overwrite", "--no-qc-picture"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = sid.lock_path(store.root)
    deadline = time.time() + 120
    while not lock.exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)  # what a scheduler sends at its time limit
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err
    assert not lock.exists()
    # stopped before it rewrote an output: the previous run stands (its record written back);
    # after: no record, and none of the previous outputs is left beside the new ones
    after = store.record(sid)
    if after is not None:
        assert before is not None and after.key == before.key and not store.problems(after)
    else:
        assert before is None or not any(store.output(before, n).exists() for n in before.outputs)
    leftovers = [p for p in (store.root / "B03").rglob(".*") if p.is_file()]
    assert leftovers == []
