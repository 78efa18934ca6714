"""3D inspection over HTTP: midsurface colours from node arrays, 3D area maps and their statistics;
and the stage status after an annotation edit."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import trimesh

from cortexgraph.data.colors import CORRECT_RGB, WRONG_RGB, colour_classes
from cortexgraph.data.manifest import AreaTable
from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.external import record_external
from cortexgraph.meshes.io import write_gifti_surface
from tests.web.conftest import WRITE, copy_cohort, make_client, sphere_graph


def decode(payload: dict):
    def arr(name, dtype):
        return np.frombuffer(base64.b64decode(payload[name]), dtype=dtype)

    return (arr("positions", "<f4").reshape(-1, 3), arr("faces", "<u4").reshape(-1, 3),
            arr("colours", np.uint8).reshape(-1, 4))  # fmt: skip


@pytest.fixture(scope="module")
def sphere(tiny_cohort, tmp_path_factory):
    root = copy_cohort(tiny_cohort, tmp_path_factory.mktemp("3d") / "tiny")
    arrays = sphere_graph(root)
    with make_client(root) as client:
        yield root, client, arrays


def test_surfaces_list_what_exists(client, sphere):
    assert client.get("/api/brains/B01/surfaces").json()["hemispheres"] == []  # no build-graph
    _, with_graph, _ = sphere
    body = with_graph.get("/api/brains/B01/surfaces").json()
    assert body == {"hemispheres": ["lh"], "colourings": ["none", "y", "pred", "errors"],
                    "runs": ["r1"]}  # fmt: skip


def test_midsurface_colours_are_the_node_classes(sphere):
    root, client, arrays = sphere
    areas = AreaTable.read(root / "areas.tsv")
    for colour, expected in (("y", colour_classes(arrays["y"], areas)),
                             ("pred", colour_classes(arrays["pred"], areas))):  # fmt: skip
        payload = client.get(
            "/api/brains/B01/surfaces/lh", params={"colour": colour, "run": "r1"}
        ).json()
        positions, faces, rgba = decode(payload)
        np.testing.assert_allclose(positions, arrays["vertices"], atol=1e-4)
        np.testing.assert_array_equal(faces, arrays["faces"])
        np.testing.assert_array_equal(rgba[:, :3], expected)
        assert (rgba[:, 3] == 255).all()
    errors = client.get(
        "/api/brains/B01/surfaces/lh", params={"colour": "errors", "run": "r1"}
    ).json()
    _, _, rgba = decode(errors)
    known = arrays["y"] >= 0
    right = known & (arrays["y"] == arrays["pred"])
    wrong = known & (arrays["y"] != arrays["pred"])
    assert right.any() and wrong.any()
    assert (rgba[right, :3] == CORRECT_RGB).all() and (rgba[wrong, :3] == WRONG_RGB).all()
    assert errors["summary"]["accuracy"] == pytest.approx(right.sum() / known.sum())
    names = [e["name"] for e in errors["legend"]]  # the render module's legend, as on the pictures
    assert names[0].startswith("correct") and names[1].startswith("wrong")
    assert "not annotated" in names
    assert client.get("/api/brains/B01/surfaces/lh", params={"colour": "pred"}).status_code == 400
    assert client.get("/api/brains/B01/surfaces/xx").status_code == 404


def test_area_map_and_statistics(sphere):
    root, client, _ = sphere
    store = Derivatives(root)
    folder = store.root / "B01" / "maps3d" / "annotation"
    blob = trimesh.creation.icosphere(subdivisions=2, radius=5.0)
    surface = write_gifti_surface(
        folder / "hOc1.gii", np.asarray(blob.vertices), np.asarray(blob.faces)
    )
    map_id = StageId("map3d", "B01", ("annotation", "hOc1"))
    record_external(store, map_id, [surface], {"source": "test mesh"})
    stats = folder / "hOc1_stats.tsv"
    stats.write_text("area\themisphere\tvolume_mm3\nhOc1\tlh\t523.6\n")
    record_external(store, StageId("stats", "B01", ("annotation", "hOc1")), [stats],
                    {"source": "test table"}, upstream=[map_id])  # fmt: skip
    assert client.get("/api/brains/B01/maps3d").json()["maps"] == [
        {"source": "annotation", "area": "hOc1", "has_stats": True}
    ]
    payload = client.get("/api/brains/B01/maps3d/annotation/hOc1").json()
    positions, faces, rgba = decode(payload)
    assert len(positions) == len(blob.vertices) and len(faces) == len(blob.faces)
    assert tuple(rgba[0, :3]) == AreaTable.read(root / "areas.tsv").by_name["hOc1"].rgb
    assert payload["stats"] == [{"area": "hOc1", "hemisphere": "lh", "volume_mm3": "523.6"}]
    assert payload["map_stale"] is False
    assert client.get("/api/brains/B01/maps3d/annotation/hOc2").status_code == 404


def test_annotation_edit_makes_dependent_stages_stale(sphere):
    root, client, _ = sphere
    store = Derivatives(root)
    annotation = root / "B01" / "annotations" / "s0722.h5"
    # a stage that read the annotation of section 722 (as node-labels does)
    record_external(store, StageId("node-labels", "B01"),
                    [store.root / "B01/features/labels/lh.h5"], {"source": "sphere"},
                    inputs=[annotation], upstream=[StageId("build-graph", "B01")])  # fmt: skip
    before = client.get("/api/brains/B01/status").json()
    state = {s["label"]: s for s in before["stages"]}
    assert state["B01/node-labels"]["state"] == "done"
    current = client.get("/api/brains/B01/sections/722/annotation").json()
    body = {"type": "FeatureCollection", "features": current["geojson"]["features"][:-1]}
    saved = client.put("/api/brains/B01/sections/722/annotation", content=json.dumps(body),
                       headers={"If-Match": current["version"], **WRITE})  # fmt: skip
    assert saved.status_code == 200
    after = {s["label"]: s for s in client.get("/api/brains/B01/status").json()["stages"]}
    assert after["B01/node-labels"]["state"] == "stale"
    assert any("s0722.h5" in reason for reason in after["B01/node-labels"]["reasons"])
    assert after["B01/node-labels"]["command"] == "cortexgraph features B01"
