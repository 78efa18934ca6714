"""The phantom's areas: the area seed gives new cytoarchitecture, brains vary around their areas'
laminar profiles, and border transition widths are drawn per area."""

from __future__ import annotations

import numpy as np
import pytest

from cortexgraph.synth.areas import (
    AREA_LAYOUT_SEED,
    brain_profiles,
    build_area_layout,
    transition_widths_mm,
)
from cortexgraph.synth.resources import load_surfaces


@pytest.fixture(scope="module")
def layouts():
    surface = load_surfaces()["lh"]
    return (
        build_area_layout(surface),
        build_area_layout(surface, area_seed=AREA_LAYOUT_SEED),
        build_area_layout(surface, area_seed=2027),
    )


def _adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


def test_the_same_area_seed_gives_the_same_layout(layouts):
    default, same, _ = layouts
    np.testing.assert_array_equal(default.vertex_area, same.vertex_area)
    for area_id, profile in default.profiles.items():
        np.testing.assert_array_equal(profile.density, same.profiles[area_id].density)


def test_another_area_seed_gives_other_areas_and_profiles(layouts):
    default, _, other = layouts
    cortex = default.vertex_area > 0
    assert len(other.areas) == len(default.areas) == 100
    # the partition of the cortex changes (ARI 1 = same areas)
    assert _adjusted_rand(default.vertex_area[cortex], other.vertex_area[cortex]) < 0.4
    # the landmark areas keep their names (and their hand-set profiles) under every seed
    names = {a.name for a in other.areas}
    assert {"hOc1", "hOc2", "4p", "p24a"} <= names
    # the generic areas get new profiles: their mean densities differ by > 5% for most areas
    generic = [a.id for a in other.areas if a.name not in ("hOc1", "hOc2", "4p", "p24a")]
    changed = [
        abs(other.profiles[i].density.mean() / default.profiles[i].density.mean() - 1) > 0.05
        for i in generic
    ]
    assert np.mean(changed) > 0.5


def test_brain_profiles_vary_by_the_stated_spread(layouts):
    default = layouts[0]
    assert brain_profiles(default.profiles, np.random.default_rng(0), 0.0) == default.profiles
    varied = brain_profiles(default.profiles, np.random.default_rng(0), 0.1)
    again = brain_profiles(default.profiles, np.random.default_rng(0), 0.1)
    log_ratio = np.concatenate([
        np.log(varied[i].density / p.density) for i, p in default.profiles.items()
    ] + [np.log(varied[i].size_um / p.size_um) for i, p in default.profiles.items()])  # fmt: skip
    # 1200 draws of N(0, 0.1): the sample s.d. lies within 0.1 +- 0.01 (about 5 standard errors)
    assert abs(log_ratio.std() - 0.1) < 0.01 and abs(log_ratio.mean()) < 0.01
    for i, p in varied.items():
        assert np.isclose(p.fraction.sum(), 1.0) and p.thickness_mm == default.profiles[i].thickness_mm
        np.testing.assert_array_equal(p.density, again[i].density)  # deterministic per rng


def test_transition_widths_are_drawn_per_area_around_the_mean():
    assert not transition_widths_mm(100, 0.0).any()
    widths = transition_widths_mm(100, 1.0)
    assert widths[0] == 0 and widths[1:].min() >= 0.5 and widths[1:].max() <= 1.5
    assert abs(widths[1:].mean() - 1.0) < 0.1
    np.testing.assert_array_equal(widths, transition_widths_mm(100, 1.0))
    assert not np.array_equal(widths, transition_widths_mm(100, 1.0, area_seed=2027))
