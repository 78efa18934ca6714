"""Local-model jobs from the browser's API: start, progress, predictions section by section, accept,
reject, cancel; the same jobs as ``cortexgraph jobs`` and ``cortexgraph lsm jobs`` (jobs of the
cohort's local engine, which the app starts and stops with it)."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cortexgraph.data.annotations import rasterize_contours, read_contours
from cortexgraph.data.manifest import find_brain
from cortexgraph.data.raster import Raster
from tests.web.conftest import WRITE

HOC1 = 4
pytestmark = pytest.mark.slow
pytest.importorskip("distributed", reason="jobs run on the local engine: the [web] extra's Dask")


def wait_for(client, job_id, states=("done", "failed", "cancelled"), timeout_s=240.0):
    seen = []
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/api/brains/B01/jobs/{job_id}").json()
        if job["predicted_sections"] and job["predicted_sections"] not in seen:
            seen.append(list(job["predicted_sections"]))
        if job["state"] in states:
            return job, seen
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def test_interval_job_predicts_and_predictions_are_reviewed(client, web_cohort):
    bad = client.post("/api/brains/B01/jobs", json={"area": HOC1, "sections": [602, 662]},
                      headers=WRITE)  # fmt: skip
    assert bad.status_code == 422 and "no annotation of hOc1" in bad.json()["error"]
    assert client.post("/api/brains/B01/jobs", json={"area": HOC1, "sections": [602, 602]},
                       headers=WRITE).status_code == 422  # fmt: skip
    assert client.post("/api/brains/B01/jobs", json={"area": HOC1, "sections": [602, 842],
                       "iterations": -3}, headers=WRITE).status_code == 422  # fmt: skip

    started = client.post("/api/brains/B01/jobs", json={"area": HOC1, "sections": [602, 842]},
                          headers=WRITE)  # fmt: skip
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    assert started.json()["target"] == {"source": "lsm-hr-s0602-s0842", "area_id": HOC1, "interval": [602, 842]}
    job, seen = wait_for(client, job_id)
    assert job["state"] == "done", job["log_tail"]
    assert job["predicted_sections"] == [662, 722, 782]  # every section strictly between
    assert all(a == sorted(a) for a in seen) and seen[-1] == [662, 722, 782]
    assert job["progress"]["train"][0] == job["progress"]["train"][1] == 60

    # the same job as the shell's
    from cortexgraph.cli.main import app

    listed = CliRunner().invoke(
        app, ["lsm", "jobs", "list", "B01", "--root", str(web_cohort), "--json"]
    )
    assert listed.exit_code == 0 and job_id in [j["id"] for j in json.loads(listed.stdout)]
    everything = CliRunner().invoke(app, ["jobs", "list", "--root", str(web_cohort), "--json"])
    assert everything.exit_code == 0, everything.output
    assert job_id in [j["id"] for j in json.loads(everything.stdout)]
    assert (web_cohort / "derivatives/cortexgraph/jobs" / job_id / "result.json").is_file()
    assert job_id in [j["id"] for j in client.get("/api/brains/B01/jobs").json()["jobs"]]

    # the prediction overlay: class 3 in the area's colour
    overlays = client.get("/api/brains/B01/sections/662/overlays").json()["overlays"]
    pred = next(o for o in overlays if o["key"] == "pred~lsm-hr-s0602-s0842~4")
    prediction_file = web_cohort / "derivatives/cortexgraph/B01/lsm/lsm-hr-s0602-s0842/hOc1/pred/s0662.h5"
    with Raster(prediction_file) as raster:
        classes, spacing = raster.read_level(0), raster.spacing_um
    top = pred["grid"]["max_level"]
    row, col = np.argwhere(classes == 3)[0] // 256  # a tile that shows the area
    tile = f"/api/brains/B01/sections/662/overlays/pred~lsm-hr-s0602-s0842~4/{top}/{col}_{row}.png"
    rgba = np.asarray(Image.open(io.BytesIO(client.get(tile).content)))
    window = classes[row * 256 : row * 256 + rgba.shape[0], col * 256 : col * 256 + rgba.shape[1]]
    area_colour = tuple(int(pred["legend"][0]["color"][i : i + 2], 16) for i in (1, 3, 5))
    assert (window == 3).any()
    assert (rgba[window == 3][:, :3] == area_colour).all()
    assert (rgba[window == 255][:, 3] == 0).all()
    listing = client.get("/api/brains/B01/predictions").json()["predictions"]
    assert {"source": "lsm-hr-s0602-s0842", "area_id": HOC1} == {
        k: listing[0][k] for k in ("source", "area_id")
    }

    # accept: the prediction becomes section 662's annotation of hOc1, other areas untouched
    brain = find_brain("B01", web_cohort)
    before = read_contours(brain.path(brain.section(662).contours))
    assert not any(f["properties"]["area_id"] == HOC1 for f in before)
    version = client.get("/api/brains/B01/sections/662/annotation").json()["version"]
    url = "/api/brains/B01/sections/662/predictions/lsm-hr-s0602-s0842/4"
    stale = client.post(url + "/accept", headers={"If-Match": "old", **WRITE})
    assert stale.status_code == 409
    accepted = client.post(url + "/accept", headers={"If-Match": version, **WRITE})
    assert accepted.status_code == 200, accepted.text
    after = read_contours(brain.path(find_brain("B01", web_cohort).section(662).contours))
    assert [f for f in after if f["properties"]["area_id"] != HOC1] == [
        f | {"properties": {"area_id": f["properties"]["area_id"], "name": f["properties"]["name"]}}
        for f in before
    ]
    drawn = rasterize_contours([f for f in after if f["properties"]["area_id"] == HOC1],
                               classes.shape, spacing) == HOC1  # fmt: skip
    others = rasterize_contours(before, classes.shape, spacing) > 0
    predicted = (classes == 3) & ~others
    iou = (drawn & predicted).sum() / (drawn | predicted).sum()
    assert iou > 0.9, iou  # simplified by half a pixel and cut at the other areas
    assert client.post("/api/brains/B01/sections/782/predictions/lsm-hr-s0602-s0842/4/reject",
                       headers=WRITE).status_code == 200  # fmt: skip
    review = client.get("/api/brains/B01/predictions").json()["predictions"][0]["review"]
    assert review == {"662": "accepted", "782": "rejected"}
    history = client.get("/api/brains/B01/sections/662/annotation/history").json()["versions"]
    assert history[-1]["origin"] == "accepted prediction lsm-hr-s0602-s0842"

    # the next interval of the chain starts where this one ended
    nxt = client.get("/api/brains/B01/intervals", params={"area": "hOc1", "after": 842}).json()
    assert nxt["interval"] == [842, 962]


def test_cancel_stops_a_training_job(client, web_cohort):
    started = client.post("/api/brains/B01/jobs", headers=WRITE,
                          json={"area": HOC1, "sections": [842, 962], "iterations": 100000})  # fmt: skip
    job_id = started.json()["id"]
    job, _ = wait_for(client, job_id, states=("running", "done", "failed"), timeout_s=120)
    assert job["state"] == "running"
    deadline = time.monotonic() + 60  # wait until it trains (imports take a few seconds)
    while "train" not in client.get(f"/api/brains/B01/jobs/{job_id}").json()["progress"]:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    cancelled = client.post(f"/api/brains/B01/jobs/{job_id}/cancel", headers=WRITE).json()
    assert cancelled["state"] == "cancelled" and cancelled["finished_unix"]
    assert client.get(f"/api/brains/B01/jobs/{job_id}").json()["state"] == "cancelled"
    assert client.get("/api/brains/B01/jobs/nope").status_code == 404
    model = web_cohort / "derivatives/cortexgraph/B01/lsm/lsm-hr-s0842-s0962/hOc1/models/s0842-s0962/model.pt"
    assert not model.exists()
    assert not (web_cohort / "derivatives/cortexgraph/B01/lsm/lsm-hr-s0842-s0962/hOc1/pred/s0902.h5").exists()


def test_an_interval_longer_than_the_protocol_is_refused_with_the_section_to_annotate(web_cohort):
    """The tiny phantom's B01 annotations of hOc1 at sections 602 and 842 lie 4.8 mm apart (20 um
    sections); at the published limit of 2.4 mm the job is refused before anything starts, and the
    message names both sections, the midway section to annotate and the server option."""
    from tests.web.conftest import make_client

    with make_client(web_cohort, job_defaults={"max_interval_mm": 2.4}) as strict:
        refused = strict.post("/api/brains/B01/jobs", json={"area": HOC1, "sections": [602, 842]},
                              headers=WRITE)  # fmt: skip
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert "602" in error and "842" in error and "4.80 mm" in error and "2.4 mm" in error
        assert "about 722" in error and "--max-interval-mm" in error
        before = {job["id"] for job in strict.get("/api/brains/B01/jobs").json()["jobs"]}
        strict.post("/api/brains/B01/jobs", json={"area": HOC1, "sections": [602, 842]},
                    headers=WRITE)  # fmt: skip
        after = {job["id"] for job in strict.get("/api/brains/B01/jobs").json()["jobs"]}
        assert after == before  # nothing was started


def test_the_engine_the_app_started_stops_with_it(tiny_cohort, tmp_path):
    """No job outlives the server it was started from: leaving the app (its shutdown) stops the
    engine it started, which cancels the running job cleanly."""
    from cortexgraph.execution.guard import pid_alive
    from cortexgraph.execution.service import service_record
    from tests.web.conftest import copy_cohort, make_client

    root = copy_cohort(tiny_cohort, tmp_path / "tiny")
    with make_client(root) as app_client:
        started = app_client.post("/api/brains/B01/jobs", headers=WRITE,
                                  json={"area": HOC1, "sections": [842, 962], "iterations": 100000})  # fmt: skip
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        job, _ = wait_for(app_client, job_id, states=("running", "done", "failed"), timeout_s=120)
        assert job["state"] == "running"
        engine = service_record(root)
        assert engine["owner"]["pid"] == os.getpid()  # owned by the server's process
    assert not pid_alive(engine["pid"]) and not service_record(root)
    result = json.loads((root / "derivatives/cortexgraph/jobs" / job_id / "result.json").read_text())
    assert result["state"] == "cancelled"
    brain_out = root / "derivatives/cortexgraph/B01"
    assert [p for p in brain_out.rglob(".*") if p.is_file()] == []  # nothing half-written
