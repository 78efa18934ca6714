"""Cohort, sections, image tiles and overlays over HTTP, on the tiny phantom."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cortexgraph.data.manifest import AreaTable, find_brain
from cortexgraph.data.raster import Raster


def test_cohort_lists_brains_and_areas(client, web_cohort):
    body = client.get("/api/cohort").json()
    assert body["brains"] == ["B01", "B03", "B07"]
    table = AreaTable.read(web_cohort / "areas.tsv")
    assert [(a["id"], a["name"], a["color"]) for a in body["areas"]] == [
        (a.id, a.name, a.color) for a in table.areas
    ]


def test_sections_in_stack_order_with_flags(client, web_cohort):
    brain = find_brain("B01", web_cohort)
    rows = client.get("/api/brains/B01/sections").json()["sections"]
    assert [r["section"] for r in rows] == [r.section for r in brain.sections]
    by = {r["section"]: r for r in rows}
    for record in brain.sections:
        row = by[record.section]
        assert row["missing"] == record.missing and row["mirrored"] == record.mirrored
        assert row["excluded"] == record.excluded
        assert row["annotated"] == (
            bool(record.annotation or record.contours) and not record.missing
        )
    assert by[542]["missing"] and by[122]["mirrored"]  # the phantom's flagged sections
    annotated = [r["section"] for r in rows if r["annotated"] and not r["excluded"]]
    tests = [r["section"] for r in rows if r["role"] == "test"]
    assert tests == annotated[4::5]  # every fifth annotated section is a GNN test section
    assert all(r["role"] == "train" for r in rows if r["annotated"] and r["section"] not in tests)


def test_image_tiles_come_from_the_pyramid(client, web_cohort):
    info = client.get("/api/brains/B01/sections/722/image").json()
    with Raster(web_cohort / "B01/images/s0722.h5") as raster:
        rows, cols = raster.shape[:2]
        level0 = raster.read_level(0)
        assert (info["height"], info["width"]) == (rows, cols)
        assert info["spacing_um"] == raster.spacing_um
        assert info["width_mm"] == cols * raster.spacing_um / 1000
    top = info["max_level"]
    response = client.get(f"/api/brains/B01/sections/722/image/{top}/1_1.jpg?v={info['version']}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert "immutable" in response.headers["cache-control"]  # the URL names the current file
    tile = np.asarray(Image.open(io.BytesIO(response.content)), dtype=float)
    assert tile.shape == (256, 256)
    assert np.abs(tile - level0[256:512, 256:512]).mean() < 4.0  # JPEG quality 85
    stale = client.get(f"/api/brains/B01/sections/722/image/{top}/1_1.jpg?v=old")
    assert stale.headers["cache-control"] == "no-cache"
    whole = client.get("/api/brains/B01/sections/722/image/0/0_0.jpg")
    assert Image.open(io.BytesIO(whole.content)).size == (1, 1)
    assert client.get(f"/api/brains/B01/sections/722/image/{top}/9_0.jpg").status_code == 400
    assert client.get(f"/api/brains/B01/sections/722/image/{top}/1-1.jpg").status_code == 400
    assert client.get("/api/brains/B01/sections/542/image").status_code == 404  # missing section
    assert client.get("/api/brains/B01/sections/9999/image").status_code == 404


def test_warm_tiles_come_from_the_cache(client):
    state = client.app.state.web
    url = "/api/brains/B01/sections/782/image/9/0_0.jpg"
    first = client.get(url).content
    hits = state.tiles.hits
    assert client.get(url).content == first
    assert state.tiles.hits == hits + 1


def test_overlays_with_legends_and_exact_label_colours(client, web_cohort):
    body = client.get("/api/brains/B01/sections/722/overlays").json()
    keys = [o["key"] for o in body["overlays"]]
    assert keys[:3] == ["mask", "annotation", "truth"]
    table = AreaTable.read(web_cohort / "areas.tsv")
    annotation = next(o for o in body["overlays"] if o["key"] == "annotation")
    with Raster(web_cohort / "B01/annotations/s0722.h5") as raster:
        labels = raster.read_level(0)
        ids = sorted(int(v) for v in np.unique(labels) if v > 0)
        assert [e["value"] for e in annotation["legend"]] == ids
        assert annotation["grid"]["spacing_um"] == raster.spacing_um
        top = annotation["grid"]["max_level"]
    png = client.get(f"/api/brains/B01/sections/722/overlays/annotation/{top}/0_0.png").content
    rgba = np.asarray(Image.open(io.BytesIO(png)))
    window = labels[:256, :256]
    for area_id in ids:
        colour = table.by_id[area_id].rgb
        np.testing.assert_array_equal(
            rgba[window == area_id][:, :3], np.tile(colour, ((window == area_id).sum(), 1))
        )
        assert (rgba[window == area_id][:, 3] == 255).all()
    assert (rgba[window == 0][:, 3] == 0).all()
    mask_png = client.get(f"/api/brains/B01/sections/722/overlays/mask/{top}/0_0.png").content
    assert np.asarray(Image.open(io.BytesIO(mask_png))).shape[2] == 4
    assert (
        client.get(f"/api/brains/B01/sections/722/overlays/..~x/{top}/0_0.png").status_code == 404
    )
    assert (
        client.get(f"/api/brains/B01/sections/722/overlays/labels~gnn-x/{top}/0_0.png").status_code
        == 404
    )
