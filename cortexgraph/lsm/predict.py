"""Prediction of one section by a trained local segmentation model (Schiffer et al. 2021,
NeuroImage, Sect. 2.6; Schiffer, PhD thesis, Sect. 5.1.5): tiled prediction over the prediction ROI
of eq. 5.65 (:func:`section_roi`: the two training ROIs enlarged by 1.05 and transformed onto the
section), with orientation normalisation. The global model (GSM, NeuroImage paper Sect. 2.7) of an
area predicts the same sections within the same ROIs, so the two are scored on identical pixels.

Inputs are arrays and image sources; outputs are label arrays (no files).
"""

from __future__ import annotations

import numpy as np
import torch

from cortexgraph.data.stack import SectionStack
from cortexgraph.lsm.data import OUTSIDE_ROI, SectionData, section_transform
from cortexgraph.lsm.networks import LSMConfig, LSMUNet, build_lsm, with_output_tile
from cortexgraph.lsm.roi import prediction_roi
from cortexgraph.lsm.tiling import predict_tiled_at, tile_centre_mm


def tile_network(net, tile_px: int):
    """A copy of ``net`` that outputs ``tile_px`` px tiles (same weights; the unpadded network's
    weights do not depend on the patch size)."""
    config = with_output_tile(net.config, tile_px)
    tiled = build_lsm(config)
    tiled.load_state_dict(net.state_dict())
    device = next(net.parameters()).device
    return tiled.to(device).eval()


def predict_section(
    net,
    image,
    roi: np.ndarray,
    angle_rad: float = 0.0,
    *,
    tile_px: int = 64,
    batch_size: int = 8,
    intensity_scale: float = 1.0 / 255.0,
) -> np.ndarray:
    """Tiled prediction of one section over its ROI.

    Parameters
    ----------
    net : a trained :class:`~cortexgraph.lsm.networks.LSMUNet` (its config gives spacings; a copy
        with ``tile_px`` output tiles does the work), or any callable ``f(*patches) -> (B, C, tile_px,
        tile_px)`` scores with a ``config`` attribute whose output tile is ``tile_px``.
    image : image source of the section (``patch(centre_mm, size_px, spacing_um, angle_rad)``).
    roi : (rows, cols) bool prediction ROI at ``net.config.output_spacing_um`` (the output grid).
    angle_rad : orientation normalisation (a multiple of pi/2): patches are read rotated by it and
        the predicted tiles rotated back.
    tile_px : output tile edge (px); the HR / LR patches are the smallest that give it.
    batch_size : tiles per forward pass.
    intensity_scale : image values -> [0, 1].

    Returns
    -------
    (rows, cols) uint8: classes 0..3 inside the ROI, ``OUTSIDE_ROI`` (255) outside.
    """
    config = net.config
    quarter = int(round(angle_rad / (np.pi / 2)))
    if abs(angle_rad - quarter * np.pi / 2) > 1e-9:
        raise ValueError("orientation normalisation must be a multiple of 90 degrees")
    if isinstance(net, LSMUNet):
        tiled = net if config.output_px == tile_px else tile_network(net, tile_px)
        device = next(tiled.parameters()).device
    else:  # any callable with a ``config`` whose output tile is ``tile_px`` (tests)
        tiled, device = net, torch.device("cpu")
        if config.output_px != tile_px:
            raise ValueError(f"the model outputs {config.output_px} px tiles, not {tile_px}")
    sizes = tiled.config.input_px()  # (hr_px, lr_px) for MS, else one size
    hr_px, lr_px = sizes if isinstance(sizes, tuple) else (sizes, sizes)
    spacing = config.output_spacing_um

    def predict_at(origins: np.ndarray) -> np.ndarray:
        centres = tile_centre_mm(origins, tile_px, spacing)
        inputs = []
        if config.uses_hr:
            inputs.append([image.patch(c, hr_px, config.hr_spacing_um, angle_rad) for c in centres])
        if config.uses_lr:
            inputs.append([image.patch(c, lr_px, config.lr_spacing_um, angle_rad) for c in centres])
        tensors = [
            torch.from_numpy(np.stack(x)[:, None] * np.float32(intensity_scale)).to(device)
            for x in inputs
        ]
        with torch.no_grad():
            logits = tiled(*tensors)
        labels = logits.argmax(dim=1).cpu().numpy().astype(np.uint8)
        return np.ascontiguousarray(np.rot90(labels, quarter, axes=(1, 2)))

    return predict_tiled_at(
        roi.shape,
        roi,
        predict_at,
        tile_px,
        batch_size=batch_size,
        outside_label=OUTSIDE_ROI,
        dtype=np.uint8,
    )


def section_roi(
    roi_s: np.ndarray,
    roi_t: np.ndarray,
    phi_s: np.ndarray,
    phi_t: np.ndarray,
    shape: tuple[int, int],
    config: LSMConfig,
) -> np.ndarray:
    """Prediction ROI (eq. 5.65) on a section of the model trained on s and t.

    Parameters
    ----------
    roi_s, roi_t : training ROIs of s and t (bool, at ``config.output_spacing_um``).
    phi_s, phi_t : 3x3 matrices mapping raw mm of s (t) onto the section (:func:`~cortexgraph.lsm.data.section_transform`).
    shape : (rows, cols) of the section at the output spacing.
    config : gives the spacing, the ROI radius and its enlargement.
    """
    return prediction_roi(
        roi_s,
        roi_t,
        np.asarray(phi_s, dtype=np.float64),
        np.asarray(phi_t, dtype=np.float64),
        config.output_spacing_um,
        shape,
        scale=config.roi_enlarge,
        radius_mm=config.roi_radius_mm,
    )


def interval_roi(
    stack: SectionStack,
    data_s: SectionData,
    data_t: SectionData,
    section: int,
    shape: tuple[int, int],
    config: LSMConfig,
) -> np.ndarray:
    """Prediction ROI (eq. 5.65) on ``section`` of the model trained on ``data_s`` and ``data_t``."""
    if data_s.roi is None or data_t.roi is None:
        raise ValueError("interval_roi needs the training ROIs of both annotated sections")
    return section_roi(
        data_s.roi,
        data_t.roi,
        section_transform(stack, data_s.section, section),
        section_transform(stack, data_t.section, section),
        shape,
        config,
    )
