"""iterate_batches: patches read in DataLoader worker processes equal patches read in the training
process, batch for batch, with cached windows and with reads from the files."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.data.manifest import Cohort
from cortexgraph.features.augment import sample_augmentation_params
from cortexgraph.features.dataset import (
    PatchReader,
    build_patch_table,
    default_loader_workers,
    iterate_batches,
)
from cortexgraph.features.presets import get_preset


@pytest.mark.parametrize("cache_mb", [256.0, 0.0])
def test_worker_processes_read_the_same_batches_in_order(tiny_cohort, cache_mb):
    cohort = Cohort.read(tiny_cohort)
    preset = get_preset("tiny")
    table = build_patch_table(cohort, preset)
    reader = PatchReader(cohort, table, preset, cache_mb=cache_mb)
    reader.prefetch()
    assert reader.caches_windows == (cache_mb > 0)
    rng = np.random.default_rng(5)
    plan = []
    for k in range(6):
        rows = rng.choice(len(table), size=9, replace=False)
        params = (
            None
            if k % 3 == 2
            else [sample_augmentation_params(rng, reader.augmentation) for _ in rows]
        )
        plan.append((rows, params))
    here = list(iterate_batches(reader, plan, workers=0))
    there = list(iterate_batches(reader, plan, workers=2, prefetch=2))
    assert len(here) == len(there) == 6
    for a, b in zip(here, there, strict=True):
        assert a.dtype == b.dtype == np.float32 and a.shape == (9, preset.patch_px, preset.patch_px)
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(here[0], here[1])
    reader.close()


def test_default_loader_workers_leave_cores_to_training(monkeypatch):
    import os

    for cpus, expected in ((1, 0), (2, 0), (3, 1), (4, 2), (16, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)))
        assert default_loader_workers() == expected
