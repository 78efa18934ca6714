"""Fixtures of the web app's tests: a writable copy of the tiny phantom, an app client, a live server
and a real headless browser (Chromium from the system's packages, driven by Playwright).

Browser tests skip with the reason when Playwright, Chromium or the page's JavaScript libraries
(``make web``) are missing; with ``CORTEXGRAPH_REQUIRE_BROWSER=1`` (set by ``.ci/run``) they fail
instead, so CI cannot pass without running them.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web app needs the [web] extra (fastapi, uvicorn)")

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = ["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]
#: local models in the tests: the HR U-Net of the phantom preset, 60 iterations (8 s on 2 cores; it
#: then predicts the area, which 6 iterations do not)
#: The tiny phantom's annotated sections lie up to 4.8 mm apart (the published protocol: 2.4 mm).
FAST_JOB = {"arch": "hr", "preset": "auto", "iterations": 60, "seed": 0, "max_interval_mm": 6.0}


def copy_cohort(source: Path, target: Path) -> Path:
    """A writable copy of a cohort without its derivatives."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("derivatives"))
    return target


@pytest.fixture(scope="module")
def web_cohort(tiny_cohort, tmp_path_factory) -> Path:
    """A copy of the tiny phantom that the module's tests may write into."""
    return copy_cohort(tiny_cohort, tmp_path_factory.mktemp("web") / "tiny")


def make_client(root: Path, token: str | None = None, **settings):
    from fastapi.testclient import TestClient

    from cortexgraph.web.app import create_app
    from cortexgraph.web.state import WebSettings

    job_defaults = dict(FAST_JOB, **settings.pop("job_defaults", {}))
    app = create_app(
        root, token=token, settings=WebSettings(root=root, job_defaults=job_defaults, **settings)
    )
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def client(web_cohort):
    with make_client(web_cohort) as test_client:
        yield test_client


WRITE = {"X-Requested-With": "cortexgraph"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app served by uvicorn in a thread on 127.0.0.1 (a real HTTP server for the browser)."""

    def __init__(self, root: Path, **settings) -> None:
        import uvicorn

        from cortexgraph.web.app import create_app
        from cortexgraph.web.state import WebSettings

        job_defaults = dict(FAST_JOB, **settings.pop("job_defaults", {}))
        self.app = create_app(root, settings=WebSettings(root=root, job_defaults=job_defaults))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _browser_missing() -> str | None:
    from cortexgraph.web.app import missing_vendor_files

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not any(Path(p).is_file() for p in CHROMIUM_CANDIDATES):
        return "no Chromium (apt-get install chromium)"
    missing = missing_vendor_files()
    if missing:
        return f"the page's JavaScript libraries are not installed (make web): {missing}"
    return None


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (system package) driven by Playwright."""
    reason = _browser_missing()
    if reason:
        if os.environ.get("CORTEXGRAPH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (CORTEXGRAPH_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    executable = next(p for p in CHROMIUM_CANDIDATES if Path(p).is_file())
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def sphere_graph(root: Path, brain_id: str = "B01") -> dict:
    """Record a sphere as the build-graph of ``brain_id`` with node labels ``y`` and a model run
    ``r1``'s predictions (the way a lab brings its own meshes: record_external), so the 3D views can
    be checked against known per-vertex classes. Returns the arrays written."""
    import trimesh

    from cortexgraph.data.manifest import Cohort
    from cortexgraph.derivatives import Derivatives, StageId
    from cortexgraph.derivatives.external import record_external
    from cortexgraph.derivatives.layout import node_labels_path, prediction_path, write_node_arrays
    from cortexgraph.meshes.graph import save_graph_h5

    cohort = Cohort.read(root)
    k = len(cohort.areas)
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=20.0)
    vertices = np.asarray(sphere.vertices) + np.array([-30.0, -80.0, 10.0])
    faces = np.asarray(sphere.faces)
    n = len(vertices)
    pred = np.where(vertices[:, 1] < -80.0, 3, 10)  # class 3 = hOc1 (id 4), class 10 = hOc2 (id 11)
    y = np.full(n, -1)
    stripe = np.abs(vertices[:, 2] - 10.0) < 4.0
    y[stripe] = pred[stripe]
    y[stripe & (vertices[:, 1] > -70)] = 0  # Occ1 where the prediction says hOc2: errors
    proba = np.full((n, k), 0.01, np.float32)
    proba[np.arange(n), pred] = 0.9
    store = Derivatives(root)
    graph = save_graph_h5(store.root / brain_id / "graph" / "lh.h5", vertices, faces)
    graph_id = StageId("build-graph", brain_id)
    key = record_external(store, graph_id, [graph], {"source": "sphere"}).key
    labels = write_node_arrays(
        node_labels_path(store.root, brain_id, "lh"), key, n,
        y=y, train_mask=y >= 0, test_mask=np.zeros(n, bool),
    )  # fmt: skip
    record_external(store, StageId("node-labels", brain_id), [labels], {"source": "sphere"},
                    upstream=[graph_id])  # fmt: skip
    predicted = write_node_arrays(
        prediction_path(store.root, brain_id, "r1", "lh"), key, n, proba=proba, pred=pred
    )
    record_external(store, StageId("predict", brain_id, ("r1",)), [predicted],
                    {"source": "sphere"}, upstream=[graph_id])  # fmt: skip
    config = store.root / "runs" / "r1" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('{"source": "sphere"}')
    record_external(store, StageId("train-gnn", None, ("r1",)), [config], {"source": "sphere"})
    return {"vertices": vertices, "faces": faces, "y": y, "pred": pred}
