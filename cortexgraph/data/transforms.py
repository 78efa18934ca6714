"""Rigid 2D transforms between sections, as 3x3 homogeneous matrices in section mm coordinates.

Conventions (docs/conventions.md):

* A point of a section is ``p = [x_mm, y_mm, 1]`` (x along image columns, y along rows, origin at the
  image's top-left corner).
* The transform table of a brain holds, for each pair of consecutive *available* digitized sections
  (``moving`` posterior, ``fixed`` the next one anterior), the matrix ``M`` with ``p_fixed = M @ p_moving``.
* A mirrored section is un-mirrored first by the reflection :func:`mirror_matrix` about its vertical
  centre line; the table's rigid transforms act on un-mirrored sections.
* :func:`compose_to_base` chains the table into one matrix per section that maps raw section mm
  coordinates onto the base section (reflection included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cortexgraph.errors import DataFormatError

RIGID_TOLERANCE = 1e-3
"""Maximum deviation of ``R^T R`` from the identity (and of ``det R`` from 1) for a rigid transform."""
MAX_LINK_SHIFT_CANVAS = 1.0
"""A consecutive transform may move the centre of the moving section's canvas by at most this many
canvas diagonals (the larger of the two sections) away from the centre of the fixed section's
canvas. Consecutive sections of one series overlap; a larger shift is a unit, sign or row error."""


def rigid_matrix(angle_rad: float, tx_mm: float, ty_mm: float) -> np.ndarray:
    """3x3 homogeneous matrix of a rotation by ``angle_rad`` followed by a translation (mm)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, tx_mm], [s, c, ty_mm], [0.0, 0.0, 1.0]])


def rotation_about(angle_rad: float, center_mm: Sequence[float]) -> np.ndarray:
    """Rotation by ``angle_rad`` about the point ``center_mm`` = (x, y)."""
    cx, cy = center_mm
    to_origin = rigid_matrix(0.0, -cx, -cy)
    back = rigid_matrix(0.0, cx, cy)
    return back @ rigid_matrix(angle_rad, 0.0, 0.0) @ to_origin


def mirror_matrix(width_mm: float) -> np.ndarray:
    """Reflection ``x -> width_mm - x`` (flip about the vertical centre line of an image)."""
    return np.array([[-1.0, 0.0, width_mm], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def rigidity_error(matrix: np.ndarray) -> float:
    """How far a 3x3 homogeneous matrix is from a proper rigid transform (0 for an exact one).

    The maximum of ``|R^T R - I|``, ``|det R - 1|`` and the deviation of the last row from (0, 0, 1).
    Not finite matrices give ``inf``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        return float("inf")
    rot = matrix[:2, :2]
    orth = np.abs(rot.T @ rot - np.eye(2)).max()
    det = abs(np.linalg.det(rot) - 1.0)
    last = np.abs(matrix[2] - np.array([0.0, 0.0, 1.0])).max()
    return float(max(orth, det, last))


def is_rigid(matrix: np.ndarray, tolerance: float = RIGID_TOLERANCE) -> bool:
    """True when ``matrix`` is a proper rigid transform within ``tolerance`` (see :func:`rigidity_error`)."""
    return rigidity_error(matrix) <= tolerance


def invert_rigid(matrix: np.ndarray) -> np.ndarray:
    """Exact inverse of a rigid (or reflected rigid) 3x3 matrix: ``[R^T, -R^T t]``.

    Falls back to a general inverse when the linear part is not orthogonal.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    rot, trans = matrix[:2, :2], matrix[:2, 2]
    if np.allclose(rot.T @ rot, np.eye(2), atol=1e-12):
        inv = np.eye(3)
        inv[:2, :2] = rot.T
        inv[:2, 2] = -rot.T @ trans
        return inv
    return np.linalg.inv(matrix)


def link_shift_mm(
    matrix: np.ndarray,
    moving_extent_mm: Sequence[float],
    fixed_extent_mm: Sequence[float],
) -> tuple[float, float]:
    """How far a consecutive transform moves the moving canvas away from the fixed one.

    Parameters
    ----------
    matrix : 3x3 ``p_fixed = M @ p_moving`` (section mm).
    moving_extent_mm, fixed_extent_mm : (width_mm, height_mm) of the two sections' canvases.

    Returns
    -------
    (shift_mm, limit_mm): the distance between the mapped centre of the moving canvas and the centre
    of the fixed canvas, and the largest accepted distance (:data:`MAX_LINK_SHIFT_CANVAS` canvas
    diagonals). Mirroring about the vertical centre line keeps the centre, so the test holds for
    mirrored sections too. Not finite matrices give ``inf``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    centre_moving = 0.5 * np.asarray(moving_extent_mm, dtype=np.float64)
    centre_fixed = 0.5 * np.asarray(fixed_extent_mm, dtype=np.float64)
    limit = (
        MAX_LINK_SHIFT_CANVAS
        * 2.0
        * max(float(np.hypot(*centre_moving)), float(np.hypot(*centre_fixed)))
    )
    if not np.all(np.isfinite(matrix)):
        return float("inf"), limit
    mapped = matrix[:2, :2] @ centre_moving + matrix[:2, 2]
    return float(np.hypot(*(mapped - centre_fixed))), limit


MAX_DRIFT_CANVAS = 1.0
"""After composing the chain, the centre of every section's canvas must lie within this many canvas
diagonals (the largest of the brain) of the base section's canvas centre: all sections show one brain,
so their aligned canvases overlap. (At most 0.07 on the phantoms.) Links that each pass
:data:`MAX_LINK_SHIFT_CANVAS` but add up to a drift across the series fail this."""


def chain_drift_mm(
    to_base: Mapping[int, np.ndarray],
    extents_mm: Mapping[int, Sequence[float]],
    base_section: int,
) -> tuple[dict[int, float], float]:
    """How far the composed transforms carry each section's canvas from the base section's.

    Parameters
    ----------
    to_base : ``{section: T}`` from :func:`compose_to_base` (mirroring included; a mirror keeps the
        canvas centre).
    extents_mm : ``{section: (width_mm, height_mm)}`` of the canvases.
    base_section : the base section.

    Returns
    -------
    (``{section: distance_mm}`` between the mapped canvas centre and the base canvas centre, the limit
    :data:`MAX_DRIFT_CANVAS` x the largest canvas diagonal).
    """
    base = 0.5 * np.asarray(extents_mm[base_section], dtype=np.float64)
    limit = MAX_DRIFT_CANVAS * max(
        float(np.hypot(extents_mm[s][0], extents_mm[s][1])) for s in to_base
    )
    out = {}
    for section, matrix in to_base.items():
        centre = 0.5 * np.asarray(extents_mm[section], dtype=np.float64)
        mapped = np.asarray(matrix)[:2, :2] @ centre + np.asarray(matrix)[:2, 2]
        out[section] = float(np.hypot(*(mapped - base)))
    return out, limit


def apply_transform(matrix: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homogeneous matrix to (N, 2) points in mm; returns (N, 2)."""
    points_mm = np.asarray(points_mm, dtype=np.float64)
    return points_mm @ matrix[:2, :2].T + matrix[:2, 2]


def compose_to_base(
    sections: Sequence[int],
    consecutive: Mapping[tuple[int, int], np.ndarray],
    base_section: int,
    mirror: Mapping[int, np.ndarray] | None = None,
    *,
    file: str | None = None,
) -> dict[int, np.ndarray]:
    """Chain consecutive transforms into one matrix per section that maps it onto the base section.

    Parameters
    ----------
    sections : available (not missing) digitized section numbers, any order.
    consecutive : ``{(moving, fixed): M}`` for each pair of neighbours in sorted order with
        ``p_fixed = M @ p_moving`` (un-mirrored coordinates).
    base_section : the section every other one is aligned to (usually the central one).
    mirror : optional ``{section: reflection matrix}`` applied before the chain for mirrored sections.
    file : the transform table, named in errors.

    Returns
    -------
    ``{section: T}`` with ``p_base = T @ p_section_raw``. The base section's own ``T`` is its mirror (or I).

    Raises
    ------
    DataFormatError when a link of the chain is missing or not finite.
    """
    ordered = sorted(int(s) for s in sections)
    if base_section not in ordered:
        raise DataFormatError(
            f"base section {base_section} is not among the available sections",
            file=file,
            section=base_section,
            fix="set base_section in brain.toml to an available section",
        )
    mirror = mirror or {}
    index = ordered.index(base_section)
    to_base: dict[int, np.ndarray] = {base_section: np.eye(3)}

    def link(moving: int, fixed: int) -> np.ndarray:
        matrix = consecutive.get((moving, fixed))
        if matrix is None:
            raise DataFormatError(
                f"no transform from section {moving} to section {fixed}: the chain to the base "
                f"section {base_section} is broken",
                file=file,
                section=moving,
                fix=f"add the row moving={moving} fixed={fixed} to transforms.tsv",
            )
        matrix = np.asarray(matrix, dtype=np.float64)
        if not np.all(np.isfinite(matrix)):
            raise DataFormatError(
                f"transform {moving} -> {fixed} is not finite",
                file=file,
                section=moving,
                fix="re-estimate this transform",
            )
        return matrix

    for k in range(index - 1, -1, -1):  # posterior of the base: chain forwards
        moving, fixed = ordered[k], ordered[k + 1]
        to_base[moving] = to_base[fixed] @ link(moving, fixed)
    for k in range(index + 1, len(ordered)):  # anterior: chain inverses backwards
        moving, fixed = ordered[k - 1], ordered[k]
        to_base[fixed] = to_base[moving] @ invert_rigid(link(moving, fixed))
    return {s: (to_base[s] @ mirror[s]) if s in mirror else to_base[s] for s in ordered}


def central_section(sections: Sequence[int]) -> int:
    """The median of the available section numbers (lower median for an even count)."""
    ordered = sorted(int(s) for s in sections)
    if not ordered:
        raise DataFormatError(
            "no available sections", fix="the section table must list a present section"
        )
    return ordered[(len(ordered) - 1) // 2]
