"""The LSM stages under the stage contract, on a copy of the tiny phantom: reuse by key, selective
recomputation, runs that never share a file, stale upstream refused, locks, and a killed prediction.

The chain used throughout: hOc1 of B01 is annotated on 422, 602, 722, 782, 842, 962, 1022, 1142;
``step=4`` makes two models, on (422, 842) and (842, 1142); ``extent=(722, 962)`` predicts 722, 782,
842 (first model) and 902, 962 (second model). Six training iterations: the tests check files,
records and keys, not accuracy (:func:`test_tiny_lsm_beats_chance_on_the_phantom` at the end
checks that).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.data.manifest import find_brain
from cortexgraph.data.raster import Raster, write_raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.derivatives import Derivatives
from cortexgraph.derivatives.lock import StageLock
from cortexgraph.errors import StageBusyError, UpstreamError
from cortexgraph.lsm.data import resolve_area
from cortexgraph.lsm.evaluate import area_f1
from cortexgraph.lsm.labels import RunLabels, lsm_area_sections, lsm_runs
from cortexgraph.lsm.layout import predict_id, prediction_path
from cortexgraph.lsm.model_files import load_model
from cortexgraph.lsm.stages import LSMRun, predict_stage, run_chain, run_gsm, run_interval

pytestmark = pytest.mark.slow

FIRST, SECOND = (722, 782, 842), (902, 962)


def settings(cohort, events=None, **kw) -> LSMRun:
    brain = find_brain("B01", cohort)
    # step 4 on the tiny phantom gives 4.8 mm intervals: longer than the planner's limit, which
    # these tests of the stage contract do not exercise (tests/lsm/test_lsm_plan.py does)
    options = dict(arch="hr", iterations=6, step=4, extent=(722, 962), seed=0, max_interval_mm=None)
    options.update(kw)
    return LSMRun(
        brain=brain,
        area=resolve_area(brain, "hOc1"),
        on_stage=None if events is None else events.append,
        **options,
    )


def decisions(events) -> dict[str, str]:
    """stage label (without the brain) -> reused / recomputed, from the events of one call."""
    out = {}
    for event in events:
        if event.reused or event.finished:
            out[event.label.split("/", 1)[1]] = "reused" if event.reused else "recomputed"
    return out


def predictions(run: LSMRun) -> dict[int, np.ndarray]:
    out = {}
    for section, path in lsm_area_sections(run.store, run.brain, run.name, run.area).items():
        with Raster(path) as raster:
            out[section] = raster.read_level(0)
    return out


def mtimes(folder) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


def edit_annotation(cohort, section: int, area_id: int = 4) -> None:
    """Clear one pixel of the area in a section's annotation (the area stays on the section)."""
    path = cohort / "B01" / "annotations" / f"s{section:04d}.h5"
    with Raster(path) as raster:
        labels = raster.read_level(0)
        spacing = raster.spacing_um
    rows, cols = np.nonzero(labels == area_id)
    assert len(rows) > 10
    labels[rows[0], cols[0]] = 0
    write_raster(path, labels, spacing, kind="labels")


def flat(text: str) -> str:
    """CLI output with the console's line wrapping undone."""
    return " ".join(text.split())


def test_reuse_and_selective_recomputation(cohort):
    events = []
    run = settings(cohort, events)
    result = run_chain(run)
    folder = run.out_dir / "lsm" / "lsm-hr" / "hOc1"
    assert result["plan"].intervals == ((422, 842), (842, 1142))
    assert [p.name for p in result["predictions"]] == [f"s{s:04d}.h5" for s in FIRST + SECOND]
    assert set(decisions(events).values()) == {"recomputed"} and len(decisions(events)) == 4
    first = predictions(run)
    assert set(first) == set(FIRST + SECOND)
    for classes in first.values():
        assert classes.dtype == np.uint8 and set(np.unique(classes)) <= {0, 1, 2, 3, 255}
    before = mtimes(folder)

    # unchanged: every stage reused, no file rewritten
    events.clear()
    run_chain(settings(cohort, events))
    assert decisions(events) == {
        "lsm-plan@lsm-hr@hOc1": "reused",
        "lsm-train@lsm-hr@hOc1@s0422-s0842": "reused",
        "lsm-train@lsm-hr@hOc1@s0842-s1142": "reused",
        "lsm-predict@lsm-hr@hOc1": "reused",
    }
    assert all(e.why == "up to date" for e in events)
    assert mtimes(folder) == before

    # one annotation of one interval's section edited (422: only the first model reads it)
    edit_annotation(cohort, 422)
    events.clear()
    run_chain(settings(cohort, events))
    assert decisions(events) == {
        "lsm-plan@lsm-hr@hOc1": "recomputed",
        "lsm-train@lsm-hr@hOc1@s0422-s0842": "recomputed",
        "lsm-train@lsm-hr@hOc1@s0842-s1142": "reused",
        "lsm-predict@lsm-hr@hOc1": "recomputed",
    }
    why = {e.label.split("/", 1)[1]: e.why for e in events if e.finished}
    assert why["lsm-train@lsm-hr@hOc1@s0422-s0842"] == "input B01/annotations/s0422.h5 changed"
    after = mtimes(folder)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {
        "chain.json",
        *(f"models/s0422-s0842/{n}" for n in ("model.pt", "history.json", "rois.npz")),
        *(f"pred/s{s:04d}.h5" for s in FIRST),
    }
    record = run.store.record(predict_id("B01", "lsm-hr", run.area))
    assert (record.measured["predicted"], record.measured["kept"]) == (3, 2)

    # one parameter changed: the tile size re-predicts every section, the models are kept
    events.clear()
    run_chain(settings(cohort, events, tile_px=32))
    assert decisions(events)["lsm-predict@lsm-hr@hOc1"] == "recomputed"
    assert decisions(events)["lsm-train@lsm-hr@hOc1@s0842-s1142"] == "reused"
    assert [e.why for e in events if e.finished] == ["parameter tile_px changed (64 -> 32)"]

    # a training parameter changed: both models retrain, the plan is kept
    events.clear()
    run_chain(settings(cohort, events, tile_px=32, iterations=7))
    assert decisions(events) == {
        "lsm-plan@lsm-hr@hOc1": "reused",
        "lsm-train@lsm-hr@hOc1@s0422-s0842": "recomputed",
        "lsm-train@lsm-hr@hOc1@s0842-s1142": "recomputed",
        "lsm-predict@lsm-hr@hOc1": "recomputed",
    }


def test_runs_never_share_a_file_and_stale_upstream_is_refused(cohort, cli_exit_code):
    run_chain(settings(cohort))
    run_chain(settings(cohort, name="lsm-hr-seed1", seed=1))
    gsm = run_gsm(settings(cohort, kind="gsm"))
    store = Derivatives.of(find_brain("B01", cohort))
    brain_out = store.root / "B01"
    files = {}
    for name in ("lsm-hr", "lsm-hr-seed1", "gsm-hr"):
        files[name] = {p for p in (brain_out / "lsm" / name).rglob("*") if p.is_file()}
        assert files[name]
    assert not (files["lsm-hr"] & files["lsm-hr-seed1"]) and not (files["lsm-hr"] & files["gsm-hr"])
    records = {r.name for r in (brain_out / "records").glob("*.json")}
    assert (
        "lsm-predict@lsm-hr-seed1@hOc1.json" in records and "lsm-train@gsm-hr@hOc1.json" in records
    )
    assert not (brain_out / "labels").exists()  # no label file shared between runs
    assert gsm["models"][0] == brain_out / "lsm/gsm-hr/hOc1/models/global/model.pt"
    # other seeds, other models: the predictions differ somewhere
    a = predictions(settings(cohort))
    b = predictions(settings(cohort, name="lsm-hr-seed1"))
    assert any(not np.array_equal(a[s], b[s]) for s in a)
    brain = find_brain("B01", cohort)
    assert sorted(lsm_runs(store, brain)) == ["gsm-hr", "lsm-hr", "lsm-hr-seed1"]
    assert [area.name for area in lsm_runs(store, brain)["lsm-hr"]] == ["hOc1"]
    labels = RunLabels(store, brain, "lsm-hr")
    assert labels.sections == list(FIRST + SECOND)
    combined, spacing, info = labels.combined(782)
    np.testing.assert_array_equal(combined == 4, a[782] == 3)
    assert spacing == 320.0 and info["conflict_px"] == 0 and combined.dtype == np.uint16

    # the annotation of a training section changes: predicting alone refuses (exit 4), naming the
    # stale stage and the command that updates it; consumers refuse to read the labels too
    edit_annotation(cohort, 1142)
    with pytest.raises(UpstreamError) as info:
        predict_stage(settings(cohort))
    assert "lsm-plan@lsm-hr@hOc1 is stale" in str(info.value) and "lsm chain" in str(info.value)
    assert info.value.exit_code == 4
    result = CliRunner().invoke(
        app, ["lsm", "predict", "B01", "--root", str(cohort), "--area", "hOc1", "--arch", "hr"]
    )
    assert result.exit_code == cli_exit_code(UpstreamError), result.output
    assert "is stale" in flat(result.output)
    # consumers check the whole chain: the predictions' upstream (the plan) is stale
    with pytest.raises(UpstreamError, match="stale"):
        RunLabels(store, brain, "lsm-hr")
    # the other runs plan the same chain from the same annotations: stale as well
    with pytest.raises(UpstreamError):
        lsm_area_sections(store, brain, "lsm-hr-seed1", "hOc1")


def test_locked_predict_refuses_or_waits_and_a_killed_prediction_reruns_cleanly(
    cohort, cli_exit_code
):
    """A second `lsm predict` of the same run and area refuses (exit 3) or waits; a prediction
    killed with SIGKILL mid-run leaves no record (consumers refuse its files) and the next run
    writes exactly what an uninterrupted run writes."""
    slow = dict(tile_px=4, batch_size=1, extent=(722, 842))  # about 2 s per section
    run = settings(cohort, **slow)
    run_chain(run)  # uninterrupted
    reference = predictions(run)
    assert sorted(reference) == list(FIRST)
    lock_path = predict_id("B01", "lsm-hr", run.area).lock_path(run.store.root)
    argv = ["lsm", "predict", "B01", "--root", str(cohort), "--area", "hOc1", "--arch", "hr"]
    argv += ["--tile-px", "4", "--batch-size", "1"]

    # the lock held by this process: --wait 0 refuses at once, --wait 30 waits for the release
    holder = StageLock(lock_path, "test").acquire()
    with pytest.raises(StageBusyError):
        predict_stage(settings(cohort, **slow))
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == cli_exit_code(StageBusyError), result.output
    assert "running already" in flat(result.output) and StageBusyError.exit_code == 3
    threading.Timer(1.0, holder.release).start()
    start = time.monotonic()
    result = CliRunner().invoke(app, [*argv, "--wait", "30"])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - start >= 0.9 and "reused (up to date)" in flat(result.output)

    # a real second process: refuses while the first predicts; then the first is killed
    pred_dir = prediction_path(run.out_dir, "lsm-hr", run.area, 0).parent
    start_ns = time.time_ns()
    process = subprocess.Popen(
        [sys.executable, "-m", "cortexgraph.cli.main", *argv, "--overwrite"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not lock_path.exists() and time.monotonic() < deadline:
            assert process.poll() is None, "the prediction ended before taking its lock"
            time.sleep(0.02)
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == cli_exit_code(StageBusyError), result.output
        assert f"pid {process.pid}" in flat(result.output)
        while time.monotonic() < deadline:  # kill it after its first new prediction file
            if any(p.stat().st_mtime_ns > start_ns for p in pred_dir.glob("s*.h5")):
                break
            assert process.poll() is None, "the prediction ended before it could be killed"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert run.store.record(predict_id("B01", "lsm-hr", run.area)) is None
    with pytest.raises(UpstreamError, match="has not been computed"):
        lsm_area_sections(run.store, run.brain, "lsm-hr", "hOc1")
    assert lock_path.exists()  # left behind by the killed process: stale, broken by the next run
    journal = lock_path.with_name(lock_path.name.replace(".lock", ".unrecorded.json"))
    assert journal.is_file()  # what the killed run wrote (and the previous outputs): unrecorded

    events = []
    predict_stage(settings(cohort, events, **slow))
    assert decisions(events) == {"lsm-predict@lsm-hr@hOc1": "recomputed"}
    rerun = predictions(run)
    assert set(rerun) == set(reference)
    for section in reference:
        np.testing.assert_array_equal(rerun[section], reference[section])
    assert not [p for p in pred_dir.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert not lock_path.exists() and not journal.exists()
    record = json.loads(run.store.record_path(predict_id("B01", "lsm-hr", run.area)).read_text())
    assert record["measured"]["predicted"] == len(FIRST)


def test_an_interrupted_first_prediction_leaves_no_section_behind(cohort, monkeypatch):
    """Before, a first `lsm predict` stopped after some sections left their files, unrecorded,
    where the web app lists the predictions of a run by folder; the next run overwrote only the
    sections it predicted again."""
    import cortexgraph.lsm.stages as lsm_stages

    run = settings(cohort, name="lsm-hr-first", extent=(722, 842))
    run_chain(run, predict=False)
    pred_dir = prediction_path(run.out_dir, run.name, run.area, 0).parent
    original, calls = lsm_stages._predict_one, []

    def stop_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C, or the job's SIGTERM, while the third section runs
        calls.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(lsm_stages, "_predict_one", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        predict_stage(settings(cohort, name="lsm-hr-first", extent=(722, 842)))
    assert len(calls) == 2  # two sections were written ...
    assert not pred_dir.exists() or not any(pred_dir.iterdir())  # ... and deleted again
    assert run.store.record(predict_id("B01", "lsm-hr-first", run.area)) is None
    monkeypatch.setattr(lsm_stages, "_predict_one", original)
    predict_stage(settings(cohort, name="lsm-hr-first", extent=(722, 842)))
    assert sorted(p.name for p in pred_dir.iterdir()) == [f"s{s:04d}.h5" for s in FIRST]


# --------------------------------------------------------------------------------------------------
# a tiny training run on the phantom


def test_tiny_lsm_beats_chance_on_the_phantom(cohort):
    """An HR model trained for 60 iterations on two annotated sections 2.4 mm apart segments the
    annotated section between them (never seen) far better than chance."""
    brain = find_brain("B01", cohort)
    area = resolve_area(brain, "hOc1")
    run = LSMRun(brain=brain, area=area, arch="hr", interval=(722, 842), iterations=60, seed=0)
    assert run.name == "lsm-hr"
    config = run.config
    assert config.hr_spacing_um == 160.0 and config.output_spacing_um == 320.0
    result = run_interval(run, predict=True)
    (path,) = result["models"]
    assert path == run.out_dir / "lsm" / "lsm-hr" / "hOc1" / "models" / "s0722-s0842" / "model.pt"
    net, loaded, meta = load_model(path)
    assert loaded == config and meta["interval"] == [722, 842] and meta["run"] == "lsm-hr"
    history = json.loads(path.with_name("history.json").read_text())
    assert history["final_loss"] < 0.8 * np.mean(history["loss"][:5])
    # the plan of a single interval predicts s, the sections between and t
    assert result["predictions"] == [
        prediction_path(run.out_dir, "lsm-hr", area, s) for s in (722, 782, 842)
    ]
    with Raster(result["predictions"][1]) as raster:
        pred = raster.read_level(0)
        assert raster.kind == "labels" and raster.spacing_um == 320.0
    with SectionStack(brain) as stack:
        truth = stack.annotation(782, 320.0) == area.id
    roi = pred != 255
    f1 = area_f1(pred == 3, truth, True, roi)
    share = truth[roi].mean()  # chance: label a random share p of the ROI, F1 = p;
    all_area = 2 * share / (1 + share)  # or label all of it
    assert 0.02 < share < 0.5
    # measured: F1 0.737, share 0.146 (all-area F1 0.254)
    assert f1 > all_area + 0.2 and f1 > 0.5, f"F1 {f1:.3f}, all-area baseline {all_area:.3f}"
    # a second run reuses everything: the model file is not rewritten
    mtime = path.stat().st_mtime_ns
    assert run_interval(run, predict=True)["models"] == [path]
    assert path.stat().st_mtime_ns == mtime
