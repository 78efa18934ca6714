"""StageRun: reuse by key, recompute with reasons, upstream refusal, interruption, locks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from cortexgraph.derivatives import Derivatives, StageId, StageRun
from cortexgraph.derivatives.lock import StageLock, read_lock
from cortexgraph.errors import StageBusyError, UpstreamError


@pytest.fixture()
def store(tmp_path):
    (tmp_path / "cohort.toml").write_text("")
    (tmp_path / "B01").mkdir()
    (tmp_path / "B01" / "mask.h5").write_bytes(b"mask")
    return Derivatives(tmp_path)


def run_stage(store, sid, value, *, inputs=(), upstream=(), overwrite=False, fail=False):
    """A toy stage: writes ``value`` into one output per scope; returns (reused, why, output)."""
    out = store.root / (sid.brain or "") / "out" / f"{sid.file_stem}.txt"
    with StageRun(
        store, sid, parameters={"value": value}, inputs=inputs, upstream=upstream,
        overwrite=overwrite,
    ) as run:  # fmt: skip
        if run.reuse:
            return True, run.why, out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(str(value))
        if fail:
            raise RuntimeError("killed mid-run")
        run.commit([out], {"value": value})
    return False, run.why, out


def test_reuse_recompute_and_reasons(store):
    mask = store.cohort_root / "B01" / "mask.h5"
    sid = StageId("build-graph", "B01")
    assert run_stage(store, sid, 1, inputs=[mask])[:2] == (False, "no record yet (first run, or the last run did not finish)")
    assert run_stage(store, sid, 1, inputs=[mask])[:2] == (True, "up to date")
    assert run_stage(store, sid, 2, inputs=[mask])[1] == "parameter value changed (1 -> 2)"
    mask.write_bytes(b"edited")
    assert run_stage(store, sid, 2, inputs=[mask])[1] == "input B01/mask.h5 changed"
    assert run_stage(store, sid, 2, inputs=[mask], overwrite=True)[1] == "--overwrite"
    # an output edited by hand is not trusted
    _, _, out = run_stage(store, sid, 2, inputs=[mask])
    out.write_text("tampered")
    reused, why, _ = run_stage(store, sid, 2, inputs=[mask])
    assert not reused and "modified after the stage wrote it" in why and out.read_text() == "2"


def test_downstream_refuses_missing_stale_and_running_upstream(store):
    mask = store.cohort_root / "B01" / "mask.h5"
    graph, feats = StageId("build-graph", "B01"), StageId("features", "B01", ("enc",))
    with pytest.raises(UpstreamError, match="B01/build-graph has not been computed") as err:
        run_stage(store, feats, 1, upstream=[graph])
    assert "cortexgraph build-graph B01" in str(err.value)
    run_stage(store, graph, 1, inputs=[mask])
    assert not run_stage(store, feats, 1, upstream=[graph])[0]
    assert run_stage(store, feats, 1, upstream=[graph])[0]
    mask.write_bytes(b"edited")
    with pytest.raises(UpstreamError, match="stale: input B01/mask.h5 changed"):
        run_stage(store, feats, 1, upstream=[graph])
    run_stage(store, graph, 1, inputs=[mask])
    assert run_stage(store, feats, 1, upstream=[graph])[1] == "upstream B01/build-graph was recomputed"
    with StageLock(graph.lock_path(store.root), graph.label):
        with pytest.raises(UpstreamError, match="being computed right now"):
            run_stage(store, feats, 1, upstream=[graph], overwrite=True)


def test_interrupted_run_leaves_no_record_and_the_rerun_recomputes(store):
    sid = StageId("build-graph", "B01")
    run_stage(store, sid, 1)
    with pytest.raises(RuntimeError):
        run_stage(store, sid, 2, fail=True)  # the old record is gone before outputs change
    assert store.record(sid) is None
    assert not read_lock(sid.lock_path(store.root))  # the lock was released
    reused, why, out = run_stage(store, sid, 2)
    assert not reused and why.startswith("no record yet") and out.read_text() == "2"


def test_an_interrupted_recomputation_leaves_neither_old_nor_new_outputs(store):
    """Before, the outputs the interrupted run had rewritten stood beside the previous run's
    others (e.g. new volumes beside old meshes), unrecorded."""
    sid = StageId("build-graph", "B01")
    a, b = store.root / "B01" / "a.txt", store.root / "B01" / "b.txt"
    with StageRun(store, sid, parameters={"v": 1}) as run:
        for f in (a, b):
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("1")
        run.commit([a, b])
    outside = store.root.parent / "outside.txt"
    outside.write_text("not an output")
    with pytest.raises(KeyboardInterrupt):
        with StageRun(store, sid, parameters={"v": 2}) as run:
            a.write_text("2")  # rewritten, then the run is interrupted before b
            raise KeyboardInterrupt
    assert not a.exists() and not b.exists() and store.record(sid) is None
    assert outside.read_text() == "not an output"
    # a failure before a recomputation starts (here: the stage is reused) deletes nothing
    with StageRun(store, sid, parameters={"v": 3}) as run:
        a.write_text("3")
        run.commit([a])
    with pytest.raises(RuntimeError):
        with StageRun(store, sid, parameters={"v": 3}) as run:
            assert run.reuse
            raise RuntimeError("a caller's error after reuse")
    assert a.read_text() == "3" and store.record(sid) is not None


def test_a_refused_recomputation_that_wrote_nothing_keeps_the_previous_run(store):
    """A rerun with other parameters refused for bad input before it wrote anything used to
    delete the previous record, so a working run became unusable (e.g. `lsm train --name RUN` over
    an existing run with sections that do not show the area: its plan was gone)."""
    from cortexgraph.errors import DataFormatError

    sid = StageId("build-graph", "B01")
    reused, _, out = run_stage(store, sid, 1)
    before = store.record(sid)
    with pytest.raises(DataFormatError, match="not annotated"):
        with StageRun(store, sid, parameters={"value": 2}) as run:
            assert not run.reuse and store.record(sid) is None  # not trusted while it runs
            raise DataFormatError("area 4 is not annotated on this section")
    after = store.record(sid)
    assert after is not None and after.key == before.key and out.read_text() == "1"
    assert run_stage(store, sid, 1)[:2] == (True, "up to date")  # the previous run stands


def test_leftover_outputs_of_the_previous_run_are_removed(store):
    sid = StageId("build-graph", "B01")
    a, b = store.root / "B01" / "a.txt", store.root / "B01" / "b.txt"
    for value, files in ((1, [a, b]), (2, [a])):
        with StageRun(store, sid, parameters={"v": value}) as run:
            for f in files:
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(str(value))
            run.commit(files)
    assert a.is_file() and not b.exists()


def test_changed_input_during_the_run_is_not_recorded(store):
    mask = store.cohort_root / "B01" / "mask.h5"
    sid = StageId("build-graph", "B01")
    with pytest.raises(UpstreamError, match="changed while B01/build-graph ran"):
        with StageRun(store, sid, parameters={}, inputs=[mask]) as run:
            out = store.root / "B01" / "o.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("x")
            mask.write_bytes(b"edited by someone else meanwhile")
            run.commit([out])
    assert store.record(sid) is None


def test_lock_refuses_a_second_process_waits_and_breaks_stale_locks(store, tmp_path):
    sid = StageId("build-graph", "B01")
    path = sid.lock_path(store.root)
    release = tmp_path / "release"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, pathlib\n"
            "from cortexgraph.derivatives.lock import StageLock\n"
            "with StageLock(pathlib.Path(sys.argv[1]), 'B01/build-graph'):\n"
            "    print('held', flush=True)\n"
            "    while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.05)\n",
            str(path),
            str(release),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(StageBusyError, match=f"pid {holder.pid}") as err:
        StageLock(path, sid.label).acquire()
    assert err.value.exit_code == 3 and str(path) in str(err.value)
    release.touch()
    lock = StageLock(path, sid.label, wait_s=30, poll_s=0.1).acquire()  # waits for the holder
    lock.release()
    holder.wait(10)
    # a lock left by a process that no longer exists on this host is stale
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "token": "x"}))
    lock = StageLock(path, sid.label).acquire()
    assert read_lock(path)["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


@pytest.mark.parametrize("wait_s", [float("nan"), -1.0, float("inf"), 8 * 86400.0, "10", True])
def test_a_wait_that_is_not_a_number_of_seconds_is_refused(store, wait_s):
    """--wait nan used to wait for ever, and --wait -1 acted as 0."""
    from cortexgraph.derivatives.lock import check_wait_s
    from cortexgraph.errors import ParameterError

    with pytest.raises(ParameterError, match="--wait .*not a number of seconds in 0..604800"):
        StageLock(StageId("build-graph", "B01").lock_path(store.root), "x", wait_s=wait_s)
    assert check_wait_s(0) == 0.0 and check_wait_s(7 * 86400) == 7 * 86400.0


def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(store, tmp_path):
    """A process killed between writing an output and its record: the rerun recomputes."""
    script = tmp_path / "stage.py"
    script.write_text(
        "import sys, time\n"
        "from cortexgraph.derivatives import Derivatives, StageId, StageRun\n"
        f"store = Derivatives({str(store.cohort_root)!r})\n"
        "sid = StageId('build-graph', 'B01')\n"
        "out = store.root / 'B01' / 'o.txt'\n"
        "with StageRun(store, sid, parameters={'v': 1}) as run:\n"
        "    if not run.reuse:\n"
        "        out.parent.mkdir(parents=True, exist_ok=True)\n"
        "        out.write_text('partial')\n"
        "        print('written', flush=True)\n"
        "        if sys.argv[1] == 'stall': time.sleep(60)\n"
        "        out.write_text('final')\n"
        "        run.commit([out])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(script), "stall"], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    sid = StageId("build-graph", "B01")
    assert store.record(sid) is None  # nothing trusted
    subprocess.run([sys.executable, str(script), "go"], check=True, env=env, timeout=60)
    record = store.record(sid)
    assert record is not None and (store.root / "B01" / "o.txt").read_text() == "final"
    # the stale lock of the killed process did not block the rerun
    assert not sid.lock_path(store.root).exists()


def test_reused_outputs_are_the_record_files_and_refused_when_computing(store):
    sid = StageId("build-graph", "B01")
    _, _, out = run_stage(store, sid, 1)
    with StageRun(store, sid, parameters={"value": 1}) as run:
        assert run.reuse and run.reused_outputs() == [out.resolve()]
    with StageRun(store, sid, parameters={"value": 2}) as run:
        assert not run.reuse
        with pytest.raises(RuntimeError, match="of a run that computes"):
            run.reused_outputs()


def _sections(store, names):
    folder = store.root / "B01" / "pred"
    return [folder / f"{n}.h5" for n in names]


def test_an_interrupted_first_run_deletes_the_files_it_declared(store):
    """Before, a first run stopped after some sections left their files, unrecorded, where the web
    app's viewer lists predictions by folder."""
    sid = StageId("lsm-predict", "B01", ("lsm-ms", "hOc1"))
    files = _sections(store, ["s0100", "s0200", "s0300"])
    outside = store.cohort_root / "B01-notes.txt"
    outside.write_text("not an output")
    with pytest.raises(KeyboardInterrupt):
        with StageRun(store, sid, parameters={"v": 1}) as run:
            for f in files[:2]:
                run.writing([f, outside])  # a path outside the derivatives is never declared
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("1")
            journal = json.loads(run.journal_path.read_text())
            assert [store.namer.path(n) for n in journal["unrecorded"]] == files[:2]
            raise KeyboardInterrupt
    assert not any(f.exists() for f in files) and store.record(sid) is None
    assert outside.read_text() == "not an output"
    assert not run.journal_path.exists()
    # a complete run: declared files it records stay, one it declared and did not record goes
    with StageRun(store, sid, parameters={"v": 1}) as run:
        for f in files:
            run.writing([f])
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("2")
        run.commit(files[:2])
    assert [f.exists() for f in files] == [True, True, False]
    assert not run.journal_path.exists()
    assert {store.namer.path(n) for n in store.record(sid).outputs} == set(files[:2])


def test_a_refused_rerun_keeps_the_previous_run_and_deletes_only_its_own_new_files(store):
    sid = StageId("lsm-predict", "B01", ("lsm-ms", "hOc1"))
    old, new = _sections(store, ["s0100", "s0400"])
    with StageRun(store, sid, parameters={"v": 1}) as run:
        run.writing([old])
        old.parent.mkdir(parents=True, exist_ok=True)
        old.write_text("1")
        run.commit([old])
    with pytest.raises(RuntimeError):
        with StageRun(store, sid, parameters={"v": 2}) as run:
            run.writing([old, new])
            new.write_text("2")  # a new section; the previous run's file is untouched
            raise RuntimeError("refused")
    assert old.read_text() == "1" and not new.exists()
    assert store.record(sid) is not None and store.problems(store.record(sid)) == []


KILLED_STAGE = (
    "import sys, time\n"
    "from cortexgraph.derivatives import Derivatives, StageId, StageRun\n"
    "store = Derivatives(sys.argv[1])\n"
    "sid = StageId('lsm-predict', 'B01', ('lsm-ms', 'hOc1'))\n"
    "folder = store.root / 'B01' / 'pred'\n"
    "with StageRun(store, sid, parameters={'v': int(sys.argv[2])}) as run:\n"
    "    sections = [int(s) for s in sys.argv[3].split(',')]\n"
    "    files = [folder / f's{s:04d}.h5' for s in sections]\n"
    "    for f in files:\n"
    "        run.writing([f])\n"
    "        f.parent.mkdir(parents=True, exist_ok=True)\n"
    "        f.write_text(sys.argv[2])\n"
    "    if sys.argv[4] == 'stall':\n"
    "        print('written', flush=True)\n"
    "        time.sleep(60)\n"
    "    run.commit(files)\n"
)


@pytest.mark.parametrize("first", [True, False])
def test_files_of_a_killed_run_are_deleted_by_the_next_run_of_the_stage(store, tmp_path, first):
    """SIGKILL cannot be cleaned up after; the next run of the stage deletes what the journal lists
    (the files the killed run declared and, for a recomputation, the previous run's outputs) and
    keeps nothing of it, even files it does not write itself (here: section 500)."""
    script = tmp_path / "stage.py"
    script.write_text(KILLED_STAGE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    root = str(store.cohort_root)
    folder = store.root / "B01" / "pred"
    if not first:  # a previous run (sections 100, 200) stands, then a recomputation is killed
        subprocess.run([sys.executable, str(script), root, "1", "100,200", "go"], check=True,
                       env=env, timeout=60)  # fmt: skip
    killed = subprocess.Popen([sys.executable, str(script), root, "2", "100,500", "stall"],
                              stdout=subprocess.PIPE, env=env, text=True)  # fmt: skip
    assert killed.stdout.readline().strip() == "written"
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    assert (folder / "s0500.h5").exists()  # left by the killed run, unrecorded
    subprocess.run([sys.executable, str(script), root, "3", "100,300", "go"], check=True, env=env,
                   timeout=60)  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == ["s0100.h5", "s0300.h5"]
    record = store.record(StageId("lsm-predict", "B01", ("lsm-ms", "hOc1")))
    assert record is not None and record.parameters == {"v": 3}
