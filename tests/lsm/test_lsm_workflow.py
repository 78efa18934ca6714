"""The computing core: chain plans, ROIs through the section transforms, exact tiled prediction of a
section, and a tiny training run on the phantom that beats chance."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cortexgraph.data.manifest import find_brain
from cortexgraph.data.raster import Raster
from cortexgraph.data.stack import SectionStack
from cortexgraph.data.transforms import invert_rigid, rigid_matrix, rotation_about
from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm.data import ArrayImageSource, SectionData, section_transform
from cortexgraph.lsm.evaluate import area_f1
from cortexgraph.lsm.layout import prediction_path
from cortexgraph.lsm.networks import lsm_config, with_output_tile
from cortexgraph.lsm.roi import dilate_mm, training_roi
from cortexgraph.lsm.stages import LSMRun, run_interval
from cortexgraph.lsm.workflow import (
    ChainPlan,
    interval_roi,
    load_model,
    load_rois,
    make_config,
    plan_chain,
    plan_single_interval,
    predict_section,
    resolve_area,
    save_rois,
)

# --------------------------------------------------------------------------------------------------
# chain plans


def test_plan_alternates_training_and_test_sections():
    available = list(range(10, 461, 30))
    plan = plan_chain(
        [100, 160, 220, 280, 340],
        available,
        area_id=7,
        brain_annotated=[40, 100, 160, 220, 280, 340, 400],
    )
    assert plan.intervals == ((100, 220), (220, 340))
    assert plan.tests == ((160,), (280,))
    assert plan.training_sections == (100, 220, 340) and plan.test_sections == (160, 280)
    # the extent reaches to (not including) the neighbouring annotated sections without the area
    assert plan.extent == (41, 399)
    assert plan.sections == tuple(range(70, 371, 30))
    assert [plan.interval_of(s) for s in (70, 100, 190, 220, 250, 340, 370)] == [
        0,
        0,
        0,
        0,
        1,
        1,
        1,
    ]
    assert [plan.role(s) for s in (70, 100, 130, 160, 370)] == [
        "end",
        "train",
        "between",
        "test",
        "end",
    ]
    assert ChainPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_plan_variants():
    available = list(range(0, 301, 20))
    even = plan_chain([100, 160, 220, 280], available)
    assert even.intervals == ((100, 220), (220, 280)) and even.tests == ((160,), ())
    # no other annotation: the chain's end models cover the stack to its ends
    assert even.extent == (0, 300) and even.sections[0] == 0 and even.sections[-1] == 300
    dense = plan_chain([100, 160, 220], available, step=1)
    assert dense.intervals == ((100, 160), (160, 220)) and dense.test_sections == ()
    fixed = plan_chain([100, 160, 220], available, extent=(120, 200))
    assert fixed.sections == (120, 140, 160, 180, 200) and fixed.intervals == ((100, 220),)
    with pytest.raises(CortexgraphError):
        plan_chain([100], available)


def test_plan_of_a_single_interval():
    available = list(range(0, 301, 20))
    plan = plan_single_interval([60, 100, 160, 220, 280], available, (220, 100), area_id=3)
    assert plan.intervals == ((100, 220),) and plan.tests == ((160,),)
    assert plan.sections == tuple(range(100, 221, 20)) and plan.extent == (100, 220)
    assert plan.role(100) == "train" and plan.role(160) == "test" and plan.role(140) == "between"
    with pytest.raises(CortexgraphError, match="not annotated"):
        plan_single_interval([100, 160], available, (100, 220))
    with pytest.raises(CortexgraphError, match="differ"):
        plan_single_interval([100, 160], available, (100, 100))


def test_long_intervals_are_refused_with_the_sections_to_annotate_next():
    """Schiffer et al. 2021 (NeuroImage, Sect. 2.3) train a local model on two sections about 2.4 mm
    (120 sections) apart; sparse annotations (every 180 sections here, step 2: 360-section
    intervals) are refused by default, naming the sections that would bring every interval under the limit."""
    from cortexgraph.lsm.workflow import (
        LongIntervalError,
        max_interval_sections,
        suggest_annotations,
    )

    limit = max_interval_sections(2.4, 20.0)
    assert limit == 120
    available = list(range(0, 1201, 15))
    annotated = [105, 285, 465, 645]
    with pytest.raises(LongIntervalError) as error:
        plan_chain(annotated, available, max_interval=limit)
    message = str(error.value)
    assert "105-465 (360 sections)" in message and "--allow-long-intervals" in message
    suggested = suggest_annotations(annotated, available, limit, step=2)
    assert suggested == [165, 225, 345, 405, 525, 585]  # each 180-section gap split in three
    assert "annotate the area on section(s) 165, 225, 345, 405, 525, 585" in message
    # with the suggested sections annotated, the chain plans without a long interval
    fixed = plan_chain(sorted(annotated + suggested), available, max_interval=limit)
    assert max(t - s for s, t in fixed.intervals) <= limit
    # allowed: planned, with a warning and the suggestion in the plan's notes
    plan = plan_chain(annotated, available, max_interval=limit, allow_long=True)
    assert plan.intervals == ((105, 465), (465, 645))
    assert plan.notes["long_intervals"] == [[105, 465], [465, 645]]
    assert plan.notes["suggested_sections"] == suggested
    # the gaps follow the step: with step 1 the intervals are the 180-section gaps
    assert suggest_annotations(annotated, available, limit, step=1) == [225, 405, 585]
    # sections off the digitized grid, or missing: the fewest available sections that do it
    off_grid = suggest_annotations([100, 280], available, limit, step=1)
    assert off_grid == [210] and all(s in available for s in off_grid)
    # a single interval is split into models of at most the limit
    with pytest.raises(LongIntervalError, match="annotate the area on section"):
        plan_single_interval(annotated, available, (105, 465), max_interval=limit)
    assert suggest_annotations([105, 465], available, limit, single=True) == [225, 345]
    # no digitized section inside the gap: nothing to suggest, the error says so
    with pytest.raises(LongIntervalError, match="no digitized section"):
        plan_chain([100, 300], [100, 300], max_interval=limit, step=1)
    # no limit (None) keeps the old behaviour
    assert plan_chain(annotated, available).intervals == plan.intervals
    with pytest.raises(CortexgraphError, match="max-interval-mm"):
        max_interval_sections(-1.0, 20.0)


def test_rois_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rois = {422: rng.random((7, 9)) > 0.5, 1142: rng.random((5, 4)) > 0.3}
    path = save_rois(tmp_path / "rois.npz", rois, 320.0)
    loaded, spacing = load_rois(path)
    assert spacing == 320.0 and set(loaded) == {422, 1142}
    for key, roi in rois.items():
        np.testing.assert_array_equal(loaded[key], roi)
    assert [p.name for p in tmp_path.iterdir()] == ["rois.npz"]  # no temporary file left


# --------------------------------------------------------------------------------------------------
# ROI through known section transforms


def test_interval_roi_through_the_base_section():
    """eq. 5.65 with transforms composed through the base: s is shifted by 1 mm against the base,
    t rotated by 90 degrees about the image centre, u is the base itself."""
    spacing, n = 100.0, 60  # 6 mm square sections
    config = lsm_config("tiny", "hr", spacing_um=spacing, roi_radius_mm=1.0)
    shift = rigid_matrix(0.0, 1.0, 0.0)  # raw s -> base: +1 mm in x (10 px)
    turn = rotation_about(np.pi / 2, (3.0, 3.0))
    to_base = {1: shift, 2: np.eye(3), 3: turn}
    stack = SimpleNamespace(
        to_base=to_base, from_base={k: invert_rigid(v) for k, v in to_base.items()}
    )
    np.testing.assert_allclose(section_transform(stack, 1, 3), invert_rigid(turn) @ shift)
    area_s = np.zeros((n, n), bool)
    area_s[20:24, 10:30] = True
    area_t = np.zeros((n, n), bool)
    area_t[40:44, 40:44] = True
    data = [
        SectionData(s, spacing, (n, n), 0.0, None, roi=training_roi(a, spacing, 1.0))
        for s, a in ((1, area_s), (3, area_t))
    ]
    roi = interval_roi(stack, data[0], data[1], 2, (n, n), config)
    grown_s = dilate_mm(data[0].roi, spacing, 0.05)  # radius 1 mm -> 1.05 mm
    grown_t = dilate_mm(data[1].roi, spacing, 0.05)
    expected = np.zeros((n, n), bool)
    expected[:, 10:] = grown_s[:, :-10]
    expected |= np.rot90(grown_t, k=-1)  # +90 deg in (x right, y down) = clockwise quarter turn
    np.testing.assert_array_equal(roi, expected)


# --------------------------------------------------------------------------------------------------
# exact tiled prediction of a section


class CoordinateModel:
    """A 'network' that outputs the code of the image pixel under each output pixel (one-hot)."""

    def __init__(self, config, n_codes: int = 251):
        self.config = config
        self.n_codes = n_codes
        self.calls = 0

    def __call__(self, x_hr, x_lr=None):
        self.calls += 1
        m = self.config.output_px
        margin = (x_hr.shape[-1] - m) // 2
        window = x_hr[:, 0, margin : margin + m, margin : margin + m]
        codes = torch.round(window).long().clamp(max=self.n_codes - 1)  # padding: outside anyway
        return torch.nn.functional.one_hot(codes, self.n_codes).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("arch", ["hr", "ms"])
@pytest.mark.parametrize("quarter", [0, 1, 3])
def test_section_prediction_stitches_exactly(arch, quarter):
    shape = (37, 53)
    ii, jj = np.mgrid[0 : shape[0], 0 : shape[1]]
    codes = (ii * shape[1] + jj) % 251
    roi = ((ii - 12) ** 2 + (jj - 40) ** 2 <= 90) | ((ii > 25) & (jj < 9)) | ((ii == 0) & (jj == 0))
    tile = 8
    config = with_output_tile(lsm_config("tiny", arch, spacing_um=100.0), tile)
    model = CoordinateModel(config)
    pred = predict_section(
        model,
        ArrayImageSource(codes.astype(np.float32), 100.0),
        roi,
        quarter * np.pi / 2,
        tile_px=tile,
        batch_size=3,
        intensity_scale=1.0,
    )
    np.testing.assert_array_equal(pred, np.where(roi, codes, 255).astype(np.uint8))
    # only tiles touching the ROI are predicted: bbox 37 x 53 -> 5 x 7 tiles, fewer touch the ROI
    assert model.calls * 3 < 35


# --------------------------------------------------------------------------------------------------
# a tiny training run on the phantom


@pytest.mark.slow
def test_tiny_lsm_beats_chance_on_the_phantom(cohort):
    """An HR model trained for 60 iterations on two annotated sections 2.4 mm apart segments the
    annotated section between them (never seen) far better than chance."""
    brain = find_brain("B01", cohort)
    area = resolve_area(brain, "hOc1")
    run = LSMRun(brain=brain, area=area, arch="hr", interval=(722, 842), iterations=60, seed=0)
    assert run.name == "lsm-hr"
    config = run.config
    assert config.hr_spacing_um == 160.0 and config.output_spacing_um == 320.0
    result = run_interval(run, predict=True)
    (path,) = result["models"]
    assert path == run.out_dir / "lsm" / "lsm-hr" / "hOc1" / "models" / "s0722-s0842" / "model.pt"
    net, loaded, meta = load_model(path)
    assert loaded == config and meta["interval"] == [722, 842] and meta["run"] == "lsm-hr"
    history = json.loads(path.with_name("history.json").read_text())
    assert history["final_loss"] < 0.8 * np.mean(history["loss"][:5])
    # the plan of a single interval predicts s, the sections between and t
    assert result["predictions"] == [
        prediction_path(run.out_dir, "lsm-hr", area, s) for s in (722, 782, 842)
    ]
    with Raster(result["predictions"][1]) as raster:
        pred = raster.read_level(0)
        assert raster.kind == "labels" and raster.spacing_um == 320.0
    with SectionStack(brain) as stack:
        truth = stack.annotation(782, 320.0) == area.id
    roi = pred != 255
    f1 = area_f1(pred == 3, truth, True, roi)
    share = truth[roi].mean()  # chance: label a random share p of the ROI, F1 = p;
    all_area = 2 * share / (1 + share)  # or label all of it
    assert 0.02 < share < 0.5
    # measured: F1 0.737, share 0.146 (all-area F1 0.254)
    assert f1 > all_area + 0.2 and f1 > 0.5, f"F1 {f1:.3f}, all-area baseline {all_area:.3f}"
    # a second run reuses everything: the model file is not rewritten
    mtime = path.stat().st_mtime_ns
    assert run_interval(run, predict=True)["models"] == [path]
    assert path.stat().st_mtime_ns == mtime


def test_make_config_scales_with_the_images():
    assert make_config("ms", 2.0).hr_spacing_um == 2.0  # the published full configuration
    assert make_config("ms", 2.0).input_px() == (2025, 628)
    cfg = make_config("ms", 100.0, iterations=150)
    assert (cfg.hr_spacing_um, cfg.output_spacing_um, cfg.lr_spacing_um) == (100.0, 200.0, 400.0)
    assert cfg.iterations == 150 and cfg.lr_milestones == (50, 70, 90, 110, 130)
    with pytest.raises(CortexgraphError):
        make_config("xl", 100.0)
