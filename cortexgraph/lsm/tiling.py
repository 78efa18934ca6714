"""Tiled prediction of a local segmentation model over a region of interest.

The networks are unpadded (valid convolutions): an input tile of ``input_size`` px yields an output
tile of ``output_size`` px centred on it, i.e. with a margin of ``(input_size - output_size) / 2`` px on
each side (same spacing). The output grid is tiled without overlap, starting at the top-left corner of
the ROI's bounding box; input windows reaching outside the image are padded with ``pad_value``; output
pixels outside the image are dropped and pixels outside the ROI are set to ``outside_label``. Because
the tiles partition the bounding box, every ROI pixel is predicted exactly once (no seams, no gaps).
A real U-Net gives the same labels as one pass over the whole region when its up-convolutions are
valid (``upconv_padding="valid"``) and the output tile is a multiple of its total stride
(``2 ** len(decoder_filters)`` output px: 64 px tiles of the full configuration are).

Multi-resolution models (HR / MS read 2 um patches for a 16 um output) use :func:`predict_tiled_at`,
which hands the output-tile origins to a callable; :func:`tile_centre_mm` gives the patch centre that
goes with an origin (the publications do not describe their tiling: our choice).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cortexgraph.lsm.roi import mask_bbox
from cortexgraph.lsm.sampling import read_window


def tile_positions(
    roi_bbox: tuple[int, int, int, int], output_tile: int, input_tile: int
) -> tuple[np.ndarray, np.ndarray]:
    """Output and input tile origins covering a bounding box.

    Parameters
    ----------
    roi_bbox : (row0, row1, col0, col1), half-open, in output-grid pixels.
    output_tile : output tile edge (px).
    input_tile : input tile edge (px, same grid); ``input_tile - output_tile`` must be even and >= 0.

    Returns
    -------
    (out_origins, in_origins): two (n, 2) int64 arrays of (row, col) top-left corners, row-major.
    ``in_origin = out_origin - (input_tile - output_tile) // 2``.
    """
    margin2 = int(input_tile) - int(output_tile)
    if output_tile < 1 or margin2 < 0 or margin2 % 2:
        raise ValueError(
            f"input tile {input_tile} and output tile {output_tile}: the difference must be even and "
            "non-negative (valid convolutions crop the same margin on both sides)"
        )
    r0, r1, c0, c1 = (int(v) for v in roi_bbox)
    rows = np.arange(r0, max(r1, r0), output_tile)
    cols = np.arange(c0, max(c1, c0), output_tile)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    out = np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.int64)
    return out, out - margin2 // 2


def tile_centre_mm(
    out_origin: tuple[int, int] | np.ndarray, output_tile: int, spacing_um: float
) -> np.ndarray:
    """Centre (x_mm, y_mm) of output tile(s) with origin(s) (row, col) on a grid of ``spacing_um``.

    The network output is centred on its input patch, so this is where to centre the HR and LR patches.
    Works for one origin (2,) or many (n, 2).
    """
    origin = np.asarray(out_origin, dtype=np.float64)
    centre_rc = origin + output_tile / 2.0  # pixel-edge coordinates of the tile centre
    return centre_rc[..., ::-1] * spacing_um / 1000.0


def _as_labels(pred) -> np.ndarray:
    try:  # torch tensors
        pred = pred.detach().cpu().numpy()
    except AttributeError:
        pred = np.asarray(pred)
    if pred.ndim == 4:  # (B, C, h, w) scores -> labels
        pred = pred.argmax(axis=1)
    return pred


def predict_tiled_at(
    shape: tuple[int, int],
    roi: np.ndarray,
    predict_at: Callable[[np.ndarray], np.ndarray],
    output_size: int,
    *,
    batch_size: int = 16,
    outside_label: int = 0,
    dtype=None,
) -> np.ndarray:
    """Stitch a label image from a callable that predicts whole output tiles.

    Parameters
    ----------
    shape : (rows, cols) of the output grid (e.g. the section at the output spacing).
    roi : (rows, cols) bool; only tiles touching it are predicted, pixels outside it get
        ``outside_label``.
    predict_at : ``f(out_origins) -> labels``: (B, 2) int (row, col) tile origins -> (B, output_size,
        output_size) labels or (B, C, output_size, output_size) scores (argmax taken).
    output_size : output tile edge (px).
    batch_size : tiles per call.
    outside_label : label outside the ROI.
    dtype : output dtype (default: that of the first prediction).

    Returns
    -------
    (rows, cols) label image.
    """
    roi = np.asarray(roi, dtype=bool)
    if roi.shape != tuple(shape):
        raise ValueError(f"ROI shape {roi.shape} differs from the output shape {tuple(shape)}")
    box = mask_bbox(roi)
    out = None if dtype is None else np.full(shape, outside_label, dtype=dtype)
    if box is None:
        return np.full(shape, outside_label, dtype=dtype or np.int64)
    origins, _ = tile_positions(box, output_size, output_size)
    # keep only tiles that touch the ROI (integral image of the ROI)
    integral = np.pad(roi.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    r_lo = np.clip(origins[:, 0], 0, shape[0])
    c_lo = np.clip(origins[:, 1], 0, shape[1])
    r_hi = np.clip(origins[:, 0] + output_size, 0, shape[0])
    c_hi = np.clip(origins[:, 1] + output_size, 0, shape[1])
    count = (
        integral[r_hi, c_hi] - integral[r_lo, c_hi] - integral[r_hi, c_lo] + integral[r_lo, c_lo]
    )
    origins = origins[count > 0]
    for start in range(0, len(origins), batch_size):
        batch = origins[start : start + batch_size]
        pred = _as_labels(predict_at(batch))
        if pred.shape != (len(batch), output_size, output_size):
            raise ValueError(
                f"predict_at returned {pred.shape}, expected ({len(batch)}, {output_size}, "
                f"{output_size}) labels or (B, C, h, w) scores"
            )
        target = np.full(shape, outside_label, dtype=pred.dtype) if out is None else out
        out = target
        for (row, col), tile in zip(batch, pred, strict=True):
            r0, c0 = max(row, 0), max(col, 0)
            r1, c1 = min(row + output_size, shape[0]), min(col + output_size, shape[1])
            target[r0:r1, c0:c1] = tile[r0 - row : r1 - row, c0 - col : c1 - col]
    if out is None:  # no tile touched the ROI (cannot happen: the ROI's box is not empty)
        out = np.full(shape, outside_label, dtype=np.int64)
    out[~roi] = outside_label
    return out


def predict_tiled(
    image: np.ndarray,
    roi: np.ndarray,
    predict_fn: Callable[[np.ndarray], np.ndarray],
    input_size: int,
    output_size: int,
    *,
    batch_size: int = 16,
    pad_value: float = 0.0,
    outside_label: int = 0,
    rot90_k: int = 0,
) -> np.ndarray:
    """Tiled prediction over an ROI when input and output share one pixel grid (LR U-Net, tiny presets).

    Parameters
    ----------
    image : (rows, cols) image at the output spacing.
    roi : (rows, cols) bool region to predict.
    predict_fn : ``f(tiles) -> labels``: (B, input_size, input_size) input windows -> (B, output_size,
        output_size) labels or (B, C, output_size, output_size) scores.
    input_size, output_size : tile edges (px); the margin ``(input_size - output_size) / 2`` is the
        valid-convolution border of the network.
    batch_size : tiles per call.
    pad_value : image value used where windows reach outside the image.
    outside_label : label outside the ROI.
    rot90_k : orientation normalisation: predict on ``np.rot90(image, rot90_k)`` (see
        :func:`cortexgraph.lsm.sampling.superior_rot90`) and rotate the labels back.

    Returns
    -------
    (rows, cols) label image; ROI pixels carry the stitched predictions.
    """
    image = np.asarray(image)
    roi = np.asarray(roi, dtype=bool)
    if image.shape[:2] != roi.shape:
        raise ValueError(f"image {image.shape} and ROI {roi.shape} differ in shape")
    if rot90_k % 4:
        labels = predict_tiled(
            np.rot90(image, rot90_k),
            np.rot90(roi, rot90_k),
            predict_fn,
            input_size,
            output_size,
            batch_size=batch_size,
            pad_value=pad_value,
            outside_label=outside_label,
        )
        return np.ascontiguousarray(np.rot90(labels, -rot90_k))
    tile_positions((0, 1, 0, 1), output_size, input_size)  # validates the sizes
    margin = (int(input_size) - int(output_size)) // 2

    def predict_at(origins: np.ndarray) -> np.ndarray:
        tiles = np.stack(
            [
                read_window(
                    image, int(r) - margin, int(c) - margin, input_size, input_size, pad_value
                )
                for r, c in origins
            ]
        )
        return predict_fn(tiles)

    return predict_tiled_at(
        roi.shape, roi, predict_at, output_size, batch_size=batch_size, outside_label=outside_label
    )


def net_predict_fn(net, device=None, *, scale: float = 1.0 / 255.0) -> Callable:
    """Wrap an HR/LR :class:`~cortexgraph.lsm.networks.LSMUNet` as a ``predict_fn`` for
    :func:`predict_tiled`: tiles (B, n, n) -> argmax labels (B, m, m) as int64, eval mode, no grad.

    ``scale`` maps image values to [0, 1] (1/255 for 8-bit scans).
    """
    import torch

    device = torch.device(device) if device is not None else next(net.parameters()).device

    def predict(tiles: np.ndarray) -> np.ndarray:
        net.eval()
        x = torch.as_tensor(np.asarray(tiles, dtype=np.float32) * scale, device=device)
        with torch.no_grad():
            logits = net(x[:, None])
        return logits.argmax(dim=1).cpu().numpy().astype(np.int64)

    return predict
