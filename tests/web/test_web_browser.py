"""End to end in a real headless browser (Chromium, system package, driven by Playwright): page
through sections, draw and save a polygon, see a conflict, train a local model and accept its
prediction, look at a midsurface in 3D. Screenshots go to ``$CORTEXGRAPH_SCREENSHOTS`` (the pictures
of docs/web-app.md: ``CORTEXGRAPH_SCREENSHOTS=docs/img pytest tests/web/test_web_browser.py``) or to
the test's temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cortexgraph.data.annotations import rasterize_contours, read_contours
from cortexgraph.data.manifest import find_brain
from cortexgraph.data.raster import Raster
from tests.web.conftest import LiveServer, copy_cohort, sphere_graph

pytestmark = pytest.mark.slow
HOC1 = 4
VIEWPORT = {"width": 1400, "height": 860}


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("CORTEXGRAPH_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def live(tiny_cohort, tmp_path_factory):
    root = copy_cohort(tiny_cohort, tmp_path_factory.mktemp("e2e") / "tiny")
    with LiveServer(root) as server:
        server.root = root
        yield server


def shot(page, folder: Path, name: str) -> Path:
    path = folder / f"web-{name}.png"
    page.screenshot(path=str(path))
    from PIL import Image

    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape[:2] == (VIEWPORT["height"], VIEWPORT["width"])
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 50  # a rendered page, not a blank one
    return path


def open_page(browser, url: str):
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_function(
        "window.cortexgraph && window.cortexgraph.annotation !== null", timeout=30000
    )
    return page, errors


def wait_loaded(page, section: int) -> None:
    page.wait_for_function(
        f"window.cortexgraph.annotation && window.cortexgraph.annotation.section === {section}"
        " && window.cortexgraph.viewer.world.getItemCount() > 0"
        " && window.cortexgraph.viewer.world.getItemAt(0).getFullyLoaded()",
        timeout=30000,
    )


def free_square(brain, section: int) -> tuple[float, float, float]:
    """(x_mm, y_mm, half_mm): a square of white matter with no annotation, for a new polygon."""
    with Raster(brain.path(brain.section(section).annotation)) as raster:
        labels, spacing = raster.read_level(0), raster.spacing_um
    with Raster(brain.path(brain.section(section).mask)) as raster:
        mask = raster.read_at_spacing(spacing)[: labels.shape[0], : labels.shape[1]]
    free = (labels == 0) & (mask == 1)
    distance = ndimage.distance_transform_cdt(free, metric="chessboard")
    row, col = np.unravel_index(np.argmax(distance), distance.shape)
    half = min(int(distance[row, col]) - 2, 12) * spacing / 1000
    assert half > 1.0
    return (col + 0.5) * spacing / 1000, (row + 0.5) * spacing / 1000, half


def to_screen(page, x_mm: float, y_mm: float) -> tuple[float, float]:
    """Page coordinates of a point in section mm (through the viewer's own transform)."""
    box = page.locator("#viewer").bounding_box()
    x, y = page.evaluate(
        """([x, y]) => { const S = window.cortexgraph; const k = 1000 / S.image.spacing_um;
        const p = S.viewer.world.getItemAt(0).imageToViewerElementCoordinates(
          new OpenSeadragon.Point(x * k, y * k)); return [p.x, p.y]; }""",
        [x_mm, y_mm],
    )
    return box["x"] + x, box["y"] + y


def test_browse_draw_save_and_conflict(browser, live, shots):
    page, errors = open_page(browser, f"{live.url}/?area={HOC1}&section=602")
    wait_loaded(page, 602)
    page.click("#next")
    wait_loaded(page, 662)
    page.keyboard.press("PageDown")
    wait_loaded(page, 722)
    assert page.inner_text("#section-title") == "section 722"
    assert "22" in page.inner_text("#scalebar-label") or "mm" in page.inner_text("#scalebar-label")
    page.locator("#overlays .overlay[data-key=annotation] input[type=checkbox]").check()
    shot(page, shots, "browse")

    brain = find_brain("B01", live.root)
    before = read_contours(brain.path(brain.section(722).contours))
    x, y, half = free_square(brain, 722)
    corners = [
        (x - half, y - half),
        (x + half, y - half),
        (x + half, y + half),
        (x - half, y + half),
    ]
    page.select_option("#area", str(HOC1))
    page.click("#draw")
    for corner in corners + corners[:1]:  # clicking the first corner again closes the polygon
        page.mouse.click(*to_screen(page, *corner))
    page.click("#draw")  # stop drawing
    page.wait_for_function("!document.getElementById('save').disabled")
    page.click("#save")
    page.wait_for_function(
        "document.getElementById('message').textContent.includes('saved as version')"
    )
    after = read_contours(brain.path(find_brain("B01", live.root).section(722).contours))
    assert len(after) == len(before) + 1
    drawn = next(f for f in after if f["properties"]["area_id"] == HOC1 and f not in before)
    ring = np.asarray(drawn["geometry"]["coordinates"][0])[:-1]
    pixel_mm = brain.image_spacing_um / 1000
    np.testing.assert_allclose(ring, np.asarray(corners), atol=pixel_mm)  # one image pixel
    with Raster(brain.path(brain.section(722).annotation)) as raster:
        labels = raster.read_level(0)
        np.testing.assert_array_equal(
            labels, rasterize_contours(after, labels.shape, raster.spacing_um)
        )
    shot(page, shots, "annotate")

    # a second tab that loaded this version cannot overwrite a later save of the first tab
    other, _ = open_page(browser, f"{live.url}/?area={HOC1}&section=722")
    wait_loaded(other, 722)
    select_last = "(() => { const a = window.cortexgraph.anno; a.setSelected(a.getAnnotations().at(-1).id); })()"
    page.evaluate(select_last)
    page.click("#delete")  # tab 1 deletes its polygon again and saves
    page.click("#save")
    page.wait_for_function(
        "document.getElementById('message').textContent.includes('saved as version')"
        " && !document.getElementById('annotation-state').textContent.includes('unsaved')"
    )
    other.evaluate(select_last)
    other.click("#delete")  # tab 2 deletes a polygon of the version it loaded
    other.click("#save")
    other.wait_for_function("document.getElementById('annotation-state').className === 'error'")
    assert "changed since you loaded it" in other.inner_text("#annotation-state")
    assert len(read_contours(brain.path(brain.section(722).contours))) == len(before)
    shot(other, shots, "conflict")
    other.close()
    assert not errors
    page.close()


def test_map_an_area_and_accept_a_prediction(browser, live, shots):
    page, errors = open_page(browser, f"{live.url}/?area={HOC1}&section=602")
    wait_loaded(page, 602)
    page.click("#suggest")
    page.wait_for_function("document.getElementById('s').value !== ''")
    page.fill("#s", "602")
    page.fill("#t", "842")
    page.click("#start")
    page.wait_for_function("document.getElementById('job-state').textContent.includes('running')",
                           timeout=60000)  # fmt: skip
    page.wait_for_selector("#job-predictions li >> nth=2", timeout=180000)
    page.wait_for_function("document.getElementById('job-state').textContent.includes('done')",
                           timeout=60000)  # fmt: skip
    items = page.locator("#job-predictions li")
    assert [items.nth(i).get_attribute("data-section") for i in range(3)] == ["662", "722", "782"]
    items.nth(0).locator("text=view").click()
    wait_loaded(page, 662)
    page.wait_for_selector("#overlays .overlay[data-key='pred~lsm-hr-s0602-s0842~4']")
    page.wait_for_function("window.cortexgraph.overlays.every((o) => o.item)")
    page.wait_for_timeout(500)
    shot(page, shots, "prediction")
    items.nth(0).locator("text=accept").click()
    page.wait_for_function("document.getElementById('message').textContent.includes('accepted')")
    brain = find_brain("B01", live.root)
    accepted = [f for f in read_contours(brain.path(brain.section(662).contours))
                if f["properties"]["area_id"] == HOC1]  # fmt: skip
    assert accepted
    page.wait_for_function(
        f"window.cortexgraph.anno.getAnnotations().some((a) => a.bodies[0].value === '{HOC1}')"
    )
    shot(page, shots, "accepted")
    items.nth(2).locator("text=reject").click()
    page.wait_for_function(
        "document.querySelector('#job-predictions li[data-section=\"782\"]').className === 'rejected'"
    )
    page.click("#next-interval")
    page.wait_for_function("document.getElementById('s').value === '842'")
    assert page.input_value("#t") == "962"
    export = page.get_attribute("#export", "href")
    response = page.request.get(live.url + export)
    assert response.ok and any(
        f["properties"]["section"] == 662 for f in response.json()["features"]
    )
    assert not errors
    page.close()


def test_midsurface_in_3d(browser, tiny_cohort, tmp_path_factory, shots):
    root = copy_cohort(tiny_cohort, tmp_path_factory.mktemp("e2e3d") / "tiny")
    sphere_graph(root)
    with LiveServer(root) as server:
        page, errors = open_page(browser, f"{server.url}/?area={HOC1}")
        page.click("#tab-3d")
        page.wait_for_function("document.getElementById('colouring').options.length === 4")
        page.select_option("#colouring", "errors")
        page.click("#show-surface")
        page.wait_for_function(
            "window.cortexgraph.mesh && window.cortexgraph.nv.meshes.length === 1"
        )
        page.wait_for_timeout(800)
        path = shot(page, shots, "3d")
        from PIL import Image

        box = page.locator("#canvas3d").bounding_box()
        picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
        canvas = picture[int(box["y"]) : int(box["y"] + box["height"]),
                         int(box["x"]) : int(box["x"] + box["width"])]  # fmt: skip
        green = (canvas[..., 1] > canvas[..., 0] + 40) & (canvas[..., 1] > canvas[..., 2] + 40)
        red = (canvas[..., 0] > canvas[..., 1] + 60) & (canvas[..., 0] > canvas[..., 2] + 60)
        assert green.sum() > 200 and red.sum() > 200  # correct and wrong nodes are drawn
        assert "correct" in page.inner_text("#legend3d")
        assert not errors
        page.close()
