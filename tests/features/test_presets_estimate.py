"""The run-time estimate ``train-encoder`` prints before training on a CPU."""

from __future__ import annotations

import logging

import pytest

from cortexgraph.features.presets import PRESETS, estimate_training_seconds


def test_estimates_grow_with_the_preset():
    tiny, tiny_step = estimate_training_seconds("tiny", 40)
    demo, _ = estimate_training_seconds("demo", 40)
    full, full_step = estimate_training_seconds("full", 113)
    assert 0 < tiny < demo < 3600  # the CPU presets: seconds to minutes
    assert full > 365 * 86400  # the method's ResNet50 on 2048 px patches: years on a CPU
    assert full_step > 100 * tiny_step
    # the whole run is the step time times the patch passes of all epochs
    preset = PRESETS["tiny"]
    passes = preset.samples_per_area * 40
    epochs = preset.scl_epochs + preset.ce_epoch_budget + (preset.linear_epochs + 2) / 3
    assert tiny == pytest.approx(tiny_step * passes * epochs, rel=1e-9)


def test_train_encoder_announces_the_estimate(tiny_cohort, caplog):
    from cortexgraph.cli.features import _announce_encoder
    from cortexgraph.data.manifest import Cohort

    caplog.set_level(logging.INFO, logger="cortexgraph")
    _announce_encoder(Cohort.read(tiny_cohort), "auto", "cpu", None)
    assert "preset tiny (auto: by the image spacing)" in caplog.text
    assert "on this CPU" in caplog.text and "WARNING" not in caplog.text
    caplog.clear()
    _announce_encoder(Cohort.read(tiny_cohort), "phantom-full", "cpu", None)
    assert "sized for GPUs" in caplog.text and "--preset demo" in caplog.text
