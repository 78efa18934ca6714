"""Section overlays (cortexgraph.render.sections)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from cortexgraph.data.colors import area_id_colours
from cortexgraph.data.manifest import Area, AreaTable
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


def _red_and_blue_columns(path):
    rgb = (imread(path)[..., :3] * 255).round().astype(int)
    left_panel = rgb[:, : rgb.shape[1] // 2]  # the first panel (the legend is on the right)
    red = (left_panel[..., 0] > 180) & (left_panel[..., 2] < 120) & (left_panel[..., 1] < 120)
    blue = (left_panel[..., 2] > 180) & (left_panel[..., 0] < 120) & (left_panel[..., 1] < 120)
    return np.nonzero(red)[1].mean(), np.nonzero(blue)[1].mean()


def test_mirrored_section_is_shown_flipped_back_with_its_role_and_orientation(tmp_path):
    from cortexgraph.render.sections import SectionContext

    image = np.full((120, 160), 150, np.uint8)
    labels = np.zeros((120, 160), np.uint16)
    labels[30:90, 10:70] = 1  # hOc1 (red) on the image's left
    labels[30:90, 90:150] = 3  # hOc2 (blue) on its right
    common = dict(spacing_um=100.0, title="B01, section 7", names=False)
    plain = section_overlay_figure(
        tmp_path / "plain.png", image, [("projected", labels), ("truth", labels)], AREAS,
        context=SectionContext("test section", False, np.eye(2)), **common,
    )  # fmt: skip
    mirrored = section_overlay_figure(
        tmp_path / "mirrored.png", image, [("projected", labels), ("truth", labels)], AREAS,
        context=SectionContext("training section", True, np.diag([-1.0, 1.0])), **common,
    )  # fmt: skip
    red, blue = _red_and_blue_columns(plain)
    assert red < blue  # as stored
    red, blue = _red_and_blue_columns(mirrored)
    assert red > blue  # flipped back: the left of the stored image is the brain's right


def test_section_roles_follow_the_split_and_the_run(tiny_cohort):
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.data.stack import SectionStack
    from cortexgraph.features.dataset import annotated_sections, section_split
    from cortexgraph.render.sections import section_context, section_roles

    cohort = Cohort.read(tiny_cohort)
    brain = cohort.brain("B01")
    with SectionStack(brain) as stack:
        roles = section_roles(brain, stack)
        annotated = annotated_sections(brain, stack)
        train, test = section_split(annotated)
        assert {roles[s] for s in test} == {"test section"}
        assert {roles[s] for s in train} == {"training section"}
        others = [s for s in stack.sections if s not in annotated]
        assert others and {roles[s] for s in others} == {"unannotated section"}
        config = {"train_brains": ["B03"], "transfer": "B01"}
        transfer = section_roles(brain, stack, config)
        assert transfer[test[0]] == transfer[train[0]] == "transfer brain, annotated section"
        assert transfer[others[0]] == "transfer brain, unannotated section"
        unused = section_roles(brain, stack, {"train_brains": ["B03"], "transfer": "B07"})
        assert unused[test[0]] == "not used by the run, test section"
        context = section_context(stack, stack.base_section, "test section")
        # the base section maps to world x = image x, world z = - image y (up is superior)
        np.testing.assert_allclose(context.orientation, np.diag([1.0, -1.0]), atol=1e-9)
