"""Phantom presets and the options that make a phantom harder."""

from __future__ import annotations

import math

import pytest

from cortexgraph.errors import ParameterError
from cortexgraph.synth.presets import AREA_LAYOUT_SEED, get_preset, harder_preset


def test_harder_preset_replaces_only_what_is_given():
    tiny = get_preset("tiny")
    assert harder_preset("tiny") == tiny
    assert tiny.area_seed == AREA_LAYOUT_SEED and tiny.profile_variability == 0
    hard = harder_preset(tiny, area_seed=2027, profile_variability=0.1, transition_mm=1.0,
                         transform_noise_deg=0.5, transform_noise_um=None)  # fmt: skip
    assert (hard.area_seed, hard.profile_variability, hard.transition_mm) == (2027, 0.1, 1.0)
    assert hard.transform_noise_deg == 0.5 and hard.transform_noise_um == tiny.transform_noise_um
    assert hard.image_spacing_um == tiny.image_spacing_um


@pytest.mark.parametrize("option, value", [
    ("profile_variability", -0.1), ("profile_variability", 3.0), ("transition_mm", math.nan),
    ("transform_noise_deg", -1.0), ("area_seed", -5), ("voxel_mm", 1.0),
])  # fmt: skip
def test_bad_amounts_are_refused_with_the_option_named(option, value):
    with pytest.raises(ParameterError) as caught:
        harder_preset("tiny", **{option: value})
    assert option.replace("_", "-") in str(caught.value) or option in str(caught.value)
