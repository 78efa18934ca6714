"""``--preset auto`` picks the settings for the machine, and training prints an estimate first."""

from __future__ import annotations

import logging

import pytest

from cortexgraph.gnn.stage import (
    AUTO_PRESET,
    PRESETS,
    _announce,
    estimate_train_seconds,
    resolve_preset,
)


def test_auto_is_the_method_on_a_gpu_and_the_small_preset_on_a_cpu():
    assert resolve_preset("auto", "cuda") == "seeds"
    assert resolve_preset("auto", "cpu") == "demo" == AUTO_PRESET["cpu"]
    assert resolve_preset("seeds", "cpu") == "seeds"  # an explicit preset is kept


def test_estimates_match_the_measured_throughput():
    # benchmarks/results/gnn.md: GAT3 at width 512 on demo-sized graphs took 189 CPU-s for one
    # epoch of 22,095 training nodes; width 64 (the demo preset) ~62 s for 6 epochs
    seeds = PRESETS["seeds"]
    one_epoch = estimate_train_seconds("gat", 3, seeds["hidden"], 1, 22095, "cpu")
    assert one_epoch == pytest.approx(189, rel=0.25)
    demo = PRESETS["demo"]
    assert estimate_train_seconds("gat", 3, demo["hidden"], 6, 22095, "cpu") == pytest.approx(
        62, rel=0.5
    )
    # the README trap: the method's preset on a CPU is hours
    assert estimate_train_seconds("gat", 3, 512, 100, 22095, "cpu") > 3 * 3600
    # deeper networks and wider layers cost more; no estimate on a GPU (not measured)
    assert estimate_train_seconds("gat", 5, 64, 6, 1000, "cpu") > estimate_train_seconds(
        "gat", 3, 64, 6, 1000, "cpu"
    )
    assert estimate_train_seconds("gat", 3, 512, 100, 22095, "cuda") is None


def test_the_estimate_and_a_warning_are_logged_before_training(caplog):
    caplog.set_level(logging.INFO, logger="cortexgraph")
    _announce("seeds", "seeds", PRESETS["seeds"], "gat", 3, 22095, "cpu")
    assert "preset seeds: width 512, 100 epochs" in caplog.text
    assert "about 5.2 h on this CPU" in caplog.text or " h on this CPU" in caplog.text
    assert "--preset demo" in caplog.text  # the fix
    caplog.clear()
    _announce("demo", "auto", PRESETS["demo"], "gat", 3, 22095, "cpu")
    assert "preset demo (auto on cpu)" in caplog.text and "WARNING" not in caplog.text
