"""Regions of interest (ROI) of a local segmentation model.

Training ROI (Schiffer et al. 2021, NeuroImage, Sect. 2.5, "Patchwise training"; Schiffer, PhD thesis,
Sect. 5.1.2 and Fig. 5.2): ``R_s(A; r)`` = all pixels of section ``s``
whose centre lies within ``r`` (5 mm) of a pixel centre annotated as area ``A``.

Prediction ROI (thesis Sect. 5.1.2, eq. 5.65), for ``s < u < t``::

    R~_u(A; r, s, t) = Phi_{s->u}(R_s(A; e_r r))  U  Phi_{t->u}(R_t(A; e_r r)),   e_r = 1.05

i.e. the enlargement multiplies the *radius* (5 mm -> 5.25 mm); it is not a scaling about the ROI
centroid. Given only the training ROIs, ``R_s(A; e_r r)`` is obtained exactly (in the continuum) as the
dilation of ``R_s(A; r)`` by a disc of radius ``(e_r - 1) r`` (Minkowski sums of discs add their radii);
:func:`prediction_roi_from_areas` evaluates eq. 5.65 from the annotations directly. A centroid scaling
(``enlarge="centroid"``) is available as an alternative reading.

Conventions: pixel (i, j) at spacing ``s`` um has its centre at ``((j + 0.5) s / 1000, (i + 0.5) s / 1000)``
mm (x right, y down); ``T_s_to_u`` is a 3x3 homogeneous matrix with ``[x_u, y_u, 1] = T @ [x_s, y_s, 1]``.
Masks are resampled by nearest neighbour: a pixel of ``u`` belongs to the warped mask when its centre,
mapped back onto ``s``, falls inside a mask pixel of ``s``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(row0, row1, col0, col1)`` (half-open) of the True pixels, None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def dilate_mm(mask: np.ndarray, spacing_um: float, radius_mm: float) -> np.ndarray:
    """Pixels whose centre lies within ``radius_mm`` of a True pixel centre (Euclidean, in mm).

    The distance transform runs only on the mask's bounding box grown by the radius.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    box = mask_bbox(mask)
    if box is None:
        return out
    spacing_mm = spacing_um / 1000.0
    margin = int(np.floor(radius_mm / spacing_mm)) + 1
    r0, r1 = max(box[0] - margin, 0), min(box[1] + margin, mask.shape[0])
    c0, c1 = max(box[2] - margin, 0), min(box[3] + margin, mask.shape[1])
    crop = mask[r0:r1, c0:c1]
    distance_mm = ndimage.distance_transform_edt(~crop, sampling=spacing_mm)
    # a tiny tolerance keeps lattice points exactly at the radius despite float rounding
    out[r0:r1, c0:c1] = distance_mm <= radius_mm * (1 + 1e-9) + 1e-12
    return out


def training_roi(area_mask: np.ndarray, spacing_um: float, radius_mm: float = 5.0) -> np.ndarray:
    """Training ROI ``R_s(A; r)``: pixels within ``radius_mm`` of the area (eq. 5.65 with e_r = 1).

    Parameters
    ----------
    area_mask : (rows, cols) bool, the annotation of area A on the section.
    spacing_um : pixel spacing of the mask.
    radius_mm : ROI radius r (5 mm in the publications).

    Returns
    -------
    (rows, cols) bool mask; empty when the area is empty.
    """
    return dilate_mm(area_mask, spacing_um, radius_mm)


def warp_mask(
    mask: np.ndarray,
    transform: np.ndarray,
    spacing_um: float,
    shape_out: tuple[int, int],
    spacing_out_um: float | None = None,
) -> np.ndarray:
    """Nearest-neighbour resampling of a mask through a rigid/affine transform.

    Parameters
    ----------
    mask : (rows, cols) bool on the source section.
    transform : 3x3 matrix mapping source mm coordinates to target mm coordinates.
    spacing_um : source pixel spacing.
    shape_out : (rows, cols) of the target section.
    spacing_out_um : target pixel spacing (default: ``spacing_um``).

    Returns
    -------
    (rows, cols) bool mask on the target: True where the pixel centre maps back into a True pixel.
    Only the target pixels inside the transformed bounding box of the mask are evaluated.
    """
    mask = np.asarray(mask, dtype=bool)
    spacing_out_um = spacing_um if spacing_out_um is None else spacing_out_um
    out = np.zeros(tuple(shape_out), dtype=bool)
    box = mask_bbox(mask)
    if box is None:
        return out
    transform = np.asarray(transform, dtype=np.float64)
    s_in, s_out = spacing_um / 1000.0, spacing_out_um / 1000.0
    # corners of the source bbox (pixel edges) -> target, to bound the evaluation window
    r0, r1, c0, c1 = box
    corners = np.array([[c0, r0], [c1, r0], [c0, r1], [c1, r1]], dtype=np.float64) * s_in
    mapped = corners @ transform[:2, :2].T + transform[:2, 2]
    j_lo = max(int(np.floor(mapped[:, 0].min() / s_out)) - 1, 0)
    j_hi = min(int(np.ceil(mapped[:, 0].max() / s_out)) + 1, shape_out[1])
    i_lo = max(int(np.floor(mapped[:, 1].min() / s_out)) - 1, 0)
    i_hi = min(int(np.ceil(mapped[:, 1].max() / s_out)) + 1, shape_out[0])
    if i_lo >= i_hi or j_lo >= j_hi:
        return out
    inverse = np.linalg.inv(transform)
    x_out = (np.arange(j_lo, j_hi) + 0.5) * s_out
    y_out = (np.arange(i_lo, i_hi) + 0.5) * s_out
    xx, yy = np.meshgrid(x_out, y_out)
    x_src = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
    y_src = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
    # nearest pixel = the pixel whose square contains the point (a tiny epsilon settles points that
    # fall exactly on a pixel edge up to float rounding)
    j_src = np.floor(x_src / s_in + 1e-9).astype(np.int64)
    i_src = np.floor(y_src / s_in + 1e-9).astype(np.int64)
    inside = (i_src >= 0) & (i_src < mask.shape[0]) & (j_src >= 0) & (j_src < mask.shape[1])
    values = np.zeros(xx.shape, dtype=bool)
    values[inside] = mask[i_src[inside], j_src[inside]]
    out[i_lo:i_hi, j_lo:j_hi] = values
    return out


def scale_about_centroid(mask: np.ndarray, scale: float) -> np.ndarray:
    """Scale a mask by ``scale`` about its centroid (nearest neighbour); alternative ROI enlargement."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    ci, cj = (float(v) for v in np.argwhere(mask).mean(axis=0))
    # in pixel units (spacing cancels): p' = c + scale (p - c); as a 3x3 matrix on (x=j+.5, y=i+.5)
    cx, cy = cj + 0.5, ci + 0.5
    matrix = np.array(
        [[scale, 0.0, cx * (1 - scale)], [0.0, scale, cy * (1 - scale)], [0.0, 0.0, 1.0]]
    )
    return warp_mask(mask, matrix, 1000.0, mask.shape)


def prediction_roi(
    roi_s: np.ndarray,
    roi_t: np.ndarray,
    T_s_to_u: np.ndarray,
    T_t_to_u: np.ndarray,
    spacing_um: float,
    shape_u: tuple[int, int],
    scale: float = 1.05,
    *,
    radius_mm: float = 5.0,
    enlarge: str = "radius",
) -> np.ndarray:
    """Prediction ROI on an in-between section ``u`` from the two training ROIs (eq. 5.65).

    Parameters
    ----------
    roi_s, roi_t : training ROIs ``R_s(A; r)``, ``R_t(A; r)`` (bool, same spacing).
    T_s_to_u, T_t_to_u : 3x3 matrices mapping section s (t) mm coordinates onto section u.
    spacing_um : pixel spacing of the ROIs and of the output.
    shape_u : (rows, cols) of section u at that spacing.
    scale : enlargement factor e_r (1.05).
    radius_mm : the radius r the training ROIs were built with (5 mm).
    enlarge : ``"radius"`` (eq. 5.65: the ROI radius becomes ``e_r r``, implemented as a dilation by
        ``(e_r - 1) r``) or ``"centroid"`` (each ROI scaled by ``e_r`` about its centroid).

    Returns
    -------
    (rows, cols) bool mask on section u.
    """
    grown = []
    for roi in (roi_s, roi_t):
        if enlarge == "radius":
            grown.append(dilate_mm(roi, spacing_um, (scale - 1.0) * radius_mm))
        elif enlarge == "centroid":
            grown.append(scale_about_centroid(roi, scale))
        else:
            raise ValueError(f"enlarge must be 'radius' or 'centroid', not {enlarge!r}")
    return warp_mask(grown[0], T_s_to_u, spacing_um, shape_u) | warp_mask(
        grown[1], T_t_to_u, spacing_um, shape_u
    )


def prediction_roi_from_areas(
    area_s: np.ndarray,
    area_t: np.ndarray,
    T_s_to_u: np.ndarray,
    T_t_to_u: np.ndarray,
    spacing_um: float,
    shape_u: tuple[int, int],
    radius_mm: float = 5.0,
    scale: float = 1.05,
) -> np.ndarray:
    """Eq. 5.65 evaluated from the annotations: ``Phi_su(R_s(A; e_r r)) U Phi_tu(R_t(A; e_r r))``."""
    roi_s = training_roi(area_s, spacing_um, scale * radius_mm)
    roi_t = training_roi(area_t, spacing_um, scale * radius_mm)
    # already at radius e_r r: no further enlargement (a dilation by 0 mm keeps the mask)
    return prediction_roi(roi_s, roi_t, T_s_to_u, T_t_to_u, spacing_um, shape_u, scale=1.0)
