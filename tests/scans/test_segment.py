"""Tissue segmentation: Dice against known masks (a drawn section and the tiny phantom), overrides,
QC pictures, the stage record, and the brain's own masks protected."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.data.manifest import Cohort
from cortexgraph.data.raster import Raster
from cortexgraph.errors import DataFormatError
from cortexgraph.scans.segment import (
    GRAY,
    WHITE,
    SegmentParameters,
    dice_per_class,
    read_overrides,
    segment_brain,
    segment_image,
    tissue_threshold,
)


def _drawn_section(spacing_um: float = 64.0, seed: int = 0, layer_one_mm: float = 0.0):
    """Glass (250), an oval hemisphere with a 2.5 mm cortical ribbon (dark) around white matter
    (light) and one deep, 0.4 mm wide sulcus; with ``layer_one_mm`` the outer part of the cortex of
    that depth is pale (226, the cell-sparse molecular layer); returns (image uint8, true mask)."""
    rng = np.random.default_rng(seed)
    size = int(60_000 / spacing_um)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) * spacing_um / 1000.0  # mm
    r = np.hypot((xx - 30) / 22, (yy - 30) / 16)
    tissue = r < 1
    sulcus = (np.abs(xx - 30) < 0.2) & (yy < 22)
    tissue &= ~sulcus
    # cortex: within 2.5 mm of the outline or of the sulcus
    from scipy import ndimage

    outside = ~tissue
    depth_mm = ndimage.distance_transform_edt(~outside) * spacing_um / 1000.0
    truth = np.zeros((size, size), np.uint8)
    truth[tissue] = WHITE
    truth[tissue & (depth_mm < 2.5)] = GRAY
    level = np.where(truth == GRAY, 140.0, np.where(truth == WHITE, 212.0, 250.0))
    level[tissue & (depth_mm < layer_one_mm)] = 226.0
    noise = ndimage.gaussian_filter(rng.normal(0, 12, level.shape), 0.7)
    image = np.clip(np.rint(level + noise * (truth > 0) + rng.normal(0, 1.5, level.shape)), 0, 255)
    return image.astype(np.uint8), truth


def test_drawn_section_dice_and_open_sulcus():
    image, truth = _drawn_section()
    result = segment_image(image, 64.0)
    dice = dice_per_class(result.mask, truth)
    assert dice["background"] > 0.99
    assert dice["gray"] > 0.95, dice
    assert dice["white"] > 0.95, dice
    # the threshold lies between white matter (212) and glass (250), at a histogram minimum
    assert 215 < result.tissue_threshold < 248
    assert int(result.tissue_threshold) in result.minima
    # the sulcus (0.4 mm, about 6 px) stays open: its glass is background at mid depth
    size = image.shape[0]
    column = int(30 / 0.064)
    row = int(18 / 0.064)
    assert result.mask[row, column - 1 : column + 2].max() == 0
    assert size == truth.shape[0]


def test_pial_rim_of_white_becomes_gray_but_cut_white_matter_stays():
    """A 2 px white ring along the tissue border (the partial-volume band between gray matter and
    glass) becomes gray; white matter cut at the border (20 px wide) and the core stay white."""
    from cortexgraph.scans.segment import _pial_rim_to_gray

    yy, xx = np.mgrid[0:200, 0:200]
    r = np.hypot(yy - 100, xx - 100)
    tissue = r < 80
    core = r < 40
    ring = tissue & (r >= 78)
    band = tissue & (np.abs(yy - 100) < 10) & (xx > 100)  # white matter reaching the border
    white = core | ring | band
    gray = tissue & ~white
    rim_px = 192.0 / 64.0
    new_gray, new_white = _pial_rim_to_gray(gray, white, tissue, rim_px)
    assert not (new_gray & new_white).any()
    assert ((new_gray | new_white) == tissue).all()
    assert not (new_white & ring & ~band).any()  # the ring is gray ...
    assert new_white[core].all()  # ... the core and the cut white matter are not
    assert new_white[band & (r < 77)].all()
    assert new_white[100, 170:180].all()  # the band's end at the border stays white
    # on a drawn section, no white pixel is left within the rim of the background
    from scipy import ndimage

    image, _ = _drawn_section()
    mask = segment_image(image, 64.0).mask
    depth = ndimage.distance_transform_edt(mask > 0)
    assert not ((mask == WHITE) & (depth <= rim_px)).any()


def test_pale_layer_one_under_the_pia_becomes_gray_as_a_whole():
    """The drawn section with a pale molecular layer (layer I: the outer 0.35 or 0.45 mm of the
    cortex at grey value 226, paler than white matter at 212, as in a cell-body stain). The pale
    band along the pial border is wider than the rim rule reached before (192 µm = 3 px, per pixel):
    its inner part stayed white, a white band inside the cortex; per pixel at 320 µm a 0.45 mm band
    still does. With the rim rule's defaults (320 µm, thin pieces that reach it taken whole) no white
    pixel lies within 1 mm of the background (the cortex is 2.5 mm thick), and white Dice stays
    above 0.98."""
    from scipy import ndimage

    before = SegmentParameters(border_rim_um=192.0, border_rim_whole_pieces=False)
    per_pixel = SegmentParameters(border_rim_whole_pieces=False)
    for layer_one_mm, old_params in ((0.35, before), (0.45, per_pixel)):
        image, truth = _drawn_section(layer_one_mm=layer_one_mm)
        shallow = ndimage.distance_transform_edt(truth > 0) * 0.064 < 1.0
        new = segment_image(image, 64.0).mask
        old = segment_image(image, 64.0, old_params).mask
        assert ((old == WHITE) & shallow).sum() > 1000  # the band's inner part was white ...
        assert not ((new == WHITE) & shallow).any()  # ... and is gray now
        dice = dice_per_class(new, truth)
        assert dice["white"] > 0.98 and dice["gray"] > 0.98, dice
        assert dice["gray"] > dice_per_class(old, truth)["gray"] + 0.01
    # without a pale layer I the rule before gives the same mask
    image, _ = _drawn_section()
    assert (segment_image(image, 64.0).mask == segment_image(image, 64.0, before).mask).all()


def test_threshold_uses_the_minimum_closest_to_otsu():
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [rng.normal(140, 8, 20000), rng.normal(205, 5, 8000), rng.normal(250, 1.5, 60000)]
    )
    image = np.clip(values, 0, 255).reshape(-1, 88)
    two = tissue_threshold(image, SegmentParameters(otsu_classes=2))
    three = tissue_threshold(image, SegmentParameters(otsu_classes=3))
    # the two-class Otsu threshold falls between the tissue classes ... (thesis method)
    assert 160 < two[0] < 200
    # ... the three-class reference separates all tissue from the glass
    assert 212 < three[0] < 245
    assert int(three[0]) in three[2]


def test_overrides_file_is_validated(tmp_path):
    path = tmp_path / "overrides.tsv"
    path.write_text("section\ttissue_threshold\tskip\n12\t180\t\n24\t\t1\n")
    assert read_overrides(path) == {12: {"tissue_threshold": 180.0}, 24: {"skip": True}}
    path.write_text("section\tmax_white_gray_od_ratio\n12\t1.0\n")
    assert read_overrides(path) == {12: {"max_white_gray_od_ratio": 1.0}}
    path.write_text("section\tthreshold\n12\t180\n")
    with pytest.raises(DataFormatError, match="header"):
        read_overrides(path)
    path.write_text("section\ttissue_threshold\n12\t999\n")
    with pytest.raises(DataFormatError, match="line 2"):
        read_overrides(path)


@pytest.fixture()
def scans_brain(tiny_cohort, tmp_path):
    """B01 of the tiny phantom as a scans-only cohort, ingested (images only)."""
    pytest.importorskip("zarr", reason="the [scans] extra (zarr) is not installed")
    from cortexgraph.scans.strip import strip_to_scans

    root = tmp_path / "cohort"
    root.mkdir()
    for name in ("cohort.toml", "areas.tsv"):
        shutil.copy(tiny_cohort / name, root / name)
    shutil.copytree(tiny_cohort / "B01", root / "B01")
    shutil.copytree(tiny_cohort / "ground_truth" / "B01", root / "ground_truth" / "B01")
    strip_to_scans(root, brains=["B01"])
    assert not (root / "B01").exists()
    assert (root / "ground_truth" / "B01" / "inputs" / "masks").is_dir()
    result = CliRunner().invoke(
        app,
        [
            "ingest",
            str(root),
            "B01",
            "--scans",
            str(root / "scans" / "B01"),
            "--digitization-step",
            "60",
            "--chunk-px",
            "256",
        ],
    )
    assert result.exit_code == 0, result.output
    return root


SECTIONS = "962,1022,1082"


def test_scans_only_phantom_segmented_with_gray_dice_above_095(scans_brain):
    root = scans_brain
    result = CliRunner().invoke(app, ["segment", str(root / "B01"), "--sections", SECTIONS])
    assert result.exit_code == 0, result.output
    assert "Dice vs truth" in result.output
    out = root / "derivatives" / "cortexgraph" / "B01" / "segment"
    rows = [line.split("\t") for line in (out / "dice.tsv").read_text().splitlines()[1:]]
    gray = np.array([float(r[3]) for r in rows])
    white = np.array([float(r[2]) for r in rows])
    background = np.array([float(r[1]) for r in rows])
    assert len(rows) == 3
    assert gray.mean() > 0.95 and gray.min() > 0.93, gray
    assert white.mean() > 0.85, white
    assert background.min() > 0.99
    assert gray[0] == gray.min()  # worst first
    for n in SECTIONS.split(","):
        assert (out / "qc" / f"s{int(n):04d}.png").stat().st_size > 10_000
    brain = Cohort.read(root).brain("B01")
    assert brain.mask_spacing_um == 160.0
    with Raster(brain.path(brain.section(1022).mask)) as mask:
        assert mask.kind == "labels" and mask.dtype == np.uint8 and mask.spacing_um == 160.0
        assert set(np.unique(mask.read_level(0))) == {0, 1, 2}
    assert not brain.section(2).mask  # not asked for
    again = CliRunner().invoke(app, ["segment", str(root / "B01"), "--sections", SECTIONS])
    assert again.exit_code == 0 and "up to date" in again.output

    # a per-section override: the threshold used is the one given, the stage recomputes
    overrides = root / "overrides.tsv"
    overrides.write_text("section\ttissue_threshold\n962\t120\n")
    summary = segment_brain(
        Cohort.read(root).brain("B01"),
        SegmentParameters(),
        overrides=overrides,
        sections=[962, 1022, 1082],
        qc=False,
    )
    assert not summary["reused"]
    table = (out / "segment.tsv").read_text().splitlines()
    row = next(line.split("\t") for line in table if line.startswith("962\t"))
    assert float(row[2]) == 120.0 and row[-1] == "tissue_threshold"
    assert not (out / "qc" / "s0962.png").exists()  # outputs of the previous run removed
    dice_962 = next(
        float(line.split("\t")[3])
        for line in (out / "dice.tsv").read_text().splitlines()
        if line.startswith("962\t")
    )
    assert dice_962 < gray.min()  # a too dark threshold loses the light cortex


def test_the_brains_own_masks_are_not_replaced_silently(tiny_cohort, tmp_path):
    root = tmp_path / "cohort"
    root.mkdir()
    for name in ("cohort.toml", "areas.tsv"):
        shutil.copy(tiny_cohort / name, root / name)
    shutil.copytree(tiny_cohort / "B01", root / "B01")
    brain = Cohort.read(root).brain("B01")
    with pytest.raises(DataFormatError) as caught:
        segment_brain(brain, sections=[902], qc=False)
    assert "--replace-masks" in caught.value.fix and caught.value.section == 902
    result = CliRunner().invoke(app, ["segment", str(root / "B01"), "--sections", "902"])
    assert result.exit_code == 2 and "--replace-masks" in result.output


def _gray_only_section(spacing_um: float = 64.0, seed: int = 2):
    """Glass (250) and one 30 x 20 mm piece of gray matter only, with two close stain levels: 140
    and, in a 6 mm wide strip, 105 (a fold, or two kinds of non-cortical gray matter); returns
    (image uint8, true mask: all tissue gray)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    size = int(40_000 / spacing_um)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) * spacing_um / 1000.0  # mm
    tissue = (np.abs(xx - 20) < 15) & (np.abs(yy - 20) < 10)
    truth = np.where(tissue, GRAY, 0).astype(np.uint8)
    level = np.where(tissue, np.where(np.abs(xx - 28) < 3, 105.0, 140.0), 250.0)
    noise = ndimage.gaussian_filter(rng.normal(0, 12, level.shape), 0.7)
    image = np.clip(np.rint(level + noise * tissue + rng.normal(0, 1.5, level.shape)), 0, 255)
    return image.astype(np.uint8), truth


def test_gray_matter_with_two_stain_levels_is_not_split_into_gray_and_white():
    """Chan-Vese always finds two classes; on a section of gray matter only, whose two stain levels
    differ by a factor 1.4 in optical density, the split is rejected (optical-density ratio of the
    classes about 0.7, above max_white_gray_od_ratio 0.5) and all tissue stays gray. The thesis
    method (every split accepted) labels the paler level white."""
    image, truth = _gray_only_section()
    result = segment_image(image, 64.0)
    assert not result.split_accepted
    assert 0.6 < result.split_od_ratio < 0.8, result.split_od_ratio
    dice = dice_per_class(result.mask, truth)
    assert dice["gray"] > 0.99, dice
    assert (result.mask == WHITE).sum() == 0
    old = segment_image(image, 64.0, SegmentParameters(max_white_gray_od_ratio=1.0))
    assert old.split_accepted
    assert (old.mask == WHITE).sum() / (old.mask > 0).sum() > 0.5
    assert dice_per_class(old.mask, truth)["gray"] < 0.6


def test_separable_gray_and_white_still_split_and_pale_caps_become_gray():
    """A drawn hemisphere (gray 140, white 212: optical-density ratio about 0.28) is still split;
    a separate pale piece (grey value 226, ratio 0.17; a tangential cut through the upper cortical
    layers) that Chan-Vese labels white becomes gray, while white matter as pale but inside the
    cortex stays white."""
    image, truth = _drawn_section()
    result = segment_image(image, 64.0)
    assert result.split_accepted
    assert 0.2 < result.split_od_ratio < 0.4, result.split_od_ratio
    dice = dice_per_class(result.mask, truth)
    assert dice["gray"] > 0.95 and dice["white"] > 0.95, dice
    # a pale cap: a 4 mm disc of grey value 226 next to the hemisphere
    size = image.shape[0]
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) * 64.0 / 1000.0
    cap = np.hypot(xx - 55, yy - 55) < 2.0
    rng = np.random.default_rng(3)
    capped = image.copy()
    capped[cap] = np.clip(np.rint(226 + rng.normal(0, 3, cap.sum())), 0, 255).astype(np.uint8)
    truth_capped = truth.copy()
    truth_capped[cap] = GRAY
    new = segment_image(capped, 64.0)
    off = segment_image(capped, 64.0, SegmentParameters(min_white_gray_od_ratio=0.0))
    inner = cap & (np.hypot(xx - 55, yy - 55) < 1.5)
    assert (off.mask[inner] == WHITE).mean() > 0.9  # without the rule the cap is white ...
    assert (new.mask[inner] == GRAY).mean() > 0.99  # ... with it, gray
    assert dice_per_class(new.mask, truth_capped)["white"] > 0.95
    assert (
        dice_per_class(new.mask, truth_capped)["gray"]
        > dice_per_class(off.mask, truth_capped)["gray"] + 0.005
    )
    # white matter of the same paleness inside the cortex (not bordering the background) stays
    paler = image.copy()
    paler[truth == WHITE] = np.clip(paler[truth == WHITE].astype(int) + 14, 0, 255).astype(np.uint8)
    kept = segment_image(paler, 64.0)
    assert dice_per_class(kept.mask, truth)["white"] > 0.95


def _stack_section(kind: str, seed: int, spacing_um: float = 64.0):
    """A 32 x 32 mm section on glass (250): ``"hemisphere"``, an oval of white matter (212) with a
    2 mm cortical ribbon (140); ``"gray only"``, a 14 x 10 mm piece of gray matter (140) with a
    fold (105) and, apart from it, a pale tangential cut of cortex (224; its cell-sparse upper
    layers). Returns (image uint8, true mask)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    size = int(32_000 / spacing_um)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) * spacing_um / 1000.0  # mm
    truth = np.zeros((size, size), np.uint8)
    if kind == "hemisphere":
        tissue = np.hypot((xx - 16) / 11, (yy - 16) / 8) < 1
        depth_mm = ndimage.distance_transform_edt(tissue) * spacing_um / 1000.0
        truth[tissue] = WHITE
        truth[tissue & (depth_mm < 2.0)] = GRAY
        level = np.where(truth == GRAY, 140.0, np.where(truth == WHITE, 212.0, 250.0))
    else:
        piece = (np.abs(xx - 12) < 7) & (np.abs(yy - 16) < 5)
        cut = np.hypot((xx - 25) / 4, (yy - 16) / 3) < 1
        truth[piece | cut] = GRAY
        level = np.where(
            piece, np.where(np.abs(xx - 14) < 2, 105.0, 140.0), np.where(cut, 224.0, 250.0)
        )
    noise = ndimage.gaussian_filter(rng.normal(0, 12, level.shape), 0.7)
    noise *= (truth > 0) * np.where(level > 200, 0.3, 1.0)
    image = np.clip(np.rint(level + noise + rng.normal(0, 1.5, level.shape)), 0, 255)
    return image.astype(np.uint8), truth


def _stack_brain(root, sections: dict[int, tuple[np.ndarray, np.ndarray]]):
    """A brain folder ``root/B01`` of a cohort of 20 µm sections with the images of ``sections``
    at 64 µm (no masks, no annotations: the input of tissue segmentation)."""
    from cortexgraph.data.manifest import AreaTable, Brain, Cohort
    from cortexgraph.data.raster import write_raster

    cohort = Cohort(root=root, name="test", section_thickness_um=20.0, brain_ids=["B01"])
    cohort.write_manifest()
    AreaTable([]).write(root / "areas.tsv")

    folder = root / "B01"
    (folder / "images").mkdir(parents=True)
    (folder / "brain.toml").write_text(
        'format_version = 1\nid = "B01"\nshrinkage_factor = 1.0\ndigitization_step = 15\n\n'
        "[spacing_um]\nimage = 64.0\n"
    )
    lines = ["section\timage\tmask\tannotation\tcontours\tcoords\tmissing\tmirrored\texcluded"]
    for n, (image, _) in sections.items():
        write_raster(folder / "images" / f"s{n:04d}.h5", image, 64.0, kind="intensity")
        lines.append(f"{n}\timages/s{n:04d}.h5\t\t\t\t\t0\t0\t0")
    (folder / "sections.tsv").write_text("\n".join(lines) + "\n")
    return Brain.read(folder, cohort=Cohort.read(root))


def test_a_section_whose_own_threshold_is_wrong_takes_the_brains(tmp_path):
    """Five hemisphere sections (own thresholds 229.5, optical density ln(250/229.5) = 0.085) and
    one of gray matter only with a dark fold and a pale tangential cut of cortex: its histogram's
    valley lies between the gray matter and the cut (own threshold about 188, optical density
    0.28, z >> 3.5), which loses the cut (gray Dice 0.88). The brain-level fallback segments it
    at the brains' median optical density (grey value about 229.5) and finds the cut (gray Dice
    above 0.98); the other sections keep their own threshold and masks."""
    hemispheres = (1, 16, 31, 61, 76)
    sections = {n: _stack_section("hemisphere", i) for i, n in enumerate(hemispheres)}
    sections[46] = _stack_section("gray only", 5)
    brain = _stack_brain(tmp_path, dict(sorted(sections.items())))
    out = tmp_path / "derivatives" / "cortexgraph" / "B01" / "segment"

    def run(params: SegmentParameters):
        summary = segment_brain(brain, params, qc=False, overwrite=True)
        lines = (out / "segment.tsv").read_text().splitlines()
        header = lines[0].split("\t")
        table = {
            int(r.split("\t")[0]): dict(zip(header, r.split("\t"), strict=True)) for r in lines[1:]
        }
        masks = {}
        for n in sections:
            with Raster(brain.root / "masks" / f"s{n:04d}.h5") as raster:
                masks[n] = raster.read_level(0)
        return summary, table, masks

    old_summary, old_table, old_masks = run(SegmentParameters(brain_threshold_max_z=0.0))
    new_summary, new_table, new_masks = run(SegmentParameters())
    # the old behaviour: the section's own, too dark threshold loses the pale cut
    assert old_table[46]["threshold_source"] == "section"
    assert 180 < float(old_table[46]["tissue_threshold"]) < 200
    assert dice_per_class(old_masks[46], sections[46][1])["gray"] < 0.9
    assert old_summary["brain_threshold"] == []
    # the brain-level fallback
    row = new_table[46]
    assert row["threshold_source"] == "brain"
    assert float(row["section_threshold"]) == pytest.approx(
        float(old_table[46]["tissue_threshold"])
    )
    assert float(row["section_threshold_od"]) == pytest.approx(np.log(250 / 188), abs=0.03)
    assert float(row["threshold_od_z"]) > 10
    assert float(row["tissue_threshold"]) == pytest.approx(229.5, abs=1.5)
    assert new_summary["brain_threshold"] == [46]
    assert new_summary["brain_threshold_od_median"] == pytest.approx(np.log(250 / 229.5), abs=0.01)
    assert dice_per_class(new_masks[46], sections[46][1])["gray"] > 0.98
    for n in hemispheres:
        assert new_table[n]["threshold_source"] == "section"
        assert abs(float(new_table[n]["threshold_od_z"])) < 3.5
        assert np.array_equal(new_masks[n], old_masks[n])
        assert dice_per_class(new_masks[n], sections[n][1])["gray"] > 0.95
    # the command line names the sections that took the brain's threshold
    result = CliRunner().invoke(app, ["segment", str(brain.root), "--no-qc"])
    assert result.exit_code == 0, result.output
    assert "1 section(s) took the brain's tissue threshold" in result.output
    assert "s46;" in result.output
    # an override still wins, and is recorded as such
    overrides = tmp_path / "overrides.tsv"
    overrides.write_text("section\ttissue_threshold\n46\t200\n")
    segment_brain(brain, SegmentParameters(), overrides=overrides, qc=False, overwrite=True)
    lines = (out / "segment.tsv").read_text().splitlines()
    row = dict(
        zip(
            lines[0].split("\t"),
            next(r for r in lines if r.startswith("46\t")).split("\t"),
            strict=True,
        )
    )
    assert row["threshold_source"] == "override" and float(row["tissue_threshold"]) == 200.0


def test_brain_level_thresholds_need_enough_sections_and_replace_only_darker_ones():
    from cortexgraph.scans.segment import brain_level_thresholds

    params = SegmentParameters()
    glass = 250.0
    own = {1: 229.5, 2: 228.5, 3: 230.5, 4: 229.5, 5: 190.5, 6: 247.5}
    chosen, stats = brain_level_thresholds({n: (t, glass) for n, t in own.items()}, params)
    assert stats["median_od"] == pytest.approx(np.log(250 / 229.5), abs=1e-3)
    assert stats["sd_od"] == pytest.approx(0.01)  # the floor: the sections agree to 1 grey value
    assert chosen[5].source == "brain"
    assert chosen[5].threshold == pytest.approx(229.5, abs=0.6)
    assert chosen[5].z == pytest.approx((np.log(250 / 190.5) - stats["median_od"]) / 0.01, rel=1e-6)
    assert chosen[6].source == "section" and chosen[6].z < -3.5  # brighter: kept
    assert all(chosen[n].source == "section" for n in (1, 2, 3, 4))
    few, few_stats = brain_level_thresholds({n: (own[n], glass) for n in (1, 2, 5)}, params)
    assert not few_stats["used"] and few[5].source == "section" and np.isnan(few[5].z)


def test_gray_from_makes_white_pieces_in_the_pale_band_gray():
    """``gray_from`` (the section's own threshold when the brain's replaces it): a white piece most
    of whose pixels are at least that pale (a pale cap, grey value 226) becomes gray matter; white
    matter (212) stays white."""
    image, truth = _drawn_section()
    size = image.shape[0]
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) * 64.0 / 1000.0
    cap = np.hypot(xx - 55, yy - 55) < 2.0
    rng = np.random.default_rng(3)
    image[cap] = np.clip(np.rint(226 + rng.normal(0, 3, cap.sum())), 0, 255).astype(np.uint8)
    truth[cap] = GRAY
    params = SegmentParameters(min_white_gray_od_ratio=0.0)  # the pale-cap rule off
    off = segment_image(image, 64.0, params)
    assert (off.mask[cap] == WHITE).mean() > 0.8
    on = segment_image(image, 64.0, params, gray_from=220.0)
    assert (on.mask[cap & (np.hypot(xx - 55, yy - 55) < 1.5)] == GRAY).all()
    dice = dice_per_class(on.mask, truth)
    assert dice["white"] > 0.95 and dice["gray"] > 0.95, dice
    assert np.array_equal(on.mask[~cap], off.mask[~cap])
