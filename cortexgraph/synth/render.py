"""Rendering one phantom section: tissue classes, areas, cell-body-stain texture, artefacts.

Every raster of a section is computed from the same sampling (:func:`sample_section`): raw pixel centres
-> block frame -> ``phi`` -> template fields (:func:`cortexgraph.synth.template.sample_template`), fused
into one compiled pass (:mod:`cortexgraph.synth.sampling`).

Texture model (a transmitted-light cell-body stain): optical density per pixel, then
``intensity = 250 * exp(-gain * od) ** gamma``.

* cortex: ``od = 0.9 * density(area, depth) * sqrt(size(area, depth) / 14 µm)`` (laminar profiles of
  :mod:`cortexgraph.synth.areas`) plus band-limited noise for the cells, whose amplitude grows with the
  density and with ``sqrt(min(1, size / spacing))`` (cells smaller than a pixel average out) and whose
  correlation length is the cell radius (at least half a pixel);
* white matter 0.16, non-cortical gray matter 0.5 (with the same kind of noise), glass 0.
* staining: per-brain gain and gamma, per-section gain, gamma and a linear illumination ramp.
* artefacts, drawn in raw-scan mm so all rasters agree: tears (thin curved lines of missing tissue),
  missing pieces (discs cut from the tissue edge), folds (a strip of doubled optical density).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from cortexgraph.data.raster import block_mean
from cortexgraph.synth.deform import BrainModel, brain_rng
from cortexgraph.synth.sampling import sample_raster
from cortexgraph.synth.sectioning import SectionGeometry
from cortexgraph.synth.template import GRAY, WHITE, Template, sample_template

OD_WHITE = 0.16
OD_NONCORTICAL = 0.5
BACKGROUND_LEVEL = 250.0


@dataclass
class SectionSample:
    """Fields of one raster grid of a section."""

    tissue: np.ndarray  # uint8 0/1/2 (anatomical, before artefacts)
    area: np.ndarray  # uint16 area id on cortex, 0 elsewhere
    depth: np.ndarray  # float32, NaN off cortex
    template_mm: np.ndarray | None  # (rows, cols, 3) phi of the pixel centres (None if not kept)


def sample_section(
    template: Template,
    brain: BrainModel,
    geometry: SectionGeometry,
    n: int,
    spacing_um: float,
    rows: slice | None = None,
    cols: slice | None = None,
    keep_template_mm: bool = True,
) -> SectionSample:
    """Sample the anatomy of section ``n`` on the raster of spacing ``spacing_um`` (or a window).

    One compiled pass per pixel (:func:`cortexgraph.synth.sampling.sample_raster`) computes what
    :func:`sample_section_reference` computes with numpy and scipy (the same arithmetic; see that
    module for the last-bit caveat). ``keep_template_mm=False`` leaves ``template_mm`` None (saves
    24 bytes a pixel).
    """
    tissue, area, depth, mapped = sample_raster(
        template, brain, geometry, n, spacing_um, rows, cols, keep_template_mm
    )
    return SectionSample(tissue=tissue, area=area, depth=depth, template_mm=mapped)


def sample_section_reference(
    template: Template,
    brain: BrainModel,
    geometry: SectionGeometry,
    n: int,
    spacing_um: float,
    rows: slice | None = None,
    cols: slice | None = None,
) -> SectionSample:
    """:func:`sample_section` with numpy and ``scipy.ndimage.map_coordinates``: pixel centres
    (:meth:`SectionGeometry.pixel_grid`) -> ``phi`` -> :func:`sample_template` (kept as the
    reference the compiled path is tested against; slower and float64 (rows, cols, 3) temporaries)."""
    block = geometry.pixel_grid(n, spacing_um, rows, cols)
    mapped = brain.phi(block)
    sample = sample_template(template, mapped)
    area = np.zeros(sample.vertex.shape, dtype=np.uint16)
    on = sample.vertex >= 0
    area[on] = brain.vertex_area[sample.vertex[on]]
    return SectionSample(tissue=sample.tissue, area=area, depth=sample.depth, template_mm=mapped)


def _polyline_distance_mm(points_mm: np.ndarray, line_mm: np.ndarray) -> np.ndarray:
    """Distance (mm, (M,)) of each of the points ``points_mm`` (M, 2) to the polyline ``line_mm``
    (K, 2): the least over its segments of the distance to the segment's nearest point."""
    best = np.full(len(points_mm), np.inf)
    for a, b in zip(line_mm[:-1], line_mm[1:], strict=True):
        ab = b - a
        t = np.clip(((points_mm - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
        closest = a + t[:, None] * ab
        best = np.minimum(best, np.hypot(*(points_mm - closest).T))
    return best


@dataclass
class Artefacts:
    """Artefact geometry of one section in raw-scan mm."""

    tears: list[tuple[np.ndarray, float]]  # (polyline (K, 2), half width mm)
    holes: list[tuple[np.ndarray, float]]  # (centre (2,), radius mm)
    folds: list[tuple[np.ndarray, float]]  # (segment (2, 2), half width mm)

    @staticmethod
    def _near_polyline(xy: np.ndarray, line: np.ndarray, half: float) -> np.ndarray:
        """Points (..., 2) within ``half`` mm of a polyline (only its bounding box is examined)."""
        out = np.zeros(xy.shape[:-1], dtype=bool)
        lo, hi = line.min(0) - half, line.max(0) + half
        box = np.all((xy >= lo) & (xy <= hi), axis=-1)
        if not box.any():
            return out
        out[box] = _polyline_distance_mm(xy[box], line) <= half
        return out

    @staticmethod
    def _near_polyline_grid(
        x_mm: np.ndarray, y_mm: np.ndarray, line: np.ndarray, half: float
    ) -> np.ndarray:
        """:meth:`_near_polyline` on the grid of points ``(x_mm[c], y_mm[r])`` (increasing 1-D
        axes), shaped (rows, cols): the bounding box is a rectangle of the grid, so only its points
        are built (the same points, in the same order, hence the same result)."""
        out = np.zeros((len(y_mm), len(x_mm)), dtype=bool)
        lo, hi = line.min(0) - half, line.max(0) + half
        c0, c1 = np.searchsorted(x_mm, lo[0], "left"), np.searchsorted(x_mm, hi[0], "right")
        r0, r1 = np.searchsorted(y_mm, lo[1], "left"), np.searchsorted(y_mm, hi[1], "right")
        if c0 >= c1 or r0 >= r1:
            return out
        gx, gy = np.meshgrid(x_mm[c0:c1], y_mm[r0:r1])
        pts = np.stack([gx.ravel(), gy.ravel()], axis=-1)
        near = _polyline_distance_mm(pts, line) <= half
        out[r0:r1, c0:c1] = near.reshape(r1 - r0, c1 - c0)
        return out

    def removed_on_grid(self, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        """:meth:`removed` at the grid points ``(x_mm[c], y_mm[r])`` (:func:`raw_axes`), (rows,
        cols); only the bounding boxes of the artefacts are examined."""
        out = np.zeros((len(y_mm), len(x_mm)), dtype=bool)
        for line, half in self.tears:
            out |= self._near_polyline_grid(x_mm, y_mm, line, half)
        for centre, radius in self.holes:
            out |= self._near_polyline_grid(x_mm, y_mm, np.stack([centre, centre]), radius)
        return out

    def folded_on_grid(self, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        """:meth:`folded` at the grid points ``(x_mm[c], y_mm[r])``, (rows, cols)."""
        out = np.zeros((len(y_mm), len(x_mm)), dtype=bool)
        for segment, half in self.folds:
            out |= self._near_polyline_grid(x_mm, y_mm, segment, half)
        return out

    def removed(self, xy: np.ndarray) -> np.ndarray:
        """True where tissue is lost (tears, missing pieces) at raw points (..., 2)."""
        out = np.zeros(xy.shape[:-1], dtype=bool)
        for line, half in self.tears:
            out |= self._near_polyline(xy, line, half)
        for centre, radius in self.holes:
            out |= self._near_polyline(xy, np.stack([centre, centre]), radius)
        return out

    def folded(self, xy: np.ndarray) -> np.ndarray:
        """True on the folded strips at raw points (..., 2)."""
        out = np.zeros(xy.shape[:-1], dtype=bool)
        for segment, half in self.folds:
            out |= self._near_polyline(xy, segment, half)
        return out


def draw_artefacts(
    rng: np.random.Generator, tissue_coarse: np.ndarray, spacing_um: float, rate: float
) -> Artefacts:
    """Random tears, missing pieces and folds placed on the tissue of a coarse raster."""
    s = spacing_um / 1000.0
    tissue_px = np.argwhere(tissue_coarse > 0)
    tears: list[tuple[np.ndarray, float]] = []
    holes: list[tuple[np.ndarray, float]] = []
    folds: list[tuple[np.ndarray, float]] = []
    if len(tissue_px) == 0:
        return Artefacts(tears, holes, folds)
    inner = ndimage.binary_erosion(tissue_coarse > 0, iterations=2)
    edge_px = np.argwhere((tissue_coarse > 0) & ~inner)
    if len(edge_px) == 0:
        edge_px = tissue_px
    for _ in range(rng.poisson(0.45 * rate)):
        start = (tissue_px[rng.integers(len(tissue_px))][::-1] + 0.5) * s
        heading = rng.uniform(0, 2 * np.pi)
        points = [start]
        for _ in range(int(rng.integers(6, 16))):
            heading += rng.normal(0, 0.25)
            points.append(points[-1] + 2.0 * np.array([np.cos(heading), np.sin(heading)]))
        tears.append((np.array(points), float(rng.uniform(0.05, 0.2))))
    for _ in range(rng.poisson(0.3 * rate)):
        centre = (edge_px[rng.integers(len(edge_px))][::-1] + 0.5) * s
        holes.append((centre, float(rng.uniform(1.5, 5.0))))
    for _ in range(rng.poisson(0.3 * rate)):
        centre = (edge_px[rng.integers(len(edge_px))][::-1] + 0.5) * s
        heading = rng.uniform(0, 2 * np.pi)
        half_len = rng.uniform(3.0, 10.0)
        d = np.array([np.cos(heading), np.sin(heading)]) * half_len
        folds.append((np.stack([centre - d, centre + d]), float(rng.uniform(0.3, 0.9))))
    return Artefacts(tears, holes, folds)


def raw_points(
    shape: tuple[int, int], spacing_um: float, rows: slice | None = None, cols: slice | None = None
) -> np.ndarray:
    """Raw-scan mm (rows, cols, 2) = (x, y) of pixel centres."""
    rows = rows or slice(0, shape[0])
    cols = cols or slice(0, shape[1])
    s = spacing_um / 1000.0
    gx, gy = np.meshgrid(
        (np.arange(cols.start, cols.stop) + 0.5) * s, (np.arange(rows.start, rows.stop) + 0.5) * s
    )
    return np.stack([gx, gy], axis=-1)


def raw_axes(
    shape: tuple[int, int], spacing_um: float, rows: slice | None = None, cols: slice | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw-scan mm of the pixel-centre columns (x) and rows (y): the axes of :func:`raw_points`."""
    rows = rows or slice(0, shape[0])
    cols = cols or slice(0, shape[1])
    s = spacing_um / 1000.0
    return (np.arange(cols.start, cols.stop) + 0.5) * s, (
        np.arange(rows.start, rows.stop) + 0.5
    ) * s


def _band_noise(rng: np.random.Generator, shape, sigma_px: float) -> np.ndarray:
    noise = rng.standard_normal(shape, dtype=np.float32)
    if sigma_px > 0.35:
        noise = ndimage.gaussian_filter(noise, sigma_px)
        noise /= max(float(noise.std()), 1e-6)
    return noise


def _stain_noise(rng: np.random.Generator, shape, spacing_um: float) -> np.ndarray:
    """The stain inhomogeneity: unit noise smooth over 150 µm (at least 2 pixels)."""
    return _band_noise(rng, shape, max(2.0, 150.0 / spacing_um))


def _smooth_noise(
    rng: np.random.Generator, shape, spacing_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """The smooth texture's two noises, drawn in this order: the cell-scale noise (half a 13 µm
    cell body) and the stain inhomogeneity (:func:`_stain_noise`)."""
    fine = _band_noise(rng, shape, max(0.5 * 13.0 / spacing_um, 0.0))
    return fine, _stain_noise(rng, shape, spacing_um)


def laminar_fields(
    area: np.ndarray,
    depth_bin: np.ndarray,
    luts: dict,
    spacing_um: float,
    transition_mm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cell density and cell size (µm) of every pixel from its area and depth bin.

    Without transition zones (``transition_mm`` None or all 0) each pixel takes its own area's
    profile, so the laminar pattern changes abruptly at a border. With them, a pixel takes the mean
    of the profiles of the areas around it (at its own depth), weighted by each area's indicator
    blurred with a Gaussian of s.d. ``transition_mm[a] / 2.563``: across a straight border the
    pattern then changes from 10 % to 90 % over ``transition_mm`` (a Gaussian step's 10-90 % width
    is 2.563 s.d.). The blur runs on block means of the indicators (blocks of at most a quarter
    s.d., so the weight stays smooth and the border does not shift), then is interpolated back.

    Parameters
    ----------
    area : int (rows, cols) area id per pixel, 0 off cortex.
    depth_bin : int (rows, cols) depth bin of the lookup tables (0 pia .. bins - 1 white).
    luts : :func:`cortexgraph.synth.areas.depth_profiles` tables (``density``, ``size_um``).
    spacing_um : pixel spacing.
    transition_mm : (num_areas + 1,) transition width per area id, or None.

    Returns
    -------
    (density, size_um), float32 (rows, cols).
    """
    density = luts["density"][area, depth_bin]
    size = luts["size_um"][area, depth_bin]
    if transition_mm is None or not np.any(transition_mm > 0):
        return density, size
    ids = [int(a) for a in np.unique(area) if a > 0 and transition_mm[a] > 0]
    if len(ids) < 2:
        return density, size
    sigma_px = {a: transition_mm[a] / 2.563 * 1000.0 / spacing_um for a in ids}
    factor = max(1, int(min(sigma_px.values()) / 4))
    weight_sum = np.zeros(area.shape, dtype=np.float32)
    blended_density = np.zeros(area.shape, dtype=np.float32)
    blended_size = np.zeros(area.shape, dtype=np.float32)
    for a in ids:
        # the share of area a in each factor x factor block (exact at the border, no shift)
        weight = ndimage.gaussian_filter(
            block_mean(area == a, factor), sigma_px[a] / factor, mode="nearest"
        )
        if factor > 1:
            weight = _upsample(weight, factor, area.shape)
        blended_density += weight * luts["density"][a, depth_bin]
        blended_size += weight * luts["size_um"][a, depth_bin]
        weight_sum += weight
    cortex = area > 0
    use = cortex & (weight_sum > 1e-3)
    density = np.where(use, blended_density / np.maximum(weight_sum, 1e-6), density)
    size = np.where(use, blended_size / np.maximum(weight_sum, 1e-6), size)
    return density.astype(np.float32), size.astype(np.float32)


def _upsample(values: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Linear interpolation of block means (:func:`~cortexgraph.data.raster.block_mean`) back to
    pixels: block ``j`` is
    centred on pixel ``j * factor + (factor - 1) / 2``."""
    offset = (factor - 1) / 2.0
    rows = np.clip((np.arange(shape[0]) - offset) / factor, 0, values.shape[0] - 1)
    cols = np.clip((np.arange(shape[1]) - offset) / factor, 0, values.shape[1] - 1)
    grid = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(values, grid, order=1, mode="nearest").astype(np.float32)


_jit = numba.njit(cache=True, nogil=True)


@_jit
def _depth_bins(depth, bins):  # pragma: no cover - compiled
    """``clip(int(nan_to_num(depth) * bins), 0, bins - 1)`` (float32 product, as numpy does)."""
    out = np.empty(depth.shape, dtype=np.int64)
    f_bins = np.float32(bins)
    for i in range(depth.shape[0]):
        for j in range(depth.shape[1]):
            d = depth[i, j]
            if np.isnan(d):
                d = np.float32(0.0)
            k = int(d * f_bins)
            out[i, j] = min(max(k, 0), bins - 1)
    return out


@_jit
def _optical_density(
    tissue, depth, density, size, fine, coarse, folded, removed, spacing_um
):  # pragma: no cover - compiled
    """Optical density per pixel (module docstring), float32 arithmetic in numpy's order."""
    f = np.float32
    one = f(1.0)
    spacing = f(spacing_um)
    out = np.empty(tissue.shape, dtype=np.float32)
    for i in range(tissue.shape[0]):
        for j in range(tissue.shape[1]):
            kind = tissue[i, j]
            od = f(0.0)
            if np.isfinite(depth[i, j]):
                sz = size[i, j]
                ratio = sz / spacing
                resolve = np.sqrt(ratio if ratio < one else one)
                od = f(0.9) * density[i, j] * np.sqrt(sz / f(14.0))
                od = od * (one + f(0.45) * resolve * fine[i, j] + f(0.05) * coarse[i, j])
            elif kind == GRAY:
                od = f(OD_NONCORTICAL) * (one + f(0.15) * fine[i, j] + f(0.06) * coarse[i, j])
            if kind == WHITE:
                od = f(OD_WHITE) * (one + f(0.12) * fine[i, j] + f(0.08) * coarse[i, j])
            if folded[i, j] and kind > 0:
                od = f(2.0) * od + f(0.05)
            if removed[i, j]:
                od = f(0.0)
            out[i, j] = od if od > f(0.0) else f(0.0)
    return out


@_jit
def _to_uint8(intensity, noise):  # pragma: no cover - compiled
    """``clip(rint(intensity + float32(noise)), 0, 255)`` as uint8."""
    out = np.empty(intensity.shape, dtype=np.uint8)
    for i in range(intensity.shape[0]):
        for j in range(intensity.shape[1]):
            value = np.rint(intensity[i, j] + np.float32(noise[i, j]))
            out[i, j] = np.uint8(min(max(value, np.float32(0.0)), np.float32(255.0)))
    return out


@_jit
def _glass_kernel(noise):  # pragma: no cover - compiled
    out = np.empty(noise.shape, dtype=np.uint8)
    for i in range(noise.shape[0]):
        for j in range(noise.shape[1]):
            value = np.rint(BACKGROUND_LEVEL + noise[i, j])
            out[i, j] = np.uint8(min(max(value, 0.0), 255.0))
    return out


def glass_image(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """uint8 image of bare glass: ``clip(rint(250 + N(0, 1.5)), 0, 255)`` per pixel (float64 draws
    from ``rng``), in one compiled pass instead of four numpy passes (the same bytes)."""
    return _glass_kernel(rng.normal(0, 1.5, size=shape))


def render_image(
    sample: SectionSample,
    luts: dict,
    spacing_um: float,
    rng: np.random.Generator,
    gain: float | np.ndarray,
    gamma: float,
    folded: np.ndarray,
    removed: np.ndarray,
    cell_rng: np.random.Generator | None = None,
) -> np.ndarray:
    """uint8 stain image of a sampled window (0 = dark stain, 255 = bright glass).

    The per-pixel arithmetic runs in compiled loops (float32, in the order of
    :func:`render_image_reference`, which gives the same bytes); ``exp`` and the power stay numpy's.
    With ``cell_rng`` (a random stream of the section's own) the texture is drawn cell by cell
    (:mod:`cortexgraph.synth.cells`; spacing at most
    :data:`~cortexgraph.synth.cells.CELL_TEXTURE_MAX_SPACING_UM`) instead of the smooth profile
    plus noise; ``rng`` then draws the stain-inhomogeneity and pixel noise only.
    """
    shape = sample.tissue.shape
    bins = luts["density"].shape[1]
    depth_bin = _depth_bins(sample.depth, bins)
    density, size = laminar_fields(
        sample.area, depth_bin, luts, spacing_um, luts.get("transition_mm")
    )
    if cell_rng is not None:
        od = _cell_optical_density(
            sample, density, size, spacing_um, rng, cell_rng, folded, removed
        )
        return _stain(od, gain, gamma, rng, shape)
    fine, coarse = _smooth_noise(rng, shape, spacing_um)
    od = _optical_density(
        sample.tissue, sample.depth, density.astype(np.float32, copy=False),
        size.astype(np.float32, copy=False), fine, coarse, folded, removed, float(spacing_um),
    )  # fmt: skip
    del fine, coarse, density, size
    return _stain(od, gain, gamma, rng, shape)


def _stain(od: np.ndarray, gain, gamma: float, rng: np.random.Generator, shape) -> np.ndarray:
    """``clip(rint(250 * exp(-gain * od) ** gamma + N(0, 1.5)), 0, 255)`` as uint8, in place on
    ``od`` (float32, numpy's exp and power)."""
    np.multiply(np.negative(np.asarray(gain, dtype=np.float32)), od, out=od)
    np.exp(od, out=od)
    np.power(od, np.float32(gamma), out=od)
    np.multiply(np.float32(BACKGROUND_LEVEL), od, out=od)
    return _to_uint8(od, rng.normal(0, 1.5, size=shape))


def _cell_optical_density(
    sample: SectionSample,
    density: np.ndarray,
    size: np.ndarray,
    spacing_um: float,
    rng: np.random.Generator,
    cell_rng: np.random.Generator,
    folded: np.ndarray,
    removed: np.ndarray,
) -> np.ndarray:
    """Optical density of the cell-level texture (:mod:`cortexgraph.synth.cells`): the smooth
    model's density without noise sets each pixel's mean, cells and neuropil are drawn from
    ``cell_rng``; then the stain inhomogeneity of the smooth model (``rng``, 150 µm, the same
    amplitudes per tissue class), folds (doubled density) and lost tissue (0)."""
    from cortexgraph.synth.cells import cell_kind, cell_layer, check_spacing

    check_spacing(spacing_um)
    shape = sample.tissue.shape
    coarse = _stain_noise(rng, shape, spacing_um)
    zero = np.zeros(shape, dtype=np.float32)
    never = np.zeros(shape, dtype=bool)
    smooth = _optical_density(
        sample.tissue, sample.depth, density.astype(np.float32, copy=False),
        size.astype(np.float32, copy=False), zero, zero, never, never, float(spacing_um),
    )  # fmt: skip
    kind = cell_kind(sample.tissue, sample.depth)
    od, _ = cell_layer(cell_rng, kind, sample.depth, density, size, smooth, spacing_um)
    amplitude = np.array([0.0, 0.08, 0.06, 0.05], dtype=np.float32)[kind]
    od *= 1 + amplitude * coarse
    fold = folded & (sample.tissue > 0)
    od[fold] = 2.0 * od[fold] + 0.05
    od[removed] = 0.0
    return np.maximum(od, np.float32(0.0)).astype(np.float32, copy=False)


def render_image_reference(
    sample: SectionSample,
    luts: dict,
    spacing_um: float,
    rng: np.random.Generator,
    gain: float | np.ndarray,
    gamma: float,
    folded: np.ndarray,
    removed: np.ndarray,
) -> np.ndarray:
    """:func:`render_image` in numpy only (the reference the compiled path is tested against)."""
    shape = sample.tissue.shape
    od = np.zeros(shape, dtype=np.float32)
    cortex = np.isfinite(sample.depth)
    bins = luts["density"].shape[1]
    depth_bin = np.clip((np.nan_to_num(sample.depth) * bins).astype(np.int64), 0, bins - 1)
    density, size = laminar_fields(
        sample.area, depth_bin, luts, spacing_um, luts.get("transition_mm")
    )
    fine, coarse = _smooth_noise(rng, shape, spacing_um)
    resolve = np.sqrt(np.minimum(1.0, size / spacing_um))
    od_cortex = 0.9 * density * np.sqrt(size / 14.0)
    od_cortex = od_cortex * (1 + 0.45 * resolve * fine + 0.05 * coarse)
    od = np.where(cortex, od_cortex, od)
    noncortical = (sample.tissue == GRAY) & ~cortex
    od = np.where(noncortical, OD_NONCORTICAL * (1 + 0.15 * fine + 0.06 * coarse), od)
    od = np.where(sample.tissue == WHITE, OD_WHITE * (1 + 0.12 * fine + 0.08 * coarse), od)
    od = np.where(folded & (sample.tissue > 0), 2.0 * od + 0.05, od)
    od = np.where(removed, 0.0, od)
    od = np.maximum(od, 0.0)
    intensity = BACKGROUND_LEVEL * np.exp(-gain * od) ** gamma
    intensity += rng.normal(0, 1.5, size=shape).astype(np.float32)
    return np.clip(np.rint(intensity), 0, 255).astype(np.uint8)


def section_stain(
    brain: BrainModel, seed: int, n: int, width: int
) -> tuple[float, float, np.ndarray]:
    """Per-section gain, gamma and the illumination ramp over ``width`` columns."""
    rng = brain_rng(seed, brain.brain_id, 4, n)
    gain = brain.stain_gain * float(np.exp(rng.normal(0, 0.08)))
    gamma = brain.stain_gamma * float(np.exp(rng.normal(0, 0.06)))
    ramp = 1.0 + rng.normal(0, 0.04) * np.linspace(-1, 1, width, dtype=np.float32)
    return gain, gamma, ramp
