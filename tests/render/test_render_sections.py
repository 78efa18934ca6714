"""Section overlays (cortexgraph.render.sections)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from cortexgraph.data.manifest import Area, AreaTable
from cortexgraph.render.colors import area_id_colours
from cortexgraph.render.sections import label_borders, overlay_labels, section_overlay_figure

AREAS = AreaTable([Area(1, "hOc1", "#ff0000"), Area(3, "hOc2", "#0000ff")])


def test_overlay_blends_inside_darkens_borders_and_keeps_the_rest():
    image = np.full((8, 10), 100, np.uint8)
    labels = np.zeros((8, 10), np.uint16)
    labels[1:7, 1:5] = 1
    labels[1:7, 5:9] = 3
    colours = area_id_colours(AREAS)
    out = overlay_labels(image, labels, colours, alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # unlabelled: the image
    np.testing.assert_array_equal(out[3, 2], [178, 50, 50])  # 0.5 * 100 + 0.5 * 255 (rounded)
    border = label_borders(labels)
    assert border[3, 4] and border[3, 5] and border[1, 2] and not border[3, 2]
    np.testing.assert_array_equal(out[3, 5], np.round(0.45 * np.array([0, 0, 255])))
    with pytest.raises(ValueError):
        overlay_labels(image[:4], labels, colours)


def test_overlay_figure_is_written(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (120, 160)).astype(np.uint8)
    labels = np.zeros((120, 160), np.uint16)
    labels[40:80, 30:70] = 1
    labels[40:80, 70:110] = 3
    path = section_overlay_figure(
        tmp_path / "overlays/s0001.png",
        image,
        [("projected", labels), ("truth", labels)],
        AREAS,
        spacing_um=100.0,
        title="B01, section 1",
    )
    picture = imread(path)
    assert picture.shape[0] > 200 and picture.shape[1] > 400
    rgb = (picture[..., :3] * 255).round()
    assert (np.all(rgb == [255, 0, 0], axis=-1)).sum() > 0  # the legend patch of hOc1
