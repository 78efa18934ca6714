"""Model files: weights with configuration and metadata, and training ROIs, written atomically and
read back unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm.model_files import load_model, load_rois, save_model, save_rois
from cortexgraph.lsm.networks import build_lsm, lsm_config


def test_rois_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rois = {422: rng.random((7, 9)) > 0.5, 1142: rng.random((5, 4)) > 0.3}
    path = save_rois(tmp_path / "rois.npz", rois, 320.0)
    loaded, spacing = load_rois(path)
    assert spacing == 320.0 and set(loaded) == {422, 1142}
    for key, roi in rois.items():
        np.testing.assert_array_equal(loaded[key], roi)
    assert [p.name for p in tmp_path.iterdir()] == ["rois.npz"]  # no temporary file left


def test_model_round_trip(tmp_path):
    torch.manual_seed(0)
    config = lsm_config("tiny", "ms", spacing_um=100.0)
    net = build_lsm(config).eval()
    path = save_model(tmp_path / "model.pt", net, config, {"interval": [722, 842]})
    loaded, loaded_config, meta = load_model(path)
    assert loaded_config == config and meta == {"interval": [722, 842]} and not loaded.training
    for key, value in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    with pytest.raises(CortexgraphError, match="model not found"):
        load_model(tmp_path / "missing.pt")
