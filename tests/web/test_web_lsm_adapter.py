"""The web app's view of a local-model job's predictions (``lsm_adapter.job_predictions``): the
sections come from the job's own progress and the run's plan, never from file times, so another
job's file is not counted and a prediction the job kept is."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from cortexgraph.data.manifest import find_brain
from cortexgraph.data.raster import write_raster
from cortexgraph.lsm import layout
from cortexgraph.lsm.plan import ChainPlan
from cortexgraph.web import lsm_adapter
from tests.web.conftest import copy_cohort

HOC1 = 4
SOURCE = "lsm-hr-s0602-s0842"
PLAN_SECTIONS = (602, 662, 722, 782, 842)  # the predict stage's order


@pytest.fixture()
def brain(tiny_cohort, tmp_path):
    root = copy_cohort(tiny_cohort, tmp_path / "tiny")
    brain = find_brain("B01", root)
    area = brain.cohort.areas.resolve(HOC1)
    plan = ChainPlan(
        area_id=HOC1,
        annotated=(602, 842),
        intervals=((602, 842),),
        tests=((),),
        sections=PLAN_SECTIONS,
        extent=(602, 842),
    )
    path = layout.plan_path(brain.derivatives, SOURCE, area)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(plan.to_dict()), encoding="utf-8")
    return brain


def _predict(brain, section: int, mtime: float | None = None) -> None:
    area = brain.cohort.areas.resolve(HOC1)
    out = layout.prediction_path(brain.derivatives, SOURCE, area, section)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_raster(out, np.zeros((8, 8), np.uint8), 100.0, kind="labels")
    if mtime is not None:
        os.utime(out, (mtime, mtime))


def _job(state: str, progress: dict, created_unix: float) -> dict:
    return {"state": state, "progress": progress, "created_unix": created_unix}


TARGET = {"source": SOURCE, "area_id": HOC1, "interval": [602, 842]}


def test_a_running_job_lists_the_plan_sections_its_predict_stage_has_done(brain):
    now = time.time()
    for section in PLAN_SECTIONS:  # every file is there, written "now" (by this or another job)
        _predict(brain, section)
    # still training: none is this job's yet, though the files are newer than the job
    assert (
        lsm_adapter.job_predictions(brain, _job("running", {"train": [5, 60]}, now - 5), TARGET)
        == []
    )
    # predict 3/5: plan sections 602, 662, 722 done; the interval's ends are not listed
    running = _job("running", {"train": [60, 60], "predict": [3, 5]}, now - 5)
    assert lsm_adapter.job_predictions(brain, running, TARGET) == [662, 722]
    done = _job("done", {"train": [60, 60], "predict": [5, 5]}, now - 5)
    assert lsm_adapter.job_predictions(brain, done, TARGET) == [662, 722, 782]


def test_kept_predictions_count_and_a_missing_file_does_not(brain):
    now = time.time()
    long_ago = now - 3600.0
    for section in (662, 722):  # kept by the job: unchanged, older than it
        _predict(brain, section, mtime=long_ago)
    job = _job("done", {"predict": [5, 5]}, now)
    assert lsm_adapter.job_predictions(brain, job, TARGET) == [662, 722]
    # a job that reused its whole predict stage reports no predict progress; done, it lists them
    assert lsm_adapter.job_predictions(brain, _job("done", {}, now), TARGET) == [662, 722]
    # failed or cancelled without predicting: nothing
    assert lsm_adapter.job_predictions(brain, _job("failed", {}, now), TARGET) == []


def test_no_plan_or_no_interval_lists_nothing(brain):
    area = brain.cohort.areas.resolve(HOC1)
    layout.plan_path(brain.derivatives, SOURCE, area).unlink()
    _predict(brain, 662)
    assert lsm_adapter.job_predictions(brain, _job("done", {"predict": [5, 5]}, 0.0), TARGET) == []
    chain = {"source": "lsm-ms", "area_id": HOC1, "interval": None}
    assert lsm_adapter.job_predictions(brain, _job("done", {"predict": [5, 5]}, 0.0), chain) == []
