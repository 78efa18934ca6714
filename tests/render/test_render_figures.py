"""What makes a picture readable on its own: distinguishable area colours, area names placed inside
the areas, orientation markers and scale bars (cortexgraph.data.colors / figures / surface)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from matplotlib.image import imread
from skimage.color import deltaE_ciede2000, rgb2lab

from cortexgraph.data.colors import MIN_DELTA_E, area_id_colours, display_colours
from cortexgraph.data.manifest import Area, AreaTable, Cohort
from cortexgraph.render.figures import Panel, _scale_bar_mm, label_positions, picture_grid
from cortexgraph.render.surface import (
    SurfaceRenderer,
    decode_ids,
    encode_ids,
    screen_directions,
)


def _min_delta_e(rgb):
    lab = rgb2lab(np.asarray(rgb, np.float64)[None] / 255.0)[0]
    d = deltaE_ciede2000(lab[:, None], lab[None, :])
    np.fill_diagonal(d, np.inf)
    return d.min()


def test_display_colours_keep_distinct_colours_and_separate_near_identical_ones():
    areas = AreaTable(
        [
            Area(1, "A", "#d62728"),
            Area(2, "B", "#d62a2a"),  # near-identical to A (delta E ~ 1)
            Area(3, "C", "#1f77b4"),
            Area(4, "D", "#2077b3"),  # near-identical to C
        ]
    )
    assert _min_delta_e([a.rgb for a in areas.areas]) < 2
    table = display_colours(areas)
    assert _min_delta_e(table) >= MIN_DELTA_E - 1e-6
    # distinct colours stay as the table gives them; moved ones stay close to the original hue
    np.testing.assert_array_equal(table[0], (0xD6, 0x27, 0x28))
    np.testing.assert_array_equal(table[2], (0x1F, 0x77, 0xB4))
    lab = rgb2lab(table[None].astype(float) / 255)[0]
    original = rgb2lab(np.array([[a.rgb for a in areas.areas]], float) / 255)[0]
    assert deltaE_ciede2000(lab[1], original[1]) < 25
    # the same table everywhere, deterministic
    np.testing.assert_array_equal(display_colours(areas), table)
    np.testing.assert_array_equal(area_id_colours(areas)[[1, 2, 3, 4]], table)


def test_phantom_areas_are_all_distinguishable(tiny_cohort):
    areas = Cohort.read(tiny_cohort).areas
    raw = _min_delta_e([a.rgb for a in areas.areas])
    table = display_colours(areas)
    assert raw < 2  # the phantom's table has near-identical pairs ...
    assert _min_delta_e(table) >= MIN_DELTA_E - 1e-6  # ... the display table none
    gray = rgb2lab(np.array([[[210, 210, 210]]]) / 255.0)[0, 0]
    assert deltaE_ciede2000(rgb2lab(table[None] / 255.0)[0], gray[None]).min() >= MIN_DELTA_E - 1e-6


def test_encoded_ids_survive_and_blends_are_rejected():
    ids = np.array([0, 1, 2, 255, 256, 4000])
    rgb = encode_ids(ids)
    np.testing.assert_array_equal(decode_ids(rgb[None], 4001)[0], ids)
    blend = np.round((rgb[1].astype(float) + rgb[3]) / 2).astype(np.uint8)  # a border pixel
    assert decode_ids(blend[None, None], 4001)[0, 0] == -1
    assert decode_ids(np.full((1, 1, 3), 255, np.uint8), 4001)[0, 0] == -1  # background


def test_label_positions_are_the_deepest_points_of_each_region():
    ids = np.full((60, 100), -1)
    ids[10:50, 5:45] = 0  # a 40 x 40 square: centre (29.5, 24.5)
    ids[20:40, 60:98] = 1  # 20 x 38
    ids[0:3, 50:53] = 2  # too small to hold a name
    ids[45:58, 60:73] = 1  # a second, smaller region of area 1
    found = label_positions(ids, ["sq", "bar", "dot"], min_radius_px=4)
    names = [f[0] for f in found]
    assert names == ["sq", "bar"]  # largest first, one name per area, "dot" left to the legend
    sq = found[0]
    assert abs(sq[1] - 29.5) <= 1 and abs(sq[2] - 24.5) <= 1 and sq[3] == pytest.approx(20, abs=1)
    assert 25 <= found[1][1] <= 34 and 65 <= found[1][2] <= 93
    both = label_positions(ids, ["sq", "bar", "dot"], min_radius_px=4, max_per_area=2)
    assert [f[0] for f in both].count("bar") == 2


@pytest.mark.parametrize(
    "view, hemi, expected",
    [
        ("lateral", "lh", ("P", "S")),
        ("lateral", "rh", ("A", "S")),
        ("medial", "lh", ("A", "S")),
        ("dorsal", "lh", ("R", "A")),
        ("ventral", "lh", ("L", "A")),
        ("anterior", "lh", ("L", "S")),
        ("posterior", "rh", ("R", "S")),
    ],
)
def test_screen_directions(view, hemi, expected):
    assert screen_directions(view, hemi) == expected


@pytest.mark.parametrize("backend", ["matplotlib", "vtk"])
def test_rendered_ids_and_scale(backend):
    from cortexgraph.render.surface import offscreen_backend

    if backend == "vtk" and offscreen_backend() != "vtk":
        pytest.skip("VTK cannot render off screen here")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    vertices, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    classes = np.where(vertices[:, 1] < 0, 0, 1)  # posterior 0, anterior 1
    with SurfaceRenderer(vertices, faces, hemi="lh", size_px=(200, 160), backend=backend) as r:
        ids = r.render_ids(classes, "lateral")
        mm_per_px = r.mm_per_px("lateral")
    assert set(np.unique(ids)) == {-1, 0, 1}
    rows, cols = np.nonzero(ids >= 0)
    # the sphere's 20 mm diameter on screen, at the renderer's scale (fitted with a 4 % margin)
    assert (rows.max() - rows.min() + 1) * mm_per_px == pytest.approx(20.0, rel=0.05)
    # lateral view of a left hemisphere: posterior (class 0) on the right
    assert cols[ids[rows, cols] == 0].mean() > cols[ids[rows, cols] == 1].mean()


def test_scale_bar_lengths():
    assert _scale_bar_mm(60.0) == 10.0
    assert _scale_bar_mm(12.0) == 2.0
    assert _scale_bar_mm(400.0) == 100.0


def test_picture_grid_with_names_scale_bar_and_orientation(tmp_path):
    picture = np.full((120, 160, 3), 255, np.uint8)
    picture[20:100, 20:140] = (31, 119, 180)
    panel = Panel("lateral", picture, labels=[("hOc1", 60.0, 80.0)], mm_per_px=0.25,
                  directions=("P", "S"))  # fmt: skip
    path = picture_grid(tmp_path / "grid.png", [panel, panel], ncols=2,
                        legend=[("hOc1", (31 / 255, 119 / 255, 180 / 255))],
                        title="B01 lh: prediction of run r\nB01 is a training brain")  # fmt: skip
    out = (imread(path)[..., :3] * 255).round().astype(int)
    # the pictures are pasted pixel for pixel, with room below each for the marker and bar
    assert out.shape[0] >= 16 + 2 * 18 + 22 + 120 + 34  # title lines, panel title, footer
    blue = np.all(out == (31, 119, 180), axis=-1)
    assert blue.sum() > 2 * 0.8 * 80 * 120  # the name covers a few pixels of each panel
    dark = np.all(out < 60, axis=-1)
    assert dark[-34:].sum() > 100  # scale bar, arrows and letters in the footer
