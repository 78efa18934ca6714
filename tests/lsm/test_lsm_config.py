"""Model configuration for a brain's images: presets by spacing, scaled schedule, dict round trip."""

from __future__ import annotations

import pytest

from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.lsm.config import config_from_dict, config_to_dict, make_config


def test_make_config_scales_with_the_images():
    assert make_config("ms", 2.0).hr_spacing_um == 2.0  # the published full configuration
    assert make_config("ms", 2.0).input_px() == (2025, 628)
    cfg = make_config("ms", 100.0, iterations=150)
    assert (cfg.hr_spacing_um, cfg.output_spacing_um, cfg.lr_spacing_um) == (100.0, 200.0, 400.0)
    assert cfg.iterations == 150 and cfg.lr_milestones == (50, 70, 90, 110, 130)
    with pytest.raises(CortexgraphError):
        make_config("xl", 100.0)
    with pytest.raises(ParameterError, match="unknown preset"):
        make_config("ms", 100.0, preset="huge")
    with pytest.raises(ParameterError, match="bad model configuration"):
        make_config("ms", 100.0, no_such_field=1)


def test_config_dict_round_trip():
    config = make_config("ms", 100.0, iterations=150)
    values = config_to_dict(config)
    assert isinstance(values["lr_milestones"], list)
    assert config_from_dict(values | {"unknown": 1}) == config
