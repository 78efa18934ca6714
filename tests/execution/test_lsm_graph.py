"""The local segmentation models (LSM) as tasks of the cohort graph (issue 15): the plan, one training
task per interval and the prediction of every brain and area, their dependencies, and a serial run
of one short interval on the tiny phantom that writes what ``cortexgraph lsm chain`` writes.

hOc1 of B01 (tiny phantom) is annotated on 422, 602, 722, 782, 842, 962, 1022, 1142: ``step=4``
plans two intervals, (422, 842) and (842, 1142); ``step=7`` one, (422, 1142), longer than the
published 2.4 mm limit (``allow_long_intervals``).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.errors import ParameterError
from cortexgraph.execution.engine import Engine, EngineOptions
from cortexgraph.execution.graph import STEPS, CohortSettings, Ref, cohort_graph, run_graph
from tests.execution.conftest import assert_same_outputs, records

TWO_INTERVALS = {"arch": "hr", "iterations": 6, "step": 4, "extent": (722, 962),
                 "max_interval_mm": None}  # fmt: skip
ONE_INTERVAL = {"arch": "hr", "iterations": 6, "step": 7, "extent": (722, 842),
                "allow_long_intervals": True}  # fmt: skip


def test_lsm_tasks_plan_train_per_interval_predict_then_map3d(tiny_cohort):
    settings = CohortSettings(
        brains=("B01",), lsm_areas=("hOc1",), lsm=TWO_INTERVALS, map3d_areas=("hOc1",),
        map3d_source="lsm", until="map3d", render=False, device="cpu",
    )  # fmt: skip
    tasks = cohort_graph(tiny_cohort, settings, gpu_tasks=True)
    by_key = {t.key: t for t in tasks}
    position = {t.key: i for i, t in enumerate(tasks)}
    lsm_keys = [k for k in by_key if k.startswith("lsm-")]
    trains = ["lsm-train/B01/hOc1/s0422-s0842", "lsm-train/B01/hOc1/s0842-s1142"]
    assert lsm_keys == ["lsm-plan/B01/hOc1", *trains, "lsm-predict/B01/hOc1"]
    assert by_key["lsm-plan/B01/hOc1"].dependencies() == ("check/B01",)
    for key, interval in zip(trains, ([422, 842], [842, 1142]), strict=True):
        task = by_key[key]
        assert task.dependencies() == ("lsm-plan/B01/hOc1",)
        assert task.kwargs["interval"] == interval and isinstance(task.kwargs["plan"], Ref)
        assert task.resources == {"GPU": 1}
        assert task.records == (f"B01/records/lsm-train@lsm-hr@hOc1@s{interval[0]:04d}-"
                                f"s{interval[1]:04d}.json",)  # fmt: skip
    assert set(by_key["lsm-predict/B01/hOc1"].dependencies()) == set(trains)
    assert by_key["lsm-predict/B01/hOc1"].resources is None
    # the 3D map of the area reads the LSM run's predictions
    assert set(by_key["map3d/B01/hOc1"].dependencies()) == {
        "build-graph/B01",
        "lsm-predict/B01/hOc1",
    }
    assert by_key["map3d/B01/hOc1"].kwargs["source"] == "lsm-hr"
    assert by_key["stats-table/B01"].kwargs["source"] == "lsm-hr"
    for t in tasks:
        assert all(position[d] < position[t.key] for d in t.dependencies())
    # the graph's random seed goes to the LSM run; making the graph wrote nothing
    assert by_key["lsm-plan/B01/hOc1"].kwargs["settings"]["seed"] == 0
    assert not [r for r in records(tiny_cohort) if "lsm-" in r]

    # until=lsm: the checks and the LSM tasks only; default settings: no LSM task at all
    keys = [t.key for t in cohort_graph(tiny_cohort, CohortSettings(
        brains=("B01",), lsm_areas=("hOc1",), lsm=TWO_INTERVALS, until="lsm"))]  # fmt: skip
    assert keys == ["check/B01", *lsm_keys]
    assert STEPS.index("check") < STEPS.index("lsm") < STEPS.index("build-graph")
    assert not [t for t in cohort_graph(tiny_cohort) if t.key.startswith("lsm-")]
    # a gsm run: one model; a phantom made by the graph: the intervals are not known yet
    gsm = cohort_graph(tiny_cohort, CohortSettings(brains=("B01",), lsm_areas=("hOc1",),
                       lsm={**TWO_INTERVALS, "name": "gsm-hr"}, until="lsm"))  # fmt: skip
    assert [t.key for t in gsm if t.key.startswith("lsm-train")] == ["lsm-train/B01/hOc1/global"]
    demo = cohort_graph(tiny_cohort.parent / "new", CohortSettings(
        synth_preset="tiny", lsm_areas=("hOc1",), lsm=TWO_INTERVALS, until="lsm"))  # fmt: skip
    assert {t.key for t in demo if t.key.startswith("lsm-train")} == {
        f"lsm-train/{b}/hOc1/all" for b in ("B01", "B03", "B07")
    }
    with pytest.raises(ParameterError, match="LSM run need its predictions of hOc2"):
        cohort_graph(tiny_cohort, CohortSettings(map3d_areas=("hOc2",), map3d_source="lsm",
                                                 lsm_areas=("hOc1",)))  # fmt: skip


@pytest.mark.slow
def test_lsm_tasks_write_what_lsm_chain_writes(copy_tiny):
    graph_root, chain_root = copy_tiny("graph"), copy_tiny("chain")
    settings = CohortSettings(
        brains=("B01",), lsm_areas=("hOc1",), lsm=ONE_INTERVAL, until="lsm", device="cpu"
    )
    tasks = cohort_graph(graph_root, settings)
    assert [t.key for t in tasks if t.key.startswith("lsm-train")] == [
        "lsm-train/B01/hOc1/s0422-s1142"
    ]
    engine = Engine(EngineOptions(workers=0))
    report = run_graph(tasks, engine, graph_root)
    assert report.ok, report.failed
    lsm = {k: r for k, r in report.results.items() if k.startswith("lsm-")}
    assert len(lsm) == 3 and all(r["reused"] is False for r in lsm.values())
    assert report.value("lsm-plan/B01/hOc1") == {
        "intervals": [[422, 1142]],
        "sections": [722, 782, 842],
    }
    assert [p.rsplit("/", 1)[1] for p in report.value("lsm-predict/B01/hOc1")] == [
        "s0722.h5", "s0782.h5", "s0842.h5"
    ]  # fmt: skip

    result = CliRunner().invoke(app, [
        "lsm", "chain", "B01", "--root", str(chain_root), "--area", "hOc1", "--arch", "hr",
        "--iterations", "6", "--step", "7", "--extent", "722,842", "--allow-long-intervals",
        "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    # same stage records (same keys) and the same files: plan, model, history, ROIs, predictions
    assert assert_same_outputs(graph_root, chain_root, only="lsm-") == 1 + 3 + 3

    # a second run of the graph reuses every LSM stage
    again = run_graph(tasks, engine, graph_root)
    assert again.ok and all(
        again.results[k]["reused"] is True for k in again.results if k.startswith("lsm-")
    )
    # and so does run-cohort with the same settings given as options
    result = CliRunner().invoke(app, [
        "run-cohort", "--root", str(graph_root), "--brains", "B01", "--until", "lsm",
        "--workers", "0", "--device", "cpu", "--lsm", "hOc1", "--lsm-arch", "hr",
        "--lsm-iterations", "6", "--lsm-step", "7", "--lsm-extent", "722,842",
        "--lsm-allow-long-intervals", "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    ran = json.loads(result.stdout[result.stdout.index("{") :])["tasks"]
    assert sorted(k for k in ran if k.startswith("lsm-")) == sorted(lsm)
    assert all(ran[k]["reused"] is True for k in lsm)
