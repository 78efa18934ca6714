"""The encoder's patch data set on the tiny phantom: centres, splits, balancing, lazy reading."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cortexgraph.data.manifest import Cohort
from cortexgraph.data.stack import SectionStack
from cortexgraph.features.augment import AugmentationParams
from cortexgraph.features.dataset import (
    SPLITS,
    PatchReader,
    build_patch_table,
    epoch_indices,
)
from cortexgraph.features.presets import (
    PRESETS,
    get_preset,
    preset_for_spacing,
)
from cortexgraph.features.train import build_preset_encoder


@pytest.fixture(scope="module")
def table(tiny_cohort):
    cohort = Cohort.read(tiny_cohort)
    preset = get_preset("tiny")
    return cohort, preset, build_patch_table(cohort, preset)


def test_presets_cover_about_4mm_and_fit_their_encoders():
    for name, preset in PRESETS.items():
        assert 3.9 <= preset.patch_mm <= 4.9, name
        assert preset.step_mm == 1.0 and preset.temperature == 0.07
        assert preset.momentum == 0.9 and preset.weight_decay == 1e-4
        assert preset.trust_coefficient == 0.02 and preset.projection_dim == 256
        assert preset.ce_epoch_budget == preset.scl_epochs + preset.linear_epochs
    assert PRESETS["full"].samples_per_area == 1200 and PRESETS["full"].patch_px == 2048
    assert PRESETS["full"].spacing_um == 2.0 and PRESETS["full"].encoder == "resnet50"
    for name in ("demo", "tiny", "full-base"):
        encoder = build_preset_encoder(PRESETS[name])
        assert encoder.output_size(PRESETS[name].patch_px) >= 1
    assert preset_for_spacing(100.0).name == "demo"
    assert preset_for_spacing(160.0).name == "tiny"
    assert preset_for_spacing(40.0).name == "phantom-full"
    assert preset_for_spacing(2.0).name == "full"
    assert get_preset("demo").with_overrides(scl_epochs=3, linear_epochs=None).scl_epochs == 3


def test_split_and_transfer_brain(table):
    cohort, preset, t = table
    assert t.brains == ["B01", "B03", "B07"]
    b07 = t.brains.index("B07")
    assert (t.split[t.brain == b07] == SPLITS.index("transfer")).all()
    assert not (t.split[t.brain != b07] == SPLITS.index("transfer")).any()
    for b, brain_id in enumerate(t.brains[:2]):
        annotated = cohort.brain(brain_id).annotated_sections
        test_sections = set(np.unique(t.section[(t.brain == b) & (t.split == 1)]).tolist())
        expected = {s for k, s in enumerate(annotated) if k % 5 == 4}
        # every fifth annotated section is a test section (those with patch centres)
        assert test_sections <= expected and len(test_sections) >= len(expected) - 1
    counts = t.counts()
    assert counts["train"] > 4 * counts["test"] > 0 and counts["transfer"] > 0


def test_centres_lie_on_their_area(table):
    cohort, _, t = table
    brain = cohort.brain("B01")
    stack = SectionStack(brain)
    rows = np.flatnonzero(t.brain == 0)
    hits = []
    for section in np.unique(t.section[rows])[:6]:
        idx = rows[t.section[rows] == section]
        labels = stack.annotation(int(section))
        ij = np.floor(t.centre_mm[idx][:, ::-1] * 1000 / brain.annotation_spacing_um).astype(int)
        hits.append(labels[ij[:, 0], ij[:, 1]] == t.area_id[idx])
    assert np.mean(np.concatenate(hits)) > 0.97
    np.testing.assert_array_equal(t.label, cohort.areas.class_index(t.area_id))
    stack.close()


def test_epoch_indices_are_balanced_and_seeded(table):
    _, preset, t = table
    idx = epoch_indices(t, preset, seed=0, epoch=0)
    classes, counts = np.unique(t.label[idx], return_counts=True)
    np.testing.assert_array_equal(classes, np.unique(t.label[t.indices("train")]))
    assert (counts == preset.samples_per_area).all()
    assert (t.split[idx] == SPLITS.index("train")).all()
    np.testing.assert_array_equal(idx, epoch_indices(t, preset, seed=0, epoch=0))
    assert not np.array_equal(idx, epoch_indices(t, preset, seed=0, epoch=1))


def test_reader_cached_and_uncached_agree(table):
    cohort, preset, t = table
    cached = PatchReader(cohort, t, preset)
    uncached = PatchReader(cohort, t, preset, cache_mb=0)
    assert cached.caches_windows and not uncached.caches_windows
    rng = np.random.default_rng(0)
    idx = rng.choice(len(t), 64, replace=False)
    plain = cached.read(idx)
    np.testing.assert_array_equal(plain, uncached.read(idx))
    assert plain.shape == (64, preset.patch_px, preset.patch_px) and plain.dtype == np.float32
    # identity parameters read the plain patches
    identity = [AugmentationParams.identity()] * len(idx)
    np.testing.assert_array_equal(cached.read(idx, identity), plain)
    # geometric augmentation: both readers sample the same rotated, shifted windows
    params = [
        AugmentationParams(
            translation_um=(150 * math.cos(a), 150 * math.sin(a)), angle_rad=a, mirrored=bool(k % 2)
        )
        for k, a in enumerate(rng.uniform(-np.pi, np.pi, len(idx)))
    ]
    a, b = cached.read(idx, params), uncached.read(idx, params)
    assert np.abs(a - b).max() <= 1.0 / 255 + 1e-6 and np.mean(np.abs(a - b) > 1e-6) < 1e-3
    # full augmentation stays in [0, 1]
    x, drawn = cached.augmented_batch(idx, np.random.default_rng(1))
    assert len(drawn) == len(idx) and 0.0 <= x.min() and x.max() <= 1.0
    cached.close()
    uncached.close()
