"""Schedule, optimiser set-up and a tiny end-to-end LSM run on a synthetic two-section problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexgraph.lsm.evaluate import area_f1
from cortexgraph.lsm.networks import build_lsm, lsm_config
from cortexgraph.lsm.roi import prediction_roi, training_roi
from cortexgraph.lsm.schedule import scaled_base_lr, scaled_milestones, step_lr
from cortexgraph.lsm.tiling import net_predict_fn, predict_tiled
from cortexgraph.lsm.train import (
    array_batch_sampler,
    class_weights_from_counts,
    parameter_groups,
    roi_class_counts,
    train_lsm,
    train_model,
)

SPACING_UM = 20.0


def test_step_schedule_matches_the_seeds():
    assert step_lr(0) == 0.04 and step_lr(999) == 0.04
    assert step_lr(1000) == 0.02 and step_lr(1399) == 0.02
    assert step_lr(1400) == 0.01 and step_lr(2200) == 0.0025
    assert step_lr(2600) == 0.00125 and step_lr(2999) == 0.00125
    assert scaled_milestones(300) == (100, 140, 180, 220, 260)
    assert scaled_base_lr(16) == pytest.approx(0.01)
    assert scaled_base_lr(64) == pytest.approx(0.04)


def test_class_weights_are_inverse_shares():
    weights = class_weights_from_counts([50, 30, 20, 0])
    np.testing.assert_allclose(weights, [1 / 1.5, 1 / 0.9, 1 / 0.6, 0.0], rtol=1e-6)
    assert np.dot(weights, [0.5, 0.3, 0.2, 0.0]) == pytest.approx(1.0)
    np.testing.assert_allclose(class_weights_from_counts([5, 5, 5, 5]), 1.0)
    with pytest.raises(ValueError):
        class_weights_from_counts([0, 0, 0, 0])


def test_weight_decay_only_on_non_bias_parameters():
    net = build_lsm(lsm_config("tiny", "ms"))
    decay, no_decay = parameter_groups(net, 1e-4)
    names = dict(net.named_parameters())
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    bias_ids = {id(p) for n, p in names.items() if n.endswith("bias")}
    assert {id(p) for p in no_decay["params"]} == bias_ids
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


def synthetic_section(boundary_col: int, rng: np.random.Generator, shape=(96, 160)):
    """Slide / cortex / white matter / cortex bands; the area is the upper cortex left of
    ``boundary_col`` and differs from other cortex by texture (stripes vs dots), not by mean grey."""
    classes = np.zeros(shape, np.int64)
    classes[20:50] = 2
    classes[50:72] = 1
    classes[72:] = 2
    classes[20:50, :boundary_col] = 3
    cols = np.mgrid[0 : shape[0], 0 : shape[1]][1]
    image = np.empty(shape)
    image[classes == 0] = 0.85
    image[classes == 1] = 0.65
    dots = 0.55 - 0.35 * (rng.random(shape) < 0.25)
    image[classes == 2] = dots[classes == 2]
    stripes = 0.46 + 0.15 * np.sign(np.sin(2 * np.pi * cols / 6.0))
    image[classes == 3] = stripes[classes == 3]
    image = np.clip(image + rng.normal(0, 0.05, shape), 0, 1)
    return (image * 255).astype(np.uint8), classes


def test_tiny_lsm_segments_the_area_on_an_in_between_section():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # the area border moves from column 100 (section s) to 60 (section t); u lies half-way
    image_s, classes_s = synthetic_section(100, rng)
    image_t, classes_t = synthetic_section(60, rng)
    image_u, classes_u = synthetic_section(80, rng)
    radius_mm = 1.0
    roi_s = training_roi(classes_s == 3, SPACING_UM, radius_mm)
    roi_t = training_roi(classes_t == 3, SPACING_UM, radius_mm)
    cfg = lsm_config("tiny", "hr")
    net = build_lsm(cfg)
    n_in = cfg.input_px()
    n_out = net.output_size(n_in)
    sampler = array_batch_sampler(
        [image_s, image_t],
        [classes_s, classes_t],
        [roi_s, roi_t],
        cfg,
        n_out,
        rng,
        image_spacing_um=SPACING_UM,
        label_spacing_um=SPACING_UM,
    )
    inputs, targets = sampler(0)
    assert inputs.shape == (cfg.batch_size, 1, n_in, n_in) and targets.shape[1:] == (n_out, n_out)
    weights = class_weights_from_counts(roi_class_counts([classes_s, classes_t], [roi_s, roi_t]))
    history = train_lsm(
        sampler,
        net,
        cfg.iterations,
        base_lr=cfg.base_lr,
        milestones=cfg.lr_milestones,
        class_weights=weights,
    )
    assert history["lr"][0] == cfg.base_lr and history["lr"][-1] == cfg.base_lr * 0.5**5
    assert history["final_loss"] < 0.75 * np.mean(history["loss"][:10])
    identity = np.eye(3)
    roi_u = prediction_roi(
        roi_s, roi_t, identity, identity, SPACING_UM, classes_u.shape, radius_mm=radius_mm
    )
    pred = predict_tiled(image_u, roi_u, net_predict_fn(net), n_in, n_out)
    f1 = area_f1(pred, classes_u, roi=roi_u)
    assert f1 > 0.7, f"area F1 {f1:.3f} on the in-between section"


def test_ms_training_step_runs_on_both_inputs():
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    image, classes = synthetic_section(80, rng)
    roi = np.ones(classes.shape, bool)
    cfg = lsm_config("tiny", "ms", batch_size=4)
    net = build_lsm(cfg)
    n_out = net.output_size(cfg.input_px())
    sampler = array_batch_sampler(
        [image],
        [classes],
        [roi],
        cfg,
        n_out,
        rng,
        image_spacing_um=SPACING_UM,
        label_spacing_um=SPACING_UM,
    )
    (x_hr, x_lr), _ = sampler(0)
    assert x_hr.shape[-1] == 60 and x_lr.shape[-1] == 84
    history = train_lsm(sampler, net, 2, base_lr=0.01)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()


def test_train_model_refuses_sections_without_their_roi_and_hr_weights_for_lr():
    from cortexgraph.lsm.data import SectionData

    unannotated = SectionData(
        section=5, spacing_um=SPACING_UM, shape=(8, 8), angle_rad=0.0, image=None
    )
    with pytest.raises(ValueError, match="section 5 has no class image and ROI"):
        train_model([unannotated], lsm_config("tiny", "hr"))
    with pytest.raises(ValueError, match="no high-resolution encoder"):
        train_model([unannotated], lsm_config("tiny", "lr"), init_hr={})
