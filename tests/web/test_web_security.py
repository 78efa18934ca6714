"""Safe by default: token, host names, cross-site writes, names and paths inside the cohort."""

from __future__ import annotations

import json

import pytest

from cortexgraph.data.manifest import find_brain
from tests.web.conftest import WRITE, copy_cohort, make_client


@pytest.fixture(scope="module")
def cohort(tiny_cohort, tmp_path_factory):
    return copy_cohort(tiny_cohort, tmp_path_factory.mktemp("sec") / "tiny")


def test_token_is_needed_on_every_request(cohort):
    with make_client(cohort, token="s3cret") as client:
        assert client.get("/api/cohort").status_code == 401
        assert client.get("/").status_code == 401
        assert (
            client.get("/api/cohort", headers={"X-Cortexgraph-Token": "wrong"}).status_code == 401
        )
        assert (
            client.get("/api/cohort", headers={"X-Cortexgraph-Token": "s3cret"}).status_code == 200
        )
        assert (
            client.get("/api/cohort", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        )
        first = client.get("/?token=s3cret")  # the printed address: sets a cookie
        assert first.status_code == 200
        assert "cortexgraph_token=s3cret" in first.headers["set-cookie"]
        assert "HttpOnly" in first.headers["set-cookie"]
        assert client.get("/api/cohort").status_code == 200  # the cookie is sent back
        # with a token, any host name may be used (the app was bound to a network address)
        other = client.get("http://10.1.2.3/api/cohort", headers={"X-Cortexgraph-Token": "s3cret"})
        assert other.status_code == 200


def test_without_token_only_loopback_names(client):
    assert client.get("http://127.0.0.1/api/cohort").status_code == 200
    assert client.get("http://localhost:8765/api/cohort").status_code == 200
    assert client.get("http://evil.example/api/cohort").status_code == 421  # DNS rebinding


def test_cross_site_writes_are_refused(client):
    url = "/api/brains/B01/sections/722/annotation/restore"
    body = json.dumps({"id": "v0001"})
    plain = client.post(url, content=body, headers={"If-Match": "x"})
    assert plain.status_code == 403 and "x-requested-with" in plain.text
    foreign = client.post(url, content=body,
                          headers={"If-Match": "x", "Origin": "http://evil.example", **WRITE})  # fmt: skip
    assert foreign.status_code == 403
    own = client.post(url, content=body,
                      headers={"If-Match": "x", "Origin": "http://127.0.0.1", **WRITE})  # fmt: skip
    assert own.status_code == 404  # passed the checks; no such version


def test_names_are_checked(client):
    for url in (
        "/api/brains/..%2F..%2Fetc/sections",
        "/api/brains/B09/sections",
        "/api/brains/-rf/sections",
        "/api/brains/B01/jobs/..%2F..%2Fx",
        "/api/brains/B01/jobs/no-such-job",
        "/api/brains/B01/maps3d/..%2Fx/hOc1",
    ):
        response = client.get(url)
        assert response.status_code in (400, 404), (url, response.status_code)
        assert "etc" not in response.text or "not a valid name" in response.text


def test_manifest_paths_outside_the_brain_are_refused(cohort, tmp_path):
    outside = tmp_path / "secret.h5"
    outside.write_bytes(b"not for you")
    brain = find_brain("B01", cohort)
    rows = brain.sections
    from dataclasses import replace

    brain.write_sections(
        [replace(r, image="../../../" + str(outside)) if r.section == 62 else r for r in rows] + []
    )
    (cohort / "B01" / "images" / "link.h5").symlink_to(outside)
    brain.write_sections(
        [replace(r, image="images/link.h5") if r.section == 122 else r for r in brain.sections]
    )
    with make_client(cohort) as client:
        for section in (62, 122):
            response = client.get(f"/api/brains/B01/sections/{section}/image")
            assert response.status_code == 400
            assert "outside" in response.json()["error"]
            assert "not for you" not in response.text
