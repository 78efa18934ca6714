"""Annotation save / conflict / history / restore over HTTP, and the validation of polygons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cortexgraph.data.annotations import rasterize_contours, read_contours
from cortexgraph.data.manifest import find_brain
from cortexgraph.data.raster import Raster
from tests.web.conftest import WRITE, make_client

URL = "/api/brains/B01/sections/{}/annotation"
HOC1 = 4
HOC2 = 11


def square(x0, y0, size, area_id=HOC1):
    ring = [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"area_id": area_id}}  # fmt: skip


def collection(*features):
    return {"type": "FeatureCollection", "features": list(features)}


def put(client, section, body, version, headers=None):
    return client.put(URL.format(section), content=json.dumps(body),
                      headers={"If-Match": version, **WRITE, **(headers or {})})  # fmt: skip


def test_new_annotation_is_written_registered_and_kept(client, web_cohort):
    before = client.get(URL.format(2)).json()
    assert before["version"] == "none" and before["geojson"]["features"] == []
    response = put(client, 2, collection(square(10.1, 10.1, 10.0)), before["version"])
    assert response.status_code == 200, response.text
    version = response.json()["version"]
    brain = find_brain("B01", web_cohort)
    record = brain.section(2)
    assert record.annotation == "annotations/s0002.h5"
    assert record.contours == "annotations/s0002.geojson"
    features = read_contours(brain.path(record.contours))
    assert len(features) == 1 and features[0]["properties"] == {"area_id": HOC1, "name": "hOc1"}
    with Raster(brain.path(record.annotation)) as raster:
        labels, spacing = raster.read_level(0), raster.spacing_um
        assert spacing == brain.annotation_spacing_um
    with Raster(brain.path(record.mask)) as mask:
        width_mm, height_mm = mask.extent_mm
    assert labels.shape == (round(height_mm * 1000 / spacing), round(width_mm * 1000 / spacing))
    np.testing.assert_array_equal(labels, rasterize_contours(features, labels.shape, spacing))
    centres_mm = (np.arange(max(labels.shape)) + 0.5) * spacing / 1000  # pixels inside the square
    across = int(((centres_mm > 10.1) & (centres_mm < 20.1)).sum())  # no centre on its edges
    assert (labels == HOC1).sum() == across**2
    assert set(np.unique(labels)) == {0, HOC1}
    after = client.get(URL.format(2))
    assert after.json()["version"] == version and after.headers["etag"] == f'"{version}"'
    history = client.get(URL.format(2) + "/history").json()["versions"]
    assert [v["id"] for v in history] == ["v0001"] and history[0]["version"] == version
    sections = client.get("/api/brains/B01/sections").json()["sections"]
    assert next(r for r in sections if r["section"] == 2)["annotated"]


def test_stale_version_is_a_conflict_and_writes_nothing(client, web_cohort):
    brain = find_brain("B01", web_cohort)
    current = client.get(URL.format(722)).json()
    original = current["geojson"]
    first = put(client, 722, original, current["version"])  # tab 1 saves (same polygons)
    assert first.status_code == 200
    files = (brain.path("annotations/s0722.geojson"), brain.path("annotations/s0722.h5"))
    saved = [p.read_bytes() for p in files]
    edited = collection(*original["features"][:-1])  # tab 2 deletes a polygon, from the old version
    second = put(client, 722, edited, current["version"])
    assert second.status_code == 409
    body = second.json()
    assert "changed since you loaded it" in body["error"]
    assert body["current_version"] == first.json()["version"]
    assert [p.read_bytes() for p in files] == saved
    assert put(client, 722, edited, "").status_code == 409


def test_history_and_restore_survive_a_restart(client, web_cohort):
    brain = find_brain("B01", web_cohort)
    label_file = brain.path("annotations/s0782.h5")
    original_label = label_file.read_bytes()
    original = client.get(URL.format(782)).json()
    trimmed = collection(*original["geojson"]["features"][1:])
    saved = put(client, 782, trimmed, original["version"]).json()
    versions = client.get(URL.format(782) + "/history").json()["versions"]
    assert [v["origin"] for v in versions] == ["before web edit", "web edit"]
    assert versions[0]["version"] == original["version"]
    assert versions[1]["features"] == len(trimmed["features"])
    with make_client(web_cohort) as restarted:  # a new app: the history is on disk
        response = restarted.post(URL.format(782) + "/restore", json={"id": "v0001"},
                                  headers={"If-Match": saved["version"], **WRITE})  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json()["version"] == original["version"]  # the same bytes again
        assert label_file.read_bytes() == original_label
        assert restarted.get(URL.format(782) + "/history").json()["versions"][-1]["origin"] == (
            "restored v0001"
        )
        missing = restarted.post(URL.format(782) + "/restore", json={"id": "v0099"},
                                 headers={"If-Match": original["version"], **WRITE})  # fmt: skip
        assert missing.status_code == 404


BOWTIE = {"type": "Feature", "properties": {"area_id": HOC1}, "geometry": {
    "type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (collection(BOWTIE), 422, "invalid polygon"),
        (collection(square(5, 5, 5, area_id=999)), 422, "not an area of areas.tsv"),
        (collection(square(5, 5, 5), square(7, 7, 5, area_id=HOC2)), 422, "overlap"),
        (collection(square(500, 5, 5)), 422, "outside the section"),
        ({"type": "Feature"}, 422, "FeatureCollection"),
        (collection(square(5, 5, 5, area_id="x")), 422, "area_id"),
        (
            collection(
                {
                    "type": "Feature",
                    "properties": {"area_id": HOC1},
                    "geometry": {"type": "Point", "coordinates": [1, 2]},
                }
            ),
            422,
            "Point",
        ),
    ],
)
def test_invalid_polygons_are_refused(client, web_cohort, body, status, text):
    version = client.get(URL.format(902)).json()["version"]
    before = (web_cohort / "B01/annotations/s0902.geojson").read_bytes()
    response = put(client, 902, body, version)
    assert response.status_code == status
    assert text in response.text
    assert (web_cohort / "B01/annotations/s0902.geojson").read_bytes() == before


def test_size_limits(web_cohort):
    with make_client(web_cohort, max_body_bytes=50_000) as small:
        version = small.get(URL.format(962)).json()["version"]
        ring = [[10 + 5 * np.cos(a), 10 + 5 * np.sin(a)] for a in np.linspace(0, 6.28, 4000)]
        big = collection({"type": "Feature", "properties": {"area_id": HOC1},
                          "geometry": {"type": "Polygon", "coordinates": [ring]}})  # fmt: skip
        assert put(small, 962, big, version).status_code == 413
        assert (
            small.put(
                URL.format(962), content=b"{not json", headers={"If-Match": version, **WRITE}
            ).status_code
            == 422
        )
