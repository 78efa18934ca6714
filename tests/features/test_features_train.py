"""train-encoder on the tiny phantom: outputs, learning above chance, checkpoints, encoder files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cortexgraph.data.manifest import Cohort
from cortexgraph.features.dataset import PatchReader, build_patch_table
from cortexgraph.features.presets import get_preset
from cortexgraph.features.train import (
    chance_macro_f1,
    encode_patches,
    load_encoder,
    train_ce,
)
from cortexgraph.training.metrics import macro_f1


def test_chance_macro_f1_matches_random_guessing():
    rng = np.random.default_rng(0)
    y = rng.choice(6, size=60_000, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
    guesses = rng.integers(0, 8, size=y.size)  # 8 training classes, 2 never in y
    assert chance_macro_f1(y, 8) == pytest.approx(macro_f1(y, guesses), abs=0.005)
    assert chance_macro_f1(np.array([0, 0, 1, 1]), 2) == pytest.approx(0.5)


def test_outputs_and_training_beats_chance(features_cohort):
    root, encoder_path = features_cohort
    out = encoder_path.parent
    for name in (
        "encoder.pt",
        "ce.pt",
        "metrics.json",
        "confusion.png",
        "embedding.png",
        "patches.tsv",
        "checkpoints/scl/last.pt",
    ):
        assert (out / name).is_file(), name
    record = json.loads((out.parents[1] / "records" / f"train-encoder@{out.name}.json").read_text())
    assert record["measured"]["ce_macro_f1"]["test"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["ce"]["test"]["macro_f1"]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["brains"]["transfer"] == ["B07"]
    for run in ("scl_linear", "ce"):
        scores = metrics[run]
        assert set(scores) == {"train", "test", "transfer"}
        for split in ("train", "test", "transfer"):
            assert 0.0 <= scores[split]["macro_f1"] <= 1.0
        # the tiny budget still learns: on its ~2500 training patches of 16 areas, random
        # guessing scores 0.056 +- 0.004 (s.d. of 200 draws); both runs must beat it by half again
        train = scores["train"]
        assert train["macro_f1"] > 1.5 * train["chance_macro_f1"], run
    assert len(metrics["history"]["scl"]) == 8 and len(metrics["history"]["ce"]) == 11
    scl_loss = [h["loss"] for h in metrics["history"]["scl"]]
    assert scl_loss[-1] < scl_loss[0]


def test_encoder_files_load(features_cohort):
    root, encoder_path = features_cohort
    cohort = Cohort.read(root)
    for name, kind in (("encoder.pt", "scl"), ("ce.pt", "ce")):
        classifier, preset, info = load_encoder(encoder_path.parent / name)
        assert info["kind"] == kind and preset.name == "tiny"
        assert preset.samples_per_area == 32  # the overrides of the run are stored
        assert classifier.num_classes == len(cohort.areas)
        assert info["area_ids"] == cohort.areas.ids.tolist()
        x = np.random.default_rng(0).random((3, preset.patch_px, preset.patch_px), np.float32)
        h = encode_patches(classifier.encoder, x)
        assert h.shape == (3, 64) and np.isfinite(h).all()
    with pytest.raises(Exception, match="not found"):
        load_encoder(root / "nowhere.pt")


def test_checkpoint_resume_continues_identically(tiny_cohort, tmp_path):
    cohort = Cohort.read(tiny_cohort)
    preset = get_preset("tiny").with_overrides(
        samples_per_area=4, batch_size=24, scl_epochs=1, linear_epochs=1
    )
    table = build_patch_table(cohort, preset, brains=["B03"])
    reader = PatchReader(cohort, table, preset)
    k = len(cohort.areas)
    straight, h1 = train_ce(table, reader, preset, k, seed=3, checkpoint_dir=tmp_path / "a")
    one = preset.with_overrides(ce_epochs=1)
    train_ce(table, reader, one, k, seed=3, checkpoint_dir=tmp_path / "b")
    resumed, h2 = train_ce(table, reader, preset, k, seed=3, checkpoint_dir=tmp_path / "b")
    assert [h["epoch"] for h in h2] == [1, 2]
    assert h1[-1]["loss"] == pytest.approx(h2[-1]["loss"], rel=1e-6)
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name
    reader.close()


def test_a_run_whose_transfer_brain_the_encoder_saw_is_refused(features_cohort):
    from cortexgraph.errors import ParameterError
    from cortexgraph.gnn.stage import train_gnn

    root, encoder_path = features_cohort  # the encoder held out B07
    with pytest.raises(ParameterError, match="would score B03 with features learned from it") as err:
        train_gnn(root, encoder=encoder_path.parent.name, transfer="B03", preset="demo")
    assert "--transfer B03" in str(err.value) and "held out B07" in str(err.value)
