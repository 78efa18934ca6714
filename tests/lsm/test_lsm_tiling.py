"""Tiled prediction: exact stitching, checked with a model that outputs its own coordinates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cortexgraph.lsm.networks import build_lsm, lsm_config
from cortexgraph.lsm.tiling import (
    net_predict_fn,
    predict_tiled,
    predict_tiled_at,
    tile_centre_mm,
    tile_positions,
)

SHAPE = (37, 53)
CODE = 1000  # pixel (i, j) carries the value i * CODE + j


def coordinate_image(shape=SHAPE) -> np.ndarray:
    ii, jj = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (ii * CODE + jj).astype(np.int64)


def centre_crop_fn(input_size: int, output_size: int, seen: list | None = None):
    """A 'network' with valid-convolution margins that outputs the centre of its input tile."""
    m = (input_size - output_size) // 2

    def predict(tiles: np.ndarray) -> np.ndarray:
        assert tiles.shape[1:] == (input_size, input_size)
        if seen is not None:
            seen.append(len(tiles))
        return tiles[:, m : m + output_size, m : m + output_size]

    return predict


def rois() -> dict[str, np.ndarray]:
    ii, jj = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    out = {"whole image": np.ones(SHAPE, bool)}
    out["disc at the top-left corner"] = ii**2 + jj**2 <= 15**2
    out["bottom-right corner"] = (ii >= 30) & (jj >= 41)
    out["single pixel"] = (ii == SHAPE[0] - 1) & (jj == 0)
    out["two blobs"] = ((ii - 10) ** 2 + (jj - 40) ** 2 <= 30) | (
        (ii - 30) ** 2 + (jj - 8) ** 2 <= 20
    )
    return out


@pytest.mark.parametrize("sizes", [(15, 5), (12, 4), (9, 9), (20, 8), (31, 1)])
@pytest.mark.parametrize("roi_name", list(rois()))
def test_stitching_reproduces_the_coordinate_grid(sizes, roi_name):
    input_size, output_size = sizes
    roi = rois()[roi_name]
    image = coordinate_image()
    labels = predict_tiled(
        image,
        roi,
        centre_crop_fn(input_size, output_size),
        input_size,
        output_size,
        batch_size=3,
        pad_value=-7,
        outside_label=-1,
    )
    expected = np.where(roi, image, -1)
    np.testing.assert_array_equal(labels, expected)


def test_stitching_with_orientation_normalisation():
    roi = rois()["two blobs"]
    image = coordinate_image()
    for k in range(4):
        labels = predict_tiled(
            image, roi, centre_crop_fn(15, 5), 15, 5, outside_label=-1, rot90_k=k
        )
        np.testing.assert_array_equal(labels, np.where(roi, image, -1))


def test_predict_tiled_at_origins_and_tile_skipping():
    roi = np.zeros(SHAPE, bool)
    roi[0:3, 0:3] = True
    roi[30:37, 50:53] = True
    calls = []

    def predict_at(origins):
        calls.append(len(origins))
        rr, cc = np.mgrid[0:8, 0:8]
        return np.stack([(r + rr) * CODE + (c + cc) for r, c in origins])

    labels = predict_tiled_at(SHAPE, roi, predict_at, 8, batch_size=100, outside_label=-1)
    np.testing.assert_array_equal(labels, np.where(roi, coordinate_image(), -1))
    # bbox 37 x 53 -> 5 x 7 tiles, of which only 3 touch the ROI: (0, 0), (24, 48), (32, 48)
    assert sum(calls) == 3


def test_scores_are_turned_into_labels():
    roi = np.ones((10, 10), bool)

    def scores(tiles):
        out = np.zeros((len(tiles), 4, 5, 5))
        out[:, 2] = 1.0
        return out

    labels = predict_tiled(np.zeros((10, 10)), roi, scores, 5, 5)
    assert (labels == 2).all()


def test_tile_positions_and_centres():
    out, inp = tile_positions((2, 12, 3, 10), 4, 10)
    assert out.tolist() == [[2, 3], [2, 7], [6, 3], [6, 7], [10, 3], [10, 7]]
    np.testing.assert_array_equal(inp, out - 3)
    with pytest.raises(ValueError):
        tile_positions((0, 4, 0, 4), 4, 9)  # odd margin
    np.testing.assert_allclose(tile_centre_mm((0, 0), 64, 16.0), [0.512, 0.512])
    np.testing.assert_allclose(tile_centre_mm(np.array([[2, 1]]), 4, 100.0), [[0.3, 0.4]])


def test_tiles_of_a_real_network_have_no_seams():
    """Tiled prediction equals one forward pass over the whole padded image.

    Needs valid up-convolutions and an output tile that is a multiple of the network's total stride
    (4 output px for the tiny preset), so that every tile sees the same pooling phase.
    """
    torch.manual_seed(0)
    cfg = lsm_config("tiny", "hr", upconv_padding="valid", output_patch_um=12 * 20.0)
    net = build_lsm(cfg).eval()
    whole_net = build_lsm(replace(cfg, output_patch_um=None)).eval()
    whole_net.load_state_dict(net.state_dict())
    n_in = cfg.input_px()
    n_out = net.output_size(n_in)
    assert (n_in, n_out) == (60, 12)
    margin = (n_in - n_out) // 2
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (4 * n_out, 3 * n_out)).astype(np.float32)
    roi = np.ones(image.shape, bool)
    tiled = predict_tiled(image, roi, net_predict_fn(net), n_in, n_out, batch_size=4)
    padded = np.pad(image, margin)
    with torch.no_grad():
        logits = whole_net(torch.from_numpy(padded / 255.0)[None, None].float())
    whole = logits.argmax(1)[0, 1:-1, 1:-1].numpy()  # the natural output is 1 px larger per side
    assert whole.shape == image.shape
    assert np.mean(tiled == whole) > 0.999
