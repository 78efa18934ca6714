"""Prediction of a section: the prediction ROI through known section transforms (eq. 5.65) and
exact tiled prediction for every orientation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cortexgraph.data.transforms import invert_rigid, rigid_matrix, rotation_about
from cortexgraph.lsm.data import ArrayImageSource, SectionData, section_transform
from cortexgraph.lsm.networks import lsm_config, with_output_tile
from cortexgraph.lsm.predict import interval_roi, predict_section
from cortexgraph.lsm.roi import dilate_mm, training_roi


def test_interval_roi_through_the_base_section():
    """eq. 5.65 with transforms composed through the base: s is shifted by 1 mm against the base,
    t rotated by 90 degrees about the image centre, u is the base itself."""
    spacing, n = 100.0, 60  # 6 mm square sections
    config = lsm_config("tiny", "hr", spacing_um=spacing, roi_radius_mm=1.0)
    shift = rigid_matrix(0.0, 1.0, 0.0)  # raw s -> base: +1 mm in x (10 px)
    turn = rotation_about(np.pi / 2, (3.0, 3.0))
    to_base = {1: shift, 2: np.eye(3), 3: turn}
    stack = SimpleNamespace(
        to_base=to_base, from_base={k: invert_rigid(v) for k, v in to_base.items()}
    )
    np.testing.assert_allclose(section_transform(stack, 1, 3), invert_rigid(turn) @ shift)
    area_s = np.zeros((n, n), bool)
    area_s[20:24, 10:30] = True
    area_t = np.zeros((n, n), bool)
    area_t[40:44, 40:44] = True
    data = [
        SectionData(s, spacing, (n, n), 0.0, None, roi=training_roi(a, spacing, 1.0))
        for s, a in ((1, area_s), (3, area_t))
    ]
    roi = interval_roi(stack, data[0], data[1], 2, (n, n), config)
    grown_s = dilate_mm(data[0].roi, spacing, 0.05)  # radius 1 mm -> 1.05 mm
    grown_t = dilate_mm(data[1].roi, spacing, 0.05)
    expected = np.zeros((n, n), bool)
    expected[:, 10:] = grown_s[:, :-10]
    expected |= np.rot90(grown_t, k=-1)  # +90 deg in (x right, y down) = clockwise quarter turn
    np.testing.assert_array_equal(roi, expected)


# --------------------------------------------------------------------------------------------------
# exact tiled prediction of a section


class CoordinateModel:
    """A 'network' that outputs the code of the image pixel under each output pixel (one-hot)."""

    def __init__(self, config, n_codes: int = 251):
        self.config = config
        self.n_codes = n_codes
        self.calls = 0

    def __call__(self, x_hr, x_lr=None):
        self.calls += 1
        m = self.config.output_px
        margin = (x_hr.shape[-1] - m) // 2
        window = x_hr[:, 0, margin : margin + m, margin : margin + m]
        codes = torch.round(window).long().clamp(max=self.n_codes - 1)  # padding: outside anyway
        return torch.nn.functional.one_hot(codes, self.n_codes).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("arch", ["hr", "ms"])
@pytest.mark.parametrize("quarter", [0, 1, 3])
def test_section_prediction_stitches_exactly(arch, quarter):
    shape = (37, 53)
    ii, jj = np.mgrid[0 : shape[0], 0 : shape[1]]
    codes = (ii * shape[1] + jj) % 251
    roi = ((ii - 12) ** 2 + (jj - 40) ** 2 <= 90) | ((ii > 25) & (jj < 9)) | ((ii == 0) & (jj == 0))
    tile = 8
    config = with_output_tile(lsm_config("tiny", arch, spacing_um=100.0), tile)
    model = CoordinateModel(config)
    pred = predict_section(
        model,
        ArrayImageSource(codes.astype(np.float32), 100.0),
        roi,
        quarter * np.pi / 2,
        tile_px=tile,
        batch_size=3,
        intensity_scale=1.0,
    )
    np.testing.assert_array_equal(pred, np.where(roi, codes, 255).astype(np.uint8))
    # only tiles touching the ROI are predicted: bbox 37 x 53 -> 5 x 7 tiles, fewer touch the ROI
    assert model.calls * 3 < 35
