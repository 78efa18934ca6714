"""Cortical midline of a section and the refinement of points towards it (thesis ch. 7, L8790-8910).

Points where the midsurface cuts a section plane are near, but not on, the cortical midline (the mesh
was smoothed and remeshed). They are moved onto the midline as in the source:

1. the **midline** is the morphological skeleton of the section's gray matter;
2. a **Laplace field** ``u`` on the gray matter with ``u = 0`` on the midline and ``u = 1`` on the gray
   matter's boundary (pial and white side) is solved by red-black **successive over-relaxation**;
3. each point is **integrated through the gradient field** (``dp/ds = -grad u / |grad u|``, arc-length
   parametrised, Heun's method) until it reaches the midline, moving at most ``max_move_mm`` (2 mm:
   about half a cortical thickness, so the point still belongs to its node). This keeps the spacing of
   points along the cortex, unlike snapping to the closest midline pixel.

Outside the gray matter the field continues as ``1 + distance to gray matter (mm)``, so points that fell
into white matter or background first walk into the cortex.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from cortexgraph.errors import ConvergenceError


def midline_field(
    gray: np.ndarray,
    spacing_um: float,
    *,
    omega: float = 1.85,
    tol: float = 1e-4,
    max_iter: int = 5000,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Laplace field between the cortical midline (0) and the gray matter boundary (1).

    Parameters
    ----------
    gray : bool (rows, cols), the section's gray matter.
    spacing_um : pixel spacing.
    omega : over-relaxation factor of the red-black SOR.
    tol : stop when the largest update of a sweep is below ``tol``.

    Returns
    -------
    field : float32 (rows, cols); gray matter: the Laplace solution; elsewhere ``1 + distance to the gray
        matter in mm``.
    skeleton : bool (rows, cols), the midline.
    info : iterations, max_update, unknowns.

    Raises
    ------
    ConvergenceError when ``max_iter`` sweeps do not reach ``tol``.
    """
    gray = np.asarray(gray, dtype=bool)
    spacing_mm = spacing_um / 1000.0
    skeleton = skeletonize(gray)
    outside = ~gray
    distance_out = ndimage.distance_transform_edt(gray, sampling=spacing_mm)  # inside: to boundary
    field = (1.0 + ndimage.distance_transform_edt(outside, sampling=spacing_mm)).astype(np.float32)
    free = gray & ~skeleton
    # boundary condition on the outside ring is 1 (not 1 + d): use a padded copy for the stencil
    values = np.where(gray, 0.0, 1.0).astype(np.float32)
    d_skel = ndimage.distance_transform_edt(~skeleton, sampling=spacing_mm)
    initial = d_skel / np.maximum(d_skel + distance_out, 1e-9)
    values[free] = initial[free]
    values[skeleton] = 0.0
    padded = np.pad(values, 1, constant_values=1.0)
    rows, cols = np.nonzero(free)
    flat_width = padded.shape[1]
    centre = (rows + 1) * flat_width + (cols + 1)
    flat = padded.ravel()
    neighbours = np.stack([centre - 1, centre + 1, centre - flat_width, centre + flat_width])
    colour = (rows + cols) % 2
    sweeps = [(centre[colour == c], *neighbours[:, colour == c]) for c in (0, 1)]
    iterations, update = 0, np.inf
    while update >= tol and iterations < max_iter:
        iterations += 1
        update = 0.0
        for idx, west, east, north, south in sweeps:
            target = (flat[west] + flat[east] + flat[north] + flat[south]) * np.float32(0.25)
            delta = omega * (target - flat[idx])
            flat[idx] += delta
            if delta.size:
                update = max(update, float(np.abs(delta).max()))
    if update >= tol:
        raise ConvergenceError(
            f"midline Laplace field did not converge: {iterations} sweeps, last update {update:.2e} "
            f"> {tol:g}",
            fix="raise max_iter or check the gray matter mask",
        )
    solution = padded[1:-1, 1:-1]
    field[gray] = solution[gray]
    info = {"iterations": iterations, "max_update": update, "unknowns": int(free.sum())}
    return field, skeleton, info


def refine_points(
    points_mm: np.ndarray,
    field: np.ndarray,
    spacing_um: float,
    *,
    max_move_mm: float = 2.0,
    step_px: float = 0.5,
    stop_value: float = 0.005,
) -> tuple[np.ndarray, np.ndarray]:
    """Move points down the field's gradient to the midline (arc length at most ``max_move_mm``).

    Parameters
    ----------
    points_mm : (N, 2) section mm (x, y).
    field : from :func:`midline_field`.
    step_px : integration step in pixels (Heun's method on the normalised gradient).
    stop_value : a point stops once the field is below this value (on the midline).

    Returns
    -------
    refined_mm : (N, 2); moved_mm : (N,) arc length travelled.
    """
    spacing_mm = spacing_um / 1000.0
    grad_r, grad_c = np.gradient(field.astype(np.float64))
    pos = np.asarray(points_mm, dtype=np.float64)[:, ::-1] / spacing_mm - 0.5  # (row, col) pixels
    moved = np.zeros(len(pos))
    active = np.ones(len(pos), dtype=bool)  # still moving
    step_mm = step_px * spacing_mm
    max_steps = int(np.ceil(max_move_mm / step_mm))

    def direction(p):
        g = np.stack(
            [
                ndimage.map_coordinates(grad_r, p.T, order=1, mode="nearest"),
                ndimage.map_coordinates(grad_c, p.T, order=1, mode="nearest"),
            ],
            axis=1,
        )
        norm = np.linalg.norm(g, axis=1, keepdims=True)
        return -np.divide(g, norm, out=np.zeros_like(g), where=norm > 1e-12)

    value = ndimage.map_coordinates(field, pos.T, order=1, mode="nearest")
    for _ in range(max_steps):
        index = np.flatnonzero(active & (value > stop_value))
        active[:] = False
        if index.size == 0:
            break
        p = pos[index]
        k1 = direction(p)
        k2 = direction(p + step_px * k1)
        heading = 0.5 * (k1 + k2)
        norm = np.linalg.norm(heading, axis=1, keepdims=True)
        heading = np.divide(heading, norm, out=np.zeros_like(heading), where=norm > 1e-6)
        candidate = p + step_px * heading
        new_value = ndimage.map_coordinates(field, candidate.T, order=1, mode="nearest")
        # a step that does not descend has crossed the midline (or stalled): stop before it
        descends = (new_value < value[index]) & (norm[:, 0] > 1e-6)
        index, candidate, new_value = index[descends], candidate[descends], new_value[descends]
        pos[index] = candidate
        value[index] = new_value
        moved[index] += step_mm
        active[index[moved[index] < max_move_mm - 1e-12]] = True
    refined = (pos + 0.5)[:, ::-1] * spacing_mm
    return refined, moved


def tissue_share(
    tissue: np.ndarray, points_mm: np.ndarray, spacing_um: float, patch_mm: float
) -> np.ndarray:
    """Fraction of tissue pixels (class > 0) in the square patch of side ``patch_mm`` around each point.

    Pixels outside the image count as background. Computed with a summed-area table.
    """
    spacing_mm = spacing_um / 1000.0
    half = max(int(round(patch_mm / spacing_mm / 2.0)), 1)
    inside = np.pad((tissue > 0).astype(np.int64), half + 1)
    table = inside.cumsum(0).cumsum(1)
    rows = np.floor(points_mm[:, 1] / spacing_mm).astype(np.int64) + half + 1
    cols = np.floor(points_mm[:, 0] / spacing_mm).astype(np.int64) + half + 1
    rows = np.clip(rows, half, table.shape[0] - half - 1)
    cols = np.clip(cols, half, table.shape[1] - half - 1)
    r0, r1, c0, c1 = rows - half - 1, rows + half, cols - half - 1, cols + half
    total = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
    return total / float((2 * half + 1) ** 2)
