"""Fused sampling of a section raster: pixel centre -> block frame -> ``phi`` -> template fields.

:func:`sample_raster` computes, for every pixel of a raster of one section, what the chain of
:meth:`~cortexgraph.synth.sectioning.SectionGeometry.pixel_grid`,
:meth:`~cortexgraph.synth.deform.BrainModel.phi` and
:func:`~cortexgraph.synth.template.sample_template` computes, in one compiled pass over the pixels
(numba): no (rows, cols, 3) float64 temporaries, one set of trilinear weights for the three
components of the displacement and one for the four template fields, and the MNI-map fields read
only where the ribbon does not decide. At 40 µm (the full preset) this replaced about 5 of the ~7
CPU-s of a section.

The arithmetic is that of the numpy/scipy path, step by step, so the results agree with it to the
last bit except where a matrix product of the numpy path (``points @ matrix.T``, done by BLAS, which
may use fused multiply-adds) rounds differently in the last bit of a coordinate; a pixel class or
area can then change only for a point within ~1e-13 mm of a class boundary.
The trilinear interpolation is scipy's ``map_coordinates(order=1)``
(weights ``w0 = 1 - frac``, ``w1 = 1 - w0``; corners summed in C order; ``mode="nearest"`` clamps the
coordinate, ``mode="constant"`` returns ``cval`` outside ``[0, n - 1]``; the float32 result rounded
from float64), and the float32 arithmetic of the ribbon rule is done in float32.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cortexgraph.synth.template import BACKGROUND, FAR, GRAY, NEAR_MARGIN_MM, WHITE

_jit = numba.njit(cache=True, nogil=True)


@numba.njit(inline="always")
def _axis(c, n, nearest):  # pragma: no cover - compiled
    """scipy's order-1 handling of one coordinate: (ok, first index, second index, w0, w1)."""
    if c < 0.0:
        if not nearest:
            return False, 0, 0, 0.0, 0.0
        c = 0.0
    elif c > n - 1:
        if not nearest:
            return False, 0, 0, 0.0, 0.0
        c = float(n - 1)
    floor_c = math.floor(c)
    start = int(floor_c)
    w0 = 1.0 - (c - floor_c)
    w1 = 1.0 - w0
    second = start + 1
    if second >= n:  # mirrored at the edge (weight 0 there), as scipy does
        second = n - 2 if n > 1 else 0
    return True, start, second, w0, w1


@numba.njit(inline="always")
def _affine(m, x, y, z):  # pragma: no cover - compiled
    """``m @ (x, y, z, 1)`` for a 4x4 affine, each row summed left to right (scipy's order)."""
    a = x * m[0, 0] + y * m[0, 1]
    b = x * m[1, 0] + y * m[1, 1]
    c = x * m[2, 0] + y * m[2, 1]
    return a + z * m[0, 2] + m[0, 3], b + z * m[1, 2] + m[1, 3], c + z * m[2, 2] + m[2, 3]


@numba.njit(inline="always")
def _trilinear(field, i0, i1, j0, j1, k0, k1, wi0, wi1, wj0, wj1, wk0, wk1):  # pragma: no cover
    """scipy's sum over the 8 corners (C order), each ``value * wi * wj * wk``, in float64."""
    t = 0.0
    t += float(field[i0, j0, k0]) * wi0 * wj0 * wk0
    t += float(field[i0, j0, k1]) * wi0 * wj0 * wk1
    t += float(field[i0, j1, k0]) * wi0 * wj1 * wk0
    t += float(field[i0, j1, k1]) * wi0 * wj1 * wk1
    t += float(field[i1, j0, k0]) * wi1 * wj0 * wk0
    t += float(field[i1, j0, k1]) * wi1 * wj0 * wk1
    t += float(field[i1, j1, k0]) * wi1 * wj1 * wk0
    t += float(field[i1, j1, k1]) * wi1 * wj1 * wk1
    return t


@_jit
def _sample_kernel(
    row0,
    col0,
    spacing_mm,
    mirrored,
    width_mm,
    height_mm,
    rigid,
    distortion,
    wave_k,
    centre_xz,
    y_mm,
    linear,
    centre_mm,
    displacement,
    displacement_inv,
    template_inv,
    ribbon,
    thickness,
    far_tissue,
    far_white,
    vertex_grid,
    vertex_area,
    tissue_out,
    area_out,
    depth_out,
    mapped_out,
):  # pragma: no cover - compiled
    """Fill the outputs (rows, cols) of one raster window; see the module docstring."""
    rows, cols = tissue_out.shape
    keep_mapped = mapped_out.shape[0] > 0
    has_distortion = distortion.shape[0] > 0
    dx, dy, dz = displacement.shape[1], displacement.shape[2], displacement.shape[3]
    tx, ty, tz = ribbon.shape
    half_w = width_mm / 2
    half_h = height_mm / 2
    xc, zc = centre_xz[0], centre_xz[1]
    f_two = np.float32(2.0)
    f_margin = np.float32(NEAR_MARGIN_MM)
    f_far = np.float32(FAR)
    nan32 = np.float32(np.nan)
    for i in range(rows):
        y_raw = (row0 + i + 0.5) * spacing_mm
        for j in range(cols):
            x_raw = (col0 + j + 0.5) * spacing_mm
            if mirrored:
                x_raw = width_mm - x_raw
            u = rigid[0, 0] * x_raw + rigid[0, 1] * y_raw + rigid[0, 2]
            v = rigid[1, 0] * x_raw + rigid[1, 1] * y_raw + rigid[1, 2]
            if has_distortion:
                sx, sy, ax, ang_x, px = (distortion[0], distortion[1], distortion[2],
                                         distortion[3], distortion[4])  # fmt: skip
                ay, ang_y, py = distortion[5], distortion[6], distortion[7]
                qx, qy = u - half_w, v - half_h
                u = (
                    half_w
                    + qx / sx
                    + ax * np.sin(wave_k * (np.cos(ang_x) * qx + np.sin(ang_x) * qy) + px)
                )
                v = (
                    half_h
                    + qy / sy
                    + ay * np.sin(wave_k * (np.cos(ang_y) * qx + np.sin(ang_y) * qy) + py)
                )
            b0 = u - half_w + xc
            b1 = y_mm
            b2 = zc - (v - half_h)
            z0 = linear[0, 0] * b0 + linear[0, 1] * b1 + linear[0, 2] * b2 + centre_mm[0]
            z1 = linear[1, 0] * b0 + linear[1, 1] * b1 + linear[1, 2] * b2 + centre_mm[1]
            z2 = linear[2, 0] * b0 + linear[2, 1] * b1 + linear[2, 2] * b2 + centre_mm[2]
            # displacement u(z): trilinear, mode nearest, float32 results
            c0, c1, c2 = _affine(displacement_inv, z0, z1, z2)
            _, i0, i1, wi0, wi1 = _axis(c0, dx, True)
            _, j0, j1, wj0, wj1 = _axis(c1, dy, True)
            _, k0, k1, wk0, wk1 = _axis(c2, dz, True)
            m0 = z0 + float(np.float32(_trilinear(displacement[0], i0, i1, j0, j1, k0, k1,
                                                  wi0, wi1, wj0, wj1, wk0, wk1)))  # fmt: skip
            m1 = z1 + float(np.float32(_trilinear(displacement[1], i0, i1, j0, j1, k0, k1,
                                                  wi0, wi1, wj0, wj1, wk0, wk1)))  # fmt: skip
            m2 = z2 + float(np.float32(_trilinear(displacement[2], i0, i1, j0, j1, k0, k1,
                                                  wi0, wi1, wj0, wj1, wk0, wk1)))  # fmt: skip
            if keep_mapped:
                mapped_out[i, j, 0] = m0
                mapped_out[i, j, 1] = m1
                mapped_out[i, j, 2] = m2
            # template voxel coordinates
            v0, v1, v2 = _affine(template_inv, m0, m1, m2)
            in_a, ai0, ai1, awi0, awi1 = _axis(v0, tx, False)
            in_b, aj0, aj1, awj0, awj1 = _axis(v1, ty, False)
            in_c, ak0, ak1, awk0, awk1 = _axis(v2, tz, False)
            inside_box = in_a and in_b and in_c
            if inside_box:
                d = np.float32(
                    _trilinear(
                        ribbon, ai0, ai1, aj0, aj1, ak0, ak1, awi0, awi1, awj0, awj1, awk0, awk1
                    )
                )
                # inside the box "nearest" does not clamp: the same corners and weights
                t = np.float32(
                    _trilinear(
                        thickness, ai0, ai1, aj0, aj1, ak0, ak1, awi0, awi1, awj0, awj1, awk0, awk1
                    )
                )
            else:
                d = f_far
                _, ni0, ni1, nwi0, nwi1 = _axis(v0, tx, True)
                _, nj0, nj1, nwj0, nwj1 = _axis(v1, ty, True)
                _, nk0, nk1, nwk0, nwk1 = _axis(v2, tz, True)
                t = np.float32(
                    _trilinear(
                        thickness, ni0, ni1, nj0, nj1, nk0, nk1, nwi0, nwi1, nwj0, nwj1, nwk0, nwk1
                    )
                )
            half = t / f_two
            abs_d = abs(d)
            depth = nan32
            area = 0
            if abs_d <= half + f_margin:
                if abs_d <= half:
                    tissue = GRAY
                    depth = (half - d) / t
                    if depth < np.float32(0.0):
                        depth = np.float32(0.0)
                    elif depth > np.float32(1.0):
                        depth = np.float32(1.0)
                    r0, r1, r2 = np.rint(v0), np.rint(v1), np.rint(v2)
                    if 0 <= r0 < tx and 0 <= r1 < ty and 0 <= r2 < tz:
                        vertex = vertex_grid[int(r0), int(r1), int(r2)]
                        if vertex >= 0:
                            area = vertex_area[vertex]
                elif d < np.float32(0.0):
                    tissue = WHITE
                else:
                    tissue = BACKGROUND
            else:
                tissue = BACKGROUND
                if inside_box:
                    tissue_p = np.float32(_trilinear(far_tissue, ai0, ai1, aj0, aj1, ak0, ak1,
                                                     awi0, awi1, awj0, awj1, awk0, awk1))  # fmt: skip
                    if tissue_p >= np.float32(0.5):
                        white_p = np.float32(_trilinear(far_white, ai0, ai1, aj0, aj1, ak0, ak1,
                                                        awi0, awi1, awj0, awj1, awk0, awk1))  # fmt: skip
                        tissue = WHITE if white_p >= np.float32(0.0) else GRAY
            tissue_out[i, j] = tissue
            area_out[i, j] = area
            depth_out[i, j] = depth


def sample_raster(
    template,
    brain,
    geometry,
    n: int,
    spacing_um: float,
    rows: slice | None = None,
    cols: slice | None = None,
    keep_template_mm: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Tissue class, area and depth of the pixels of a raster (or window) of section ``n``.

    Parameters
    ----------
    template : :class:`~cortexgraph.synth.template.Template`.
    brain : :class:`~cortexgraph.synth.deform.BrainModel`.
    geometry : :class:`~cortexgraph.synth.sectioning.SectionGeometry`.
    n : section number.
    spacing_um : pixel spacing of the raster.
    rows, cols : window of the raster (default: all of it).
    keep_template_mm : also return ``phi`` of the pixel centres (MNI mm).

    Returns
    -------
    ``(tissue, area, depth, template_mm)``: uint8 (rows, cols) 0 background / 1 white / 2 gray,
    uint16 area id on cortex with a vertex (0 elsewhere), float32 cortical depth (NaN off cortex),
    and float64 (rows, cols, 3) ``phi`` (None unless ``keep_template_mm``).
    """
    shape = geometry.raster_shape(spacing_um)
    rows = rows or slice(0, shape[0])
    cols = cols or slice(0, shape[1])
    n_rows, n_cols = rows.stop - rows.start, cols.stop - cols.start
    from cortexgraph.data.transforms import invert_rigid

    rigid = np.ascontiguousarray(invert_rigid(geometry.misalignment[n])[:2], dtype=np.float64)
    distortion = np.asarray(geometry.distortion.get(n, np.zeros(0)), dtype=np.float64)
    tissue = np.empty((n_rows, n_cols), dtype=np.uint8)
    area = np.empty((n_rows, n_cols), dtype=np.uint16)
    depth = np.empty((n_rows, n_cols), dtype=np.float32)
    mapped = np.empty((n_rows, n_cols, 3) if keep_template_mm else (0, 0, 3), dtype=np.float64)
    vertex_area = np.asarray(brain.vertex_area)
    if vertex_area.size and (vertex_area.min() < 0 or vertex_area.max() > np.iinfo(np.uint16).max):
        raise ValueError("area ids must fit uint16 (0..65535)")
    _sample_kernel(
        int(rows.start), int(cols.start), spacing_um / 1000.0, n in geometry.mirrored,
        float(geometry.width_mm), float(geometry.height_mm), rigid, distortion,
        2 * np.pi / geometry.warp_wavelength_mm,
        np.asarray(geometry.centre_xz_mm, dtype=np.float64), float(geometry.y_mm(n)),
        np.ascontiguousarray(brain.linear, dtype=np.float64),
        np.asarray(brain.centre_mm, dtype=np.float64), brain.displacement,
        np.ascontiguousarray(np.linalg.inv(brain.displacement_affine)[:3]),
        np.ascontiguousarray(np.linalg.inv(template.affine)[:3]),
        template.ribbon_mm, template.thickness_mm, template.far_tissue, template.far_white,
        template.vertex, vertex_area.astype(np.uint16), tissue, area, depth, mapped,
    )  # fmt: skip
    return tissue, area, depth, (mapped if keep_template_mm else None)
