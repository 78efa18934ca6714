"""Cell-level texture of the phantom's cell-body stain (``Preset.cell_texture``, default off).

Instead of a smooth laminar optical density plus band-limited noise (:mod:`cortexgraph.synth.render`),
individual cell bodies are drawn, at image resolution, on a faint neuropil background:

* sites: a jittered grid of candidate sites every :data:`SITE_UM` µm (one uniform point per grid
  square, drawn from the section's own random stream), each kept with probability
  ``cells_per_mm2 * SITE_UM**2 / 1e6`` (at most 1) read at the site's pixel, so the kept cells have
  the stated areal density and are never closer than a jittered grid allows (no clumps);
* density and size per site: cortex (finite depth) ``CELLS_PER_MM2 * density(area, depth)`` cells
  per mm² with diameter ``size(area, depth)`` µm (the area's laminar profile,
  :func:`cortexgraph.synth.areas.depth_profiles`, with transition zones where set): layer IV
  granular cells small and dense, layers III/V pyramidal cells large; non-cortical gray matter
  :data:`NONCORTICAL_DENSITY` and :data:`NONCORTICAL_SIZE_UM`; white matter sparse glia
  (:data:`GLIA_PER_MM2`, :data:`GLIA_SIZE_UM`);
* shape: each cell's diameter is the site's times ``exp(0.2 z)``; elongation (major / minor axis)
  ``1 + 0.8 * clip((diameter - 12 µm) / 20 µm, 0, 1)`` (round granule cells and glia, pyramidal
  somata up to 1.8), the major axis along the cortical depth gradient (radial, ± 14°; random off
  cortex); profile ``peak * exp(-q**2)`` with ``q = (u/a)**2 + (v/b)**2`` (``a``, ``b`` the half
  axes, widened by half a pixel in quadrature so sub-pixel cells keep their integral);
* optical density: a cell's peak is ``clip(0.75 * od / coverage, 0.4, 3)`` and the neuropil
  ``max(od - peak * coverage, 0.25 * od)``, where ``od`` is the smooth model's optical density of
  the pixel and ``coverage = cells per µm² * pi**1.5 / 2 * (diameter / 2)**2`` the mean optical
  density of unit-peak cells: averaged over a few cells the image keeps the smooth model's laminar
  intensity profile (up to the clip and the size jitter, about 8 %).

Only meaningful where pixels resolve somata of 7-20 µm: :func:`check_spacing` refuses spacings above
:data:`CELL_TEXTURE_MAX_SPACING_UM`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cortexgraph.errors import ParameterError

CELL_TEXTURE_MAX_SPACING_UM = 4.0
"""Coarsest image spacing the cell texture is drawn at (a 8 µm granule cell spans two pixels)."""
SITE_UM = 12.0
"""Edge of the jittered grid of candidate cell sites (at most 6944 cells per mm²)."""
CELLS_PER_MM2 = 3000.0
"""Cells per mm² of section per unit of the profiles' relative density (about 4000 in layer IV of
hOc1, 1000-1600 in layers III and V)."""
NONCORTICAL_DENSITY = 0.6
NONCORTICAL_SIZE_UM = 14.0
GLIA_PER_MM2 = 800.0
GLIA_SIZE_UM = 6.0
BLOB_INTEGRAL = math.pi**1.5 / 2.0
"""Integral of ``exp(-q**2)`` over the plane in units of ``a * b``."""
SIZE_JITTER = 0.2
ANGLE_JITTER_RAD = 0.25
PEAK_RANGE = (0.4, 3.0)
CELL_SHARE = 0.75


def check_spacing(spacing_um: float) -> None:
    """ParameterError when ``spacing_um`` is too coarse to draw cell bodies."""
    if not spacing_um <= CELL_TEXTURE_MAX_SPACING_UM:
        raise ParameterError(
            f"cell_texture at image_spacing_um = {spacing_um:g}: pixels coarser than "
            f"{CELL_TEXTURE_MAX_SPACING_UM:g} um do not resolve cell bodies (7-20 um)",
            fix=f"set image_spacing_um <= {CELL_TEXTURE_MAX_SPACING_UM:g} (in the --params file) "
            "or leave cell_texture false",
        )


def _site_fields(kind, density, size):
    """Cells per µm² and diameter (µm) per pixel: cortex (kind 3), non-cortical gray (2), white (1),
    none (0)."""
    per_um2 = np.zeros(kind.shape, dtype=np.float32)
    diameter = np.zeros(kind.shape, dtype=np.float32)
    cortex = kind == 3
    per_um2[cortex] = CELLS_PER_MM2 * 1e-6 * density[cortex]
    diameter[cortex] = size[cortex]
    per_um2[kind == 2] = CELLS_PER_MM2 * 1e-6 * NONCORTICAL_DENSITY
    diameter[kind == 2] = NONCORTICAL_SIZE_UM
    per_um2[kind == 1] = GLIA_PER_MM2 * 1e-6
    diameter[kind == 1] = GLIA_SIZE_UM
    return per_um2, diameter


def cell_kind(tissue: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """uint8 per pixel: 3 cortex (finite depth), 2 other gray matter, 1 white matter, 0 glass (white
    wins over a finite depth, as in the smooth model)."""
    from cortexgraph.synth.template import GRAY, WHITE

    kind = np.zeros(tissue.shape, dtype=np.uint8)
    kind[tissue == GRAY] = 2
    kind[np.isfinite(depth)] = 3
    kind[tissue == WHITE] = 1
    return kind


def cell_layer(
    rng: np.random.Generator,
    kind: np.ndarray,
    depth: np.ndarray,
    density: np.ndarray,
    size: np.ndarray,
    smooth_od: np.ndarray,
    spacing_um: float,
) -> tuple[np.ndarray, int]:
    """Optical density of the cells plus neuropil of a window (module docstring).

    Parameters
    ----------
    rng : the section's cell stream (sites, sizes, orientations).
    kind : :func:`cell_kind` per pixel.
    depth : float (rows, cols) cortical depth (0 pia .. 1 white), NaN off cortex.
    density, size : float32 (rows, cols) relative cell density and diameter (µm) of the laminar
        profile (:func:`cortexgraph.synth.render.laminar_fields`).
    smooth_od : float32 (rows, cols) the smooth model's optical density (without noise).
    spacing_um : pixel spacing (at most :data:`CELL_TEXTURE_MAX_SPACING_UM`).

    Returns
    -------
    (od float32 (rows, cols), number of cells drawn).
    """
    check_spacing(spacing_um)
    rows, cols = kind.shape
    per_um2, diameter = _site_fields(kind, density, size)
    coverage = per_um2 * np.float32(BLOB_INTEGRAL) * (diameter / 2) ** 2
    safe = np.maximum(coverage, np.float32(1e-9))
    peak = np.clip(CELL_SHARE * smooth_od / safe, *PEAK_RANGE).astype(np.float32)
    neuropil = np.maximum(smooth_od - peak * coverage, 0.25 * smooth_od).astype(np.float32)
    neuropil[kind == 0] = 0.0

    site_px = SITE_UM / spacing_um
    grid_r, grid_c = math.ceil(rows / site_px), math.ceil(cols / site_px)
    u = rng.random((4, grid_r, grid_c), dtype=np.float32)
    z = rng.standard_normal((3, grid_r, grid_c), dtype=np.float32)
    r = (np.arange(grid_r, dtype=np.float32)[:, None] + u[0]) * np.float32(site_px)
    c = (np.arange(grid_c, dtype=np.float32)[None, :] + u[1]) * np.float32(site_px)
    pr = np.minimum(r.astype(np.int64), rows - 1)
    pc = np.minimum(c.astype(np.int64), cols - 1)
    inside = (r < rows) & (c < cols)
    keep_p = per_um2[pr, pc] * np.float32(SITE_UM**2)
    keep = inside & (u[2] < keep_p) & (kind[pr, pc] > 0)
    r, c, pr, pc = r[keep], c[keep], pr[keep], pc[keep]
    zs, zp, za, ua = z[0][keep], z[1][keep], z[2][keep], u[3][keep]
    d_um = diameter[pr, pc] * np.exp(np.float32(SIZE_JITTER) * zs)
    elong = 1 + 0.8 * np.clip((d_um - 12.0) / 20.0, 0, 1)
    half_px = d_um / 2 / spacing_um
    a = np.sqrt((half_px * np.sqrt(elong)) ** 2 + 0.25)
    b = np.sqrt((half_px / np.sqrt(elong)) ** 2 + 0.25)
    height = peak[pr, pc] * (half_px**2 / (a * b)) * np.exp(np.float32(0.1) * zp)
    # major axis along the depth gradient (radial) in cortex, random elsewhere
    step = max(1, int(round(4.0 / spacing_um)))
    gr = depth[np.minimum(pr + step, rows - 1), pc] - depth[np.maximum(pr - step, 0), pc]
    gc = depth[pr, np.minimum(pc + step, cols - 1)] - depth[pr, np.maximum(pc - step, 0)]
    radial = np.isfinite(gr) & np.isfinite(gc) & (np.hypot(gr, gc) > 0)
    angle = np.where(
        radial, np.arctan2(np.nan_to_num(gr), np.nan_to_num(gc)) + ANGLE_JITTER_RAD * za,
        np.pi * ua,
    )  # fmt: skip
    od = neuropil
    _draw_cells(
        od, r.astype(np.float64), c.astype(np.float64), a.astype(np.float64),
        b.astype(np.float64), angle.astype(np.float64), height.astype(np.float64),
    )  # fmt: skip
    return od, int(len(r))


@numba.njit(cache=True, nogil=True)
def _draw_cells(od, r, c, a, b, angle, height):  # pragma: no cover - compiled
    """Add ``height * exp(-q**2)`` of each elliptical cell (centre ``r, c`` in pixels, half axes
    ``a`` along ``angle`` (radians from the column axis) and ``b``) to ``od`` in place."""
    rows, cols = od.shape
    for k in range(len(r)):
        reach = 1.6 * a[k]
        i0 = max(int(r[k] - reach), 0)
        i1 = min(int(r[k] + reach) + 1, rows)
        j0 = max(int(c[k] - reach), 0)
        j1 = min(int(c[k] + reach) + 1, cols)
        ca, sa = np.cos(angle[k]), np.sin(angle[k])
        ia2, ib2 = 1.0 / (a[k] * a[k]), 1.0 / (b[k] * b[k])
        for i in range(i0, i1):
            dy = i + 0.5 - r[k]
            for j in range(j0, j1):
                dx = j + 0.5 - c[k]
                u = dx * ca + dy * sa
                v = -dx * sa + dy * ca
                q = u * u * ia2 + v * v * ib2
                if q < 6.0:
                    od[i, j] += np.float32(height[k] * np.exp(-q * q))


def benchmark(
    spacings_um: tuple[float, ...] = (4.0, 2.0), window_mm: float = 2.0, repeats: int = 3
) -> list[dict]:
    """CPU seconds of :func:`cortexgraph.synth.render.render_image` without and with cells on one
    ``window_mm`` square of real anatomy (tiny preset, seed 0, B01, the hOc1/hOc2 border window
    of :func:`cortexgraph.synth.figures.cells_figure`), the best of ``repeats`` (compilation
    excluded). Returns one row per spacing: ``spacing_um``, ``pixels``, ``tissue_mm2``,
    ``cells``, ``smooth_cpu_s``, ``cells_cpu_s``, the CPU seconds per mm² of tissue of both and
    ``section_tissue_mm2`` (the tissue area of that section, from its mask raster)."""
    import time

    from cortexgraph.synth.areas import depth_profiles
    from cortexgraph.synth.deform import brain_rng
    from cortexgraph.synth.figures import _border_window
    from cortexgraph.synth.presets import get_preset
    from cortexgraph.synth.render import render_image, sample_section

    spec = get_preset("tiny")
    out = []
    for spacing in spacings_um:
        template, brain, geometry, n, rows, cols = _border_window(
            "tiny", 0, "B01", spacing, window_mm
        )
        sample = sample_section(template, brain, geometry, n, spacing, rows, cols, False)
        luts = depth_profiles(template.layout.profiles, len(template.layout.areas))
        none = np.zeros(sample.tissue.shape, dtype=bool)
        times: dict[str, float] = {}
        drawn = 0
        for label in ("smooth", "cells"):
            best = np.inf
            for _ in range(repeats + 1):  # the first call compiles
                cell_rng = brain_rng(0, "B01", 10, n) if label == "cells" else None
                start = time.process_time()
                render_image(
                    sample, luts, spacing, np.random.default_rng(0), 1.0, 1.0, none, none,
                    cell_rng=cell_rng,
                )  # fmt: skip
                best = min(best, time.process_time() - start)
            times[label] = best
        kind = cell_kind(sample.tissue, sample.depth)
        index = np.minimum(
            (np.nan_to_num(sample.depth) * luts["density"].shape[1]).astype(int),
            luts["density"].shape[1] - 1,
        )
        from cortexgraph.synth.render import laminar_fields

        density, size = laminar_fields(sample.area, index, luts, spacing)
        _, drawn = cell_layer(
            brain_rng(0, "B01", 10, n), kind, sample.depth, density, size,
            np.full(kind.shape, 0.5, np.float32), spacing,
        )  # fmt: skip
        tissue_mm2 = float((sample.tissue > 0).sum()) * (spacing / 1000) ** 2
        mask = sample_section(template, brain, geometry, n, spec.mask_spacing_um).tissue
        out.append({
            "spacing_um": spacing, "pixels": int(sample.tissue.size),
            "tissue_mm2": round(tissue_mm2, 3), "cells": drawn,
            "smooth_cpu_s": round(times["smooth"], 3), "cells_cpu_s": round(times["cells"], 3),
            "smooth_cpu_s_per_mm2": round(times["smooth"] / tissue_mm2, 4),
            "cells_cpu_s_per_mm2": round(times["cells"] / tissue_mm2, 4),
            "section_tissue_mm2": round(
                float((mask > 0).sum()) * (spec.mask_spacing_um / 1000) ** 2, 1
            ),
        })  # fmt: skip
    return out


if __name__ == "__main__":  # python -m cortexgraph.synth.cells: the cost table of benchmarks/
    import json

    for row in benchmark():
        print(json.dumps(row))
