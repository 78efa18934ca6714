"""``cortexgraph segment BRAIN``: tissue masks (background / white matter / gray matter) from the images.

The method of Schiffer 2023 (PhD thesis, Univ. Düsseldorf, chapter 3, "Tissue segmentation"), run on
each section image at a working spacing (64 µm/px in the thesis):

1. **Tissue vs background.** The image is smoothed (Gaussian, ``tissue_sigma_um``) and its
   256-bin grey-value histogram is smoothed by a median filter (size 3) and a mean filter (size 5).
   The threshold is a local minimum of that histogram; when there are several, the one closest to
   Otsu's threshold (Otsu 1979); when there is none, Otsu's threshold. Pixels darker than it are
   tissue (the stain is dark on bright glass). ``segment_brain`` computes every section's own
   threshold first and expresses it in optical density, ``ln(glass / threshold)`` (glass: median
   grey value of the section's background); a section whose optical density lies above the brain's
   median by more than ``brain_threshold_max_z`` robust standard deviations (a valley inside the
   tissue: few tissue pixels, no white matter, a fold or a pale tangential cut of cortex) is
   segmented at the brain's median optical density instead (:func:`brain_level_thresholds`);
   white pieces lying mostly in the pale tissue only that threshold finds become gray matter.
2. **Gray vs white matter.** Contrast enhancement: minimum, maximum and mean filters (each
   ``filter_um``, 5 px at 64 µm), contrast-limited adaptive histogram equalisation (CLAHE, Pizer et
   al. 1987; kernel ``clahe_kernel_um``, 250 px at 64 µm), Gaussian blur (``blur_um``, σ = 1 px at
   64 µm), and the minimum, maximum and mean filters again. Then morphological Chan-Vese
   (Márquez-Neila et al. 2014, a variant of Chan & Vese 1999; ``chan_vese_iterations``,
   ``chan_vese_smoothing``), started from Otsu's split of the enhanced tissue; of its two regions the
   darker one inside the tissue is gray matter (cell bodies stain dark), the rest of the tissue white
   matter. The split is accepted only when the two classes are separable (Chan-Vese always finds
   two): the mean optical density (``ln(glass / grey value)`` of the smoothed image) of the light
   class must be at most ``max_white_gray_od_ratio`` times the dark class's; otherwise the section
   has no white matter (a section through gray matter only, whose stain levels, e.g. a fold or two
   kinds of non-cortical gray matter, Chan-Vese would split into "gray" and "white"), and all its
   tissue is gray.
3. **Cleaning** by areas only (no closing, so tight sulci stay open): tissue pieces below
   ``min_tissue_mm2`` are removed, background holes below ``max_hole_mm2`` filled; gray-matter pieces
   below ``min_island_mm2`` become white matter and white-matter pieces below it gray matter. Before
   that, white matter within ``border_rim_um`` of the background and thinner than twice it (the
   partial-volume band of the tissue border, which the contrast enhancement makes as bright as white
   matter, and the cell-sparse molecular layer under it) becomes gray matter, each thin piece that
   reaches that distance as a whole (``border_rim_whole_pieces``). Last, white-matter pieces paler
   than white matter (mean optical
   density below ``min_white_gray_od_ratio`` times the gray matter's) and bordering the background
   along at least ``pale_white_min_background_fraction`` of their outline (tangential cuts through the
   cell-sparse upper cortical layers) become gray matter.

Per-section overrides (``--overrides FILE``, tab-separated, header ``section`` and any of
``tissue_threshold`` (grey value on the 8-bit scale), ``chan_vese_iterations``,
``chan_vese_smoothing``, ``max_white_gray_od_ratio``, ``skip`` (1: leave the section's mask as it
is)) fix sections where the
automatic choice fails; the QC picture shows the histogram, the threshold used and the mask.

Outputs
-------
``<brain>/masks/sNNNN.h5``  label rasters (0 background, 1 white, 2 gray; ``kind="labels"``) at the
    working spacing, with file attributes ``section`` and ``source = "cortexgraph segment"``;
    ``sections.tsv`` names them and ``brain.toml`` gets ``spacing_um.mask``.
``derivatives/cortexgraph/<brain>/segment/segment.tsv``  per section: the threshold used and its
    source (``section``, ``brain``, ``override``), the section's own threshold with its optical
    density and modified z-score, Otsu's reference, tissue and gray fractions, the optical-density ratio of the gray/white split and whether it was accepted,
    overrides used.
``derivatives/cortexgraph/<brain>/segment/qc/sNNNN.png``  QC picture per section.
``derivatives/cortexgraph/<brain>/segment/dice.tsv``  phantom cohorts with true masks under
    ``ground_truth/<brain>/inputs/masks/`` (``cortexgraph synth --scans-only``) only: Dice per class and section (worst first).
``derivatives/cortexgraph/<brain>/records/segment.json``  the stage record (docs/derivatives.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from cortexgraph.data.manifest import Brain, read_tsv_lines
from cortexgraph.data.raster import Raster, resample_grid, write_raster
from cortexgraph.errors import DataFormatError, ParameterError

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
BACKGROUND, WHITE, GRAY = 0, 1, 2
SOURCE = "cortexgraph segment"
OVERRIDE_COLUMNS = (
    "section",
    "tissue_threshold",
    "chan_vese_iterations",
    "chan_vese_smoothing",
    "max_white_gray_od_ratio",
    "skip",
)
#: a white piece with at least this share of its pixels at least as pale as ``gray_from`` becomes
#: gray matter (:func:`segment_image`)
GRAY_FROM_MIN_SHARE = 0.5
#: the override columns that replace a field of :class:`SegmentParameters` for one section
PARAMETER_OVERRIDES = ("chan_vese_iterations", "chan_vese_smoothing", "max_white_gray_od_ratio")


@dataclass(frozen=True)
class SegmentParameters:
    """Parameters of the tissue segmentation (module docstring); lengths in µm, areas in mm².

    The thesis gives filter sizes in pixels at 64 µm/px; here they are lengths, so that a brain
    segmented at another spacing uses the same physical sizes.
    """

    spacing_um: float = 64.0
    """Working (and mask) spacing; images coarser than it are segmented at their own spacing."""
    tissue_sigma_um: float = 64.0
    otsu_classes: int = 3
    """Classes of Otsu's reference threshold: 2 is the thesis' two-class Otsu; 3 (default) takes the
    brightest of the three-class thresholds, which separates glass from tissue also where white
    matter is nearly as bright as the glass (the two-class threshold then falls between gray and
    white matter)."""
    histogram_median: int = 3
    histogram_mean: int = 5
    filter_um: float = 320.0
    clahe_kernel_um: float = 16000.0
    clahe_clip: float = 0.01
    blur_um: float = 64.0
    chan_vese_iterations: int = 40
    chan_vese_smoothing: int = 1
    min_tissue_mm2: float = 2.0
    max_hole_mm2: float = 0.5
    min_island_mm2: float = 0.3
    border_rim_um: float = 320.0
    """White matter within this distance of the background that is thinner than twice it (gone
    after a morphological opening with a disk of this radius) becomes gray matter: the pale band of
    the pial border, which Chan-Vese otherwise labels white. 0 keeps it. The band is the
    partial-volume border, which the contrast enhancement spreads over the width of its filters
    (``filter_um``, 320 µm: two mean filters of half-width 160 µm, the minimum and maximum filters
    and a Gaussian blur of 64 µm), and the cell-sparse molecular layer (layer I) under the pia,
    as pale as white matter in a cell-body stain (``border_rim_whole_pieces``). 192 µm before
    (the partial-volume ring, about 2 px at 64 µm/px, alone): on the published phantom it left the
    inner part of the band white (next field)."""
    border_rim_whole_pieces: bool = True
    """The rule of ``border_rim_um`` takes every piece (8-connected) of the thin white matter that
    reaches within ``border_rim_um`` of the background as a whole, not only its part within that
    distance. The partial-volume rim continues inwards into the molecular layer (layer I), which
    holds few cell bodies and is as pale as white matter in a cell-body stain (the phantom's layer I:
    optical density 0.08 against white matter's 0.16): one pale band along the pial border, a few
    hundred µm wide. Cut at ``border_rim_um``, its inner part stayed white matter, a white band
    inside the cortex under the pia, around which build-graph put a second, false midsurface.
    False: only the part within ``border_rim_um`` (the rule before). Measured in
    benchmarks/results/segment_borders.md."""
    max_white_gray_od_ratio: float = 0.5
    """The gray/white split of Chan-Vese is accepted only when the two classes are separable: the
    mean optical density of the light class (``ln(glass / grey value)`` of the smoothed image,
    glass = median grey value of the background) is at most this fraction of the dark class's.
    Otherwise the section has no white matter and all its tissue is gray (Chan-Vese always finds
    two classes: on a section without white matter it splits gray matter by its stain levels, e.g.
    a fold or two kinds of non-cortical gray). The stain scales optical density by a per-section
    factor (gain and gamma), so the ratio is free of it. Measured on the phantoms (published
    cutting and tiny preset, seeds 0 and 1): 0.32-0.35 on every section with white matter, 0.72-0.82
    where the split cuts gray matter; 0.5 lies between. 1 or more accepts every split (the thesis
    method)."""
    min_white_gray_od_ratio: float = 0.27
    """After cleaning, a white-matter piece that is paler than white matter (mean optical density
    below this fraction of the section's gray matter's) and borders the background along at least
    ``pale_white_min_background_fraction`` of its outline becomes gray matter: a cap of cortex cut
    tangentially through its cell-sparse upper layers (white matter lies inside the cortex and meets
    the background only where it is cut). Measured on the phantoms (as above): every true
    white-matter piece 0.31-0.45, the pale caps labelled white 0.21-0.24. 0 keeps them."""
    pale_white_min_background_fraction: float = 0.25
    """See ``min_white_gray_od_ratio``: the fraction of a pale piece's outline (the pixels
    8-adjacent to it) that must be background. The pale caps of the phantoms: 0.31-1.0."""
    brain_threshold_max_z: float = 3.5
    """Brain-level fallback of the tissue threshold (``segment_brain`` only; module docstring, step
    1). Each section's own threshold is expressed in optical density, ``ln(glass / threshold)``
    (glass: median grey value of the section's background), which is free of the illumination.
    A section whose threshold is darker than the brain's median by more than this many robust
    standard deviations (modified z-score, Iglewicz & Hoaglin 1993: ``(od - median) / (1.4826
    MAD)`` over the sections segmented together; 3.5 is their outlier limit) takes the brain's
    median optical density instead (``threshold = glass * exp(-median)``), and white pieces lying
    mostly (``GRAY_FROM_MIN_SHARE``, half their pixels) in the tissue that only the brain's
    threshold finds (at least as pale as the section's own threshold) become gray matter: that
    tissue is the pale cortex the own threshold lost, which Chan-Vese labels white (on the
    published phantom such "white" in sections without white matter, s121 and s151, moved the rh
    midsurface by +0.03 mm mean). Its histogram picked a
    valley inside the tissue (between a fold and gray matter, or gray matter and a pale
    tangential cut on a section without white matter, or with few tissue pixels), not the one
    between tissue and glass. Only darker thresholds are replaced: the glass mode dominates every
    histogram, and on the phantoms every section whose own threshold was brighter than the
    brain's was segmented better with its own. Measured on the phantoms (published cutting and
    tiny preset, seeds 0 and 1): median 0.099-0.121, robust SD 0.010-0.026; z 4.5-7.9 on the
    sections that missed pale tissue (published s46, s106, s121, s136, s151, s166; tiny s122,
    seed 1 s58, s118, s178), at most 3.1 elsewhere except published s31 (6.1; its own threshold
    was right: gray Dice 0.990 -> 0.969 with the fallback) and tiny s2 (5.6, no change).
    0 keeps every section's own threshold (the thesis method)."""
    brain_threshold_min_sd_od: float = 0.01
    """Floor of the robust standard deviation (optical density) of ``brain_threshold_max_z``:
    sections that all agree to within a few grey values (0.01 is 2.3 grey values at 230 on a glass
    of 255) do not make a one-grey-value difference an outlier."""
    brain_threshold_min_sections: int = 5
    """Sections with an automatic threshold needed for the brain-level statistics; fewer (e.g.
    ``--sections`` with one section) keep every section's own threshold."""


@dataclass(frozen=True)
class SectionResult:
    """Segmentation of one section: the mask and what was measured on the way."""

    section: int
    mask: np.ndarray
    spacing_um: float
    tissue_threshold: float
    otsu_threshold: float
    minima: tuple[int, ...]
    histogram: np.ndarray
    overridden: tuple[str, ...] = ()
    split_od_ratio: float = math.nan
    """Mean optical density of Chan-Vese's light class over its dark class's (NaN: no split)."""
    split_accepted: bool = True
    """False when the ratio exceeded ``max_white_gray_od_ratio`` and all tissue became gray."""

    @property
    def tissue_fraction(self) -> float:
        return float((self.mask > 0).mean())

    @property
    def gray_fraction(self) -> float:
        tissue = (self.mask > 0).sum()
        return float((self.mask == GRAY).sum() / tissue) if tissue else 0.0


def _px(length_um: float, spacing_um: float) -> float:
    return length_um / spacing_um


def _size(length_um: float, spacing_um: float) -> int:
    """A filter size in pixels, odd (an even-sized filter shifts the image by half a pixel, and
    three of them in a row shift the gray/white border by a pixel or more)."""
    size = max(1, int(round(length_um / spacing_um)))
    return size if size % 2 else size + 1


def to_8bit(image: np.ndarray) -> np.ndarray:
    """Grey values on the 8-bit scale as float32 (uint16 images divided by 257)."""
    image = np.asarray(image)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 257.0
    return image.astype(np.float32)


def tissue_threshold(
    smoothed: np.ndarray, params: SegmentParameters
) -> tuple[float, float, tuple[int, ...], np.ndarray]:
    """The background/tissue threshold of a smoothed 8-bit image (step 1 of the module docstring).

    Returns (threshold, Otsu threshold, the local minima of the smoothed histogram (bin indices),
    the smoothed histogram (256 values)).
    """
    from skimage.filters import threshold_otsu

    values = smoothed.ravel()
    hist = np.bincount(np.clip(values, 0, 255).astype(np.int64), minlength=256)[:256].astype(float)
    hist = ndimage.median_filter(hist, size=params.histogram_median, mode="nearest")
    hist = ndimage.uniform_filter1d(hist, size=params.histogram_mean, mode="nearest")
    if params.otsu_classes == 2:
        otsu = float(threshold_otsu(values))
    else:
        from skimage.filters import threshold_multiotsu

        otsu = float(threshold_multiotsu(values, classes=params.otsu_classes)[-1])
    minima = []
    for i in range(1, 255):
        if hist[i] < hist[i - 1]:
            j = i
            while j < 255 and hist[j + 1] == hist[i]:
                j += 1
            if j < 255 and hist[j + 1] > hist[i]:
                minima.append((i + j) // 2)
    if not minima:
        return otsu, otsu, (), hist
    best = min(minima, key=lambda m: abs(m - otsu))
    return float(best) + 0.5, otsu, tuple(minima), hist


def smoothed_image(image: np.ndarray, spacing_um: float, params: SegmentParameters) -> np.ndarray:
    """The 8-bit grey values of ``image`` smoothed by ``tissue_sigma_um`` (step 1), float32."""
    return ndimage.gaussian_filter(to_8bit(image), _px(params.tissue_sigma_um, spacing_um))


def threshold_od(smoothed: np.ndarray, threshold: float) -> tuple[float, float]:
    """A tissue threshold in optical density: ``(glass, ln(glass / threshold))``.

    ``smoothed``: the smoothed 8-bit image; ``threshold``: its tissue threshold (grey value).
    Glass is the median grey value of the pixels at or above the threshold (the background), 255
    when there are none.
    """
    background = smoothed[smoothed >= threshold]
    glass = float(np.median(background)) if background.size else 255.0
    return glass, float(np.log(max(glass, 1.0) / max(float(threshold), 1.0)))


@dataclass(frozen=True)
class BrainThreshold:
    """The tissue threshold chosen for one section by :func:`brain_level_thresholds`."""

    threshold: float
    """Grey value (8-bit scale) to segment with."""
    source: str
    """``"section"`` (its own histogram) or ``"brain"`` (the brain's median optical density)."""
    section_threshold: float
    """The section's own automatic threshold (grey value)."""
    od: float
    """``ln(glass / section_threshold)``."""
    z: float
    """Modified z-score of ``od`` against the brain (NaN: too few sections)."""


def brain_level_thresholds(
    estimates: dict[int, tuple[float, float]], params: SegmentParameters
) -> tuple[dict[int, BrainThreshold], dict]:
    """The brain-level fallback of the tissue threshold (``brain_threshold_max_z``).

    ``estimates``: per section ``(own automatic threshold, glass)`` (grey values). Returns per
    section a :class:`BrainThreshold` and the statistics (``median_od``, ``sd_od`` (1.4826 MAD,
    floored at ``brain_threshold_min_sd_od``), ``sections``).
    """
    ods = {n: float(np.log(max(g, 1.0) / max(t, 1.0))) for n, (t, g) in estimates.items()}
    values = np.asarray(list(ods.values()), float)
    usable = len(values) >= params.brain_threshold_min_sections and params.brain_threshold_max_z > 0
    median = float(np.median(values)) if len(values) else math.nan
    sd = (
        max(1.4826 * float(np.median(np.abs(values - median))), params.brain_threshold_min_sd_od)
        if len(values)
        else math.nan
    )
    out = {}
    for n, (own, glass) in estimates.items():
        z = (ods[n] - median) / sd if usable else math.nan
        if usable and z > params.brain_threshold_max_z:
            out[n] = BrainThreshold(glass * math.exp(-median), "brain", own, ods[n], z)
        else:
            out[n] = BrainThreshold(own, "section", own, ods[n], z)
    stats = {"median_od": median, "sd_od": sd, "sections": len(values), "used": usable}
    return out, stats


def enhance_contrast(image: np.ndarray, spacing_um: float, params: SegmentParameters) -> np.ndarray:
    """Step 2's contrast enhancement of an 8-bit image; returns float values in [0, 1]."""
    from skimage.exposure import equalize_adapthist

    size = _size(params.filter_um, spacing_um)

    def min_max_mean(a: np.ndarray) -> np.ndarray:
        a = ndimage.minimum_filter(a, size=size)
        a = ndimage.maximum_filter(a, size=size)
        return ndimage.uniform_filter(a, size=size)

    work = min_max_mean(np.clip(image, 0, 255) / 255.0)
    kernel = max(3, int(round(_px(params.clahe_kernel_um, spacing_um))))
    kernel = min(kernel, max(3, max(work.shape)))
    work = equalize_adapthist(np.clip(work, 0, 1), kernel_size=kernel, clip_limit=params.clahe_clip)
    work = ndimage.gaussian_filter(work, _px(params.blur_um, spacing_um))
    return min_max_mean(work).astype(np.float32)


def _remove_small(region: np.ndarray, min_px: float) -> np.ndarray:
    """``region`` without its 8-connected pieces smaller than ``min_px`` pixels."""
    labels, count = ndimage.label(region, structure=np.ones((3, 3)))
    if count == 0:
        return region
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]


def _pial_rim_to_gray(
    gray: np.ndarray,
    white: np.ndarray,
    tissue: np.ndarray,
    rim_px: float,
    whole_pieces: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """White matter within ``rim_px`` of the background and thinner than ``2 rim_px`` -> gray.

    At the border between tissue and glass the smoothed image passes through values between gray
    matter and glass; the contrast enhancement makes that band as bright as white matter, and
    Chan-Vese labels it white: a thin white ring around the cortex. Such a ring separates the cortex
    from the background in the mask (the reconstruction then finds white matter next to every gray
    voxel and cannot tell non-cortical gray matter by its distance to white matter). White matter
    that reaches the border for real (cut white matter) is thicker than the ring and survives the
    opening.

    ``whole_pieces`` (``SegmentParameters.border_rim_whole_pieces``): every 8-connected piece of the
    thin white matter (gone after the opening) that reaches within ``rim_px`` of the background
    becomes gray as a whole, not only its part within ``rim_px``: the cell-sparse molecular layer
    (layer I) under the pia is as pale as white matter in a cell-body stain and continues the
    partial-volume band inwards, so the band is wider than the rim; cut at ``rim_px`` its inner part
    stayed white, a white band inside the cortex.
    """
    from skimage.morphology import disk

    radius = max(1, int(round(rim_px)))
    near = ndimage.distance_transform_edt(tissue) <= rim_px + 0.5
    thick = ndimage.binary_opening(white, structure=disk(radius))
    thin = white & ~thick
    if whole_pieces:
        labels, count = ndimage.label(thin, structure=np.ones((3, 3)))
        reached = np.zeros(count + 1, bool)
        reached[labels[near & thin]] = True
        reached[0] = False
        rim = reached[labels]
    else:
        rim = thin & near
    return gray | rim, white & ~rim


def split_od_ratio(
    smoothed: np.ndarray,
    tissue: np.ndarray,
    box: tuple[slice, slice],
    gray: np.ndarray,
    white: np.ndarray,
) -> float:
    """Separability of a gray/white split: mean optical density of ``white`` over that of ``gray``.

    ``smoothed``: the smoothed 8-bit image; ``tissue``: its tissue mask (same grid); ``gray`` and
    ``white``: the two classes on the window ``box`` of that grid. Optical density of a pixel is
    ``ln(glass / value)`` with glass the median of the background (255 without background). Returns
    NaN when a class is empty or the gray class has no positive optical density.
    """
    if not gray.any() or not white.any():
        return math.nan
    glass = float(np.median(smoothed[~tissue])) if (~tissue).any() else 255.0
    od = np.log(max(glass, 1.0) / np.clip(smoothed[box], 1.0, None))
    od_gray, od_white = float(od[gray].mean()), float(od[white].mean())
    return od_white / od_gray if od_gray > 0 else math.nan


def pale_white_pieces(
    smoothed: np.ndarray,
    tissue: np.ndarray,
    box: tuple[slice, slice],
    gray: np.ndarray,
    white: np.ndarray,
    min_ratio: float,
    min_background_fraction: float,
) -> np.ndarray:
    """The 8-connected pieces of ``white`` whose mean optical density is below ``min_ratio`` times
    the mean optical density of ``gray`` and whose outline (pixels 8-adjacent to the piece) is
    background (outside ``tissue``) for at least ``min_background_fraction`` of its pixels. Inputs
    as in :func:`split_od_ratio`; returns a boolean image of the window ``box``, empty when either
    class is empty."""
    out = np.zeros_like(white)
    if not gray.any() or not white.any():
        return out
    glass = float(np.median(smoothed[~tissue])) if (~tissue).any() else 255.0
    od = np.log(max(glass, 1.0) / np.clip(smoothed[box], 1.0, None))
    od_gray = float(od[gray].mean())
    if od_gray <= 0:
        return out
    labels, count = ndimage.label(white, structure=np.ones((3, 3)))
    mean_od = ndimage.mean(od, labels, np.arange(1, count + 1))
    background = ~tissue[box]
    windows = ndimage.find_objects(labels)
    for piece in np.flatnonzero(np.asarray(mean_od) < min_ratio * od_gray) + 1:
        where = windows[piece - 1]
        grown = tuple(slice(max(w.start - 1, 0), w.stop + 1) for w in where)
        inside = labels[grown] == piece
        outline = ndimage.binary_dilation(inside, structure=np.ones((3, 3))) & ~inside
        if outline.any() and background[grown][outline].mean() >= min_background_fraction:
            out[grown] |= inside
    return out


def segment_image(
    image: np.ndarray,
    spacing_um: float,
    params: SegmentParameters = SegmentParameters(),
    *,
    threshold: float | None = None,
    gray_from: float | None = None,
    section: int = -1,
) -> SectionResult:
    """Segment one image (2D, uint8 or uint16, dark tissue on bright glass) at ``spacing_um``.

    ``threshold`` (8-bit grey value) replaces the automatic tissue threshold. ``gray_from`` (8-bit
    grey value of the smoothed image): a white piece (8-connected, after the split) with at least
    ``GRAY_FROM_MIN_SHARE`` of its pixels this pale or paler becomes gray matter (the brain-level
    threshold of ``segment_brain`` passes the section's own threshold: the pale tissue that only
    the brain's threshold finds is cortex cut tangentially).
    Returns a :class:`SectionResult` whose mask is uint8 0/1/2 on the image's grid.
    """
    from skimage.filters import threshold_otsu
    from skimage.segmentation import morphological_chan_vese

    grey = to_8bit(image)
    smoothed = smoothed_image(image, spacing_um, params)
    auto, otsu, minima, hist = tissue_threshold(smoothed, params)
    used = auto if threshold is None else float(threshold)
    pixel_mm2 = (spacing_um / 1000.0) ** 2

    tissue = smoothed < used
    tissue = _remove_small(tissue, params.min_tissue_mm2 / pixel_mm2)
    holes = _remove_small(~tissue, params.max_hole_mm2 / pixel_mm2)
    # holes touching the border are background whatever their size
    tissue = ~holes
    mask = np.zeros(grey.shape, np.uint8)
    if tissue.sum() < 16:
        return SectionResult(section, mask, spacing_um, used, otsu, minima, hist)

    # the gray/white split runs on the tissue's bounding box (with a margin wider than the filters)
    margin = 4 * _size(params.filter_um, spacing_um) + 4
    found = np.argwhere(tissue)
    lo = np.maximum(found.min(0) - margin, 0)
    hi = np.minimum(found.max(0) + margin + 1, tissue.shape)
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
    full_tissue = tissue
    tissue = tissue[box]
    enhanced = enhance_contrast(grey[box], spacing_um, params)
    inside = enhanced[tissue]
    start = tissue & (enhanced < threshold_otsu(inside)) if np.ptp(inside) > 0 else tissue
    level = morphological_chan_vese(
        enhanced,
        num_iter=params.chan_vese_iterations,
        init_level_set=start.astype(np.int8),
        smoothing=params.chan_vese_smoothing,
    ).astype(bool)
    one, zero = enhanced[level & tissue], enhanced[~level & tissue]
    if len(one) and (not len(zero) or one.mean() <= zero.mean()):
        gray = level & tissue
    else:
        gray = ~level & tissue
    white = tissue & ~gray
    ratio = split_od_ratio(smoothed, full_tissue, box, gray, white)
    accepted = not ratio > params.max_white_gray_od_ratio
    if not accepted:
        gray, white = tissue, np.zeros_like(tissue)
    if gray_from is not None and white.any():
        # white pieces lying mostly in the tissue that only the brighter threshold finds
        labels, count = ndimage.label(white, structure=np.ones((3, 3)))
        share = ndimage.mean(smoothed[box] >= gray_from, labels, np.arange(1, count + 1))
        keep = np.concatenate([[False], np.asarray(share) < GRAY_FROM_MIN_SHARE])
        pale = white & ~keep[labels]
        gray, white = gray | pale, white & ~pale
    if params.border_rim_um > 0:
        gray, white = _pial_rim_to_gray(
            gray,
            white,
            tissue,
            params.border_rim_um / spacing_um,
            whole_pieces=params.border_rim_whole_pieces,
        )
    min_island = params.min_island_mm2 / pixel_mm2
    gray_kept = _remove_small(gray, min_island)
    white = white | (gray & ~gray_kept)
    gray = gray_kept
    white_kept = _remove_small(white, min_island)
    gray = gray | (white & ~white_kept)
    white = white_kept
    if params.min_white_gray_od_ratio > 0:
        pale = pale_white_pieces(
            smoothed,
            full_tissue,
            box,
            gray,
            white,
            params.min_white_gray_od_ratio,
            params.pale_white_min_background_fraction,
        )
        gray, white = gray | pale, white & ~pale
    mask[box][white] = WHITE
    mask[box][gray] = GRAY
    assert not (mask.astype(bool) & ~full_tissue).any()
    return SectionResult(
        section,
        mask,
        spacing_um,
        used,
        otsu,
        minima,
        hist,
        split_od_ratio=ratio,
        split_accepted=accepted,
    )


# --------------------------------------------------------------------------------------------------
# overrides, Dice, QC picture
# --------------------------------------------------------------------------------------------------
def read_overrides(path: str | Path) -> dict[int, dict]:
    """Per-section overrides (module docstring): ``{section: {column: value}}``; empty cells are
    not overrides. Raises DataFormatError naming the file, line and fix."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("overrides file not found", file=path, fix="check --overrides")
    numbered = read_tsv_lines(path, ("section",))
    header = list(numbered[0][1]) if numbered else ["section"]
    if any(h not in OVERRIDE_COLUMNS for h in header):
        raise DataFormatError(
            f"overrides header {header} is not a subset of {list(OVERRIDE_COLUMNS)} with 'section'",
            file=path,
            fix=f"use the columns {', '.join(OVERRIDE_COLUMNS)} (tab-separated)",
        )
    out: dict[int, dict] = {}
    for number, row in numbered:
        line = "\t".join(row.values())
        try:
            section = int(row.pop("section"))
            values: dict = {}
            for key, text in row.items():
                if not text:
                    continue
                if key == "tissue_threshold":
                    values[key] = float(text)
                    if not 0 <= values[key] <= 256:
                        raise ValueError
                elif key == "max_white_gray_od_ratio":
                    values[key] = float(text)
                    if not values[key] >= 0:
                        raise ValueError
                elif key == "skip":
                    if text.lower() not in ("0", "1", "true", "false"):
                        raise ValueError
                    values[key] = text.lower() in ("1", "true")
                else:
                    values[key] = int(text)
                    if values[key] < 0:
                        raise ValueError
        except ValueError:
            raise DataFormatError(
                f"line {number}: a value is not valid ({line!r})",
                file=path,
                fix="tissue_threshold 0..256, chan_vese_iterations and chan_vese_smoothing "
                "integers >= 0, max_white_gray_od_ratio a number >= 0, skip 0 or 1",
            ) from None
        if section in out:
            raise DataFormatError(
                f"line {number}: section {section} is listed twice",
                file=path,
                section=section,
                fix="one row per section",
            )
        out[section] = values
    return out


def to_grid(mask: np.ndarray, spacing_um: float, target_spacing_um: float, shape) -> np.ndarray:
    """A label image on a coarser grid of the same frame: the most frequent label of each block when
    the spacings differ by an integer factor (the coarse pixel centre lies between fine pixels), else
    the label under the coarse pixel centre."""
    ratio = target_spacing_um / spacing_um
    factor = int(round(ratio))
    if factor >= 2 and abs(ratio - factor) < 1e-6:
        rows, cols = shape
        padded = np.zeros((rows * factor, cols * factor), mask.dtype)
        r, c = min(mask.shape[0], rows * factor), min(mask.shape[1], cols * factor)
        padded[:r, :c] = mask[:r, :c]
        blocks = padded.reshape(rows, factor, cols, factor)
        order = (GRAY, WHITE, BACKGROUND)  # ties go to the thinner class
        counts = np.stack([(blocks == v).sum(axis=(1, 3)) for v in order])
        return np.asarray(order, np.uint8)[counts.argmax(0)]
    return resample_grid(mask, spacing_um, target_spacing_um, shape, "labels")


def dice_per_class(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice of background, white and gray matter between two label images of one grid (NaN where
    both are empty)."""
    out = {}
    for name, value in (("background", BACKGROUND), ("white", WHITE), ("gray", GRAY)):
        a, b = predicted == value, truth == value
        total = a.sum() + b.sum()
        out[name] = float(2.0 * (a & b).sum() / total) if total else math.nan
    return out


def qc_picture(path: Path, image: np.ndarray, result: SectionResult, title: str) -> Path:
    """A PNG with the image, the mask over it (gray matter red, white matter blue), both cropped to
    the tissue and a margin, and the smoothed histogram of the whole image with the threshold used
    (red) and Otsu's reference (dashed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from cortexgraph.outputs import atomic_path

    grey = to_8bit(image) / 255.0
    found = np.argwhere(result.mask > 0)
    if len(found):  # the tissue and a margin of a tenth of its extent
        margin = max(8, int(0.1 * (found.max(0) - found.min(0)).max()))
        lo = np.maximum(found.min(0) - margin, 0)
        hi = np.minimum(found.max(0) + margin + 1, grey.shape)
        box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
        grey, labels = grey[box], result.mask[box]
    else:
        labels = result.mask
    overlay = np.stack([grey] * 3, axis=-1)
    colours = {GRAY: (0.85, 0.2, 0.2), WHITE: (0.2, 0.4, 0.9)}
    for value, colour in colours.items():
        on = labels == value
        overlay[on] = 0.5 * overlay[on] + 0.5 * np.asarray(colour)
    figure = Figure(figsize=(11, 3.6), dpi=90)
    axes = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 0.9]})
    axes[0].imshow(grey, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("image")
    axes[1].imshow(overlay)
    axes[1].set_title("mask: gray matter red, white matter blue")
    for ax in axes[:2]:
        ax.set_axis_off()
    axes[2].plot(np.arange(256), result.histogram, color="k", lw=1)
    axes[2].axvline(result.tissue_threshold, color="r", lw=1.5, label="threshold")
    axes[2].axvline(result.otsu_threshold, color="0.5", ls="--", lw=1, label="Otsu")
    axes[2].set_yscale("symlog")
    axes[2].set_ylim(bottom=0)
    axes[2].set_xlabel("grey value (8 bit)")
    axes[2].legend(fontsize=8)
    axes[2].set_title("smoothed histogram")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


# --------------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------------
def _name(section: int) -> str:
    return f"s{section:04d}"


def _format(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def segment_brain(
    brain: Brain,
    params: SegmentParameters = SegmentParameters(),
    *,
    overrides: str | Path | None = None,
    sections: list[int] | None = None,
    qc: bool = True,
    replace_masks: bool = False,
    overwrite: bool = False,
    wait_s: float = 0.0,
    progress: Progress | None = None,
) -> dict:
    """Segment every present section of ``brain`` that has an image (or ``sections``).

    Parameters
    ----------
    params : :class:`SegmentParameters`.
    overrides : per-section overrides TSV (module docstring).
    sections : restrict to these section numbers (the others keep their masks).
    qc : write a QC picture per section.
    replace_masks : allow replacing mask files that ``segment`` did not write (a brain's own masks
        are refused otherwise).
    overwrite : recompute even when the stage record is current.

    Returns
    -------
    The stage summary: per-section thresholds and fractions, ``split_rejected`` (the sections whose
    gray/white split was not separable: all gray matter), and on phantom cohorts the Dice per class
    (``dice``: mean per class; ``worst``: the five sections of lowest gray-matter Dice).
    Files: module docstring.
    """
    from cortexgraph.derivatives.inputs import brain_inputs
    from cortexgraph.derivatives.stage import Derivatives, StageRun, run_stage
    from cortexgraph.derivatives.stages import StageId
    from cortexgraph.outputs import write_text_atomic

    if brain.image_spacing_um is None:
        raise DataFormatError(
            "the brain has no images (no spacing_um.image in brain.toml)",
            file=brain.manifest_path,
            fix="ingest the scans first: cortexgraph ingest",
        )
    records = brain.sections
    chosen = [r for r in records if not r.missing and r.image]
    if sections is not None:
        unknown = sorted(set(sections) - {r.section for r in chosen})
        if unknown:
            raise ParameterError(
                f"sections {unknown} are not present sections with an image",
                file=brain.section_table_path,
                fix="pick sections listed in sections.tsv",
            )
        chosen = [r for r in chosen if r.section in set(sections)]
    if not chosen:
        raise DataFormatError(
            "no present section has an image",
            file=brain.section_table_path,
            fix="ingest the scans first: cortexgraph ingest",
        )
    table = read_overrides(overrides) if overrides else {}
    spacing = max(float(params.spacing_um), float(brain.image_spacing_um))
    mask_root = brain.root / "masks"
    for record in chosen:
        if record.mask and not replace_masks and not table.get(record.section, {}).get("skip"):
            path = brain.path(record.mask, section=record.section)
            if path.exists() and not _written_by_segment(path):
                raise DataFormatError(
                    "the section has a mask that segment did not write",
                    file=path,
                    section=record.section,
                    fix="pass --replace-masks to replace the brain's masks with segment's",
                )
    if brain.mask_spacing_um is not None and any(r.mask for r in records):
        others = [r for r in records if r.mask and r not in chosen]
        if others and abs(brain.mask_spacing_um - spacing) > 1e-6 * spacing:
            raise DataFormatError(
                f"sections keep masks at {brain.mask_spacing_um:g} um but segment would write "
                f"{spacing:g} um (one spacing per brain)",
                file=brain.manifest_path,
                section=others[0].section,
                fix=f"segment every section, or pass --spacing-um {brain.mask_spacing_um:g}",
            )
    manifest_values, files = brain_inputs(
        brain, ("image",), sections=[r.section for r in chosen], transforms=False
    )
    if overrides:
        files = [*files, Path(overrides)]
    truth_root = brain.ground_truth / "inputs" / "masks"
    store = Derivatives.of(brain)
    out_root = brain.derivatives / "segment"
    report = progress or (lambda stage, done, total: None)

    def compute(run: StageRun) -> dict:
        outputs: list[Path] = []
        rows = []
        dice_rows = []
        rejected: list[int] = []
        brain_level: list[int] = []
        header = [
            "section",
            "status",
            "tissue_threshold",
            "threshold_source",
            "section_threshold",
            "section_threshold_od",
            "threshold_od_z",
            "otsu_threshold",
            "tissue_fraction",
            "gray_fraction_of_tissue",
            "split_od_ratio",
            "split_accepted",
            "overrides",
        ]
        new_masks: dict[int, str] = {}
        # pass 1: each section's own threshold, then the brain-level fallback for the outliers
        estimates: dict[int, tuple[float, float]] = {}
        to_segment = [r for r in chosen if not table.get(r.section, {}).get("skip")]
        stage = f"tissue thresholds {brain.id}"
        report(stage, 0, len(to_segment))
        for done, record in enumerate(to_segment, 1):
            smoothed = smoothed_image(_read_image(brain, record, spacing), spacing, params)
            own = tissue_threshold(smoothed, params)[0]
            estimates[record.section] = (own, threshold_od(smoothed, own)[0])
            report(stage, done, len(to_segment))
        chosen_thresholds, threshold_stats = brain_level_thresholds(estimates, params)
        stage = f"segment {brain.id}"
        report(stage, 0, len(chosen))
        for done, record in enumerate(chosen, 1):
            n = record.section
            extra = table.get(n, {})
            mask_path = mask_root / f"{_name(n)}.h5"
            if extra.get("skip"):
                if record.mask:
                    outputs.append(brain.path(record.mask, section=n))
                    rows.append([n, "skipped", *[""] * (len(header) - 3), "skip"])
                    report(stage, done, len(chosen))
                    continue
                raise DataFormatError(
                    "the overrides skip a section that has no mask",
                    file=overrides,
                    section=n,
                    fix="remove skip for this section (a present section needs a mask)",
                )
            local = replace(
                params,
                **{k: v for k, v in extra.items() if k in PARAMETER_OVERRIDES},
            )
            image = _read_image(brain, record, spacing)
            chosen_threshold = chosen_thresholds[n]
            if "tissue_threshold" in extra:
                threshold, source = extra["tissue_threshold"], "override"
            else:
                threshold, source = chosen_threshold.threshold, chosen_threshold.source
            if source == "brain":
                brain_level.append(n)
                log.info(
                    "section %d: own tissue threshold %.1f (optical density %.3f, z %.1f) replaced "
                    "by the brain's %.1f",
                    n,
                    chosen_threshold.section_threshold,
                    chosen_threshold.od,
                    chosen_threshold.z,
                    threshold,
                )
            result = segment_image(
                image,
                spacing,
                local,
                threshold=threshold,
                gray_from=chosen_threshold.section_threshold if source == "brain" else None,
                section=n,
            )
            if not result.split_accepted:
                rejected.append(n)
            if not (result.mask > 0).any():
                log.warning(
                    "section %d: no tissue found (threshold %.1f)", n, result.tissue_threshold
                )
            write_raster(
                mask_path,
                result.mask,
                spacing,
                kind="labels",
                attrs={"section": n, "source": SOURCE},
            )
            outputs.append(mask_path)
            new_masks[n] = f"masks/{_name(n)}.h5"
            rows.append(
                [
                    n,
                    "segmented",
                    result.tissue_threshold,
                    source,
                    chosen_threshold.section_threshold,
                    chosen_threshold.od,
                    chosen_threshold.z,
                    result.otsu_threshold,
                    result.tissue_fraction,
                    result.gray_fraction,
                    result.split_od_ratio,
                    int(result.split_accepted),
                    ",".join(sorted(extra)) or "",
                ]
            )
            dice = None
            truth_path = truth_root / f"{_name(n)}.h5"
            if truth_path.is_file():
                with Raster(truth_path) as truth_raster:
                    truth = truth_raster.read_level(0)
                    truth_spacing = truth_raster.spacing_um
                ours = to_grid(result.mask, spacing, truth_spacing, truth.shape)
                dice = dice_per_class(ours, truth)
                dice_rows.append((n, dice))
            if qc:
                title = f"{brain.id} section {n}: threshold {result.tissue_threshold:.1f}" + (
                    f", gray Dice {dice['gray']:.3f}" if dice else ""
                )
                if source != "section":
                    title += f" ({source}; own {chosen_threshold.section_threshold:.1f})"
                if not result.split_accepted:
                    title += f" (gray/white split rejected: OD ratio {result.split_od_ratio:.2f})"
                outputs.append(
                    qc_picture(out_root / "qc" / f"{_name(n)}.png", image, result, title)
                )
            report(stage, done, len(chosen))
        text = (
            "\t".join(header)
            + "\n"
            + "".join("\t".join(_format(v) for v in row) + "\n" for row in rows)
        )
        outputs.append(write_text_atomic(out_root / "segment.tsv", text))
        measured: dict = {
            "sections": len(chosen),
            "segmented": len(new_masks),
            "spacing_um": spacing,
            "split_rejected": rejected,
            "brain_threshold": brain_level,
            "brain_threshold_od_median": _finite(threshold_stats["median_od"]),
            "brain_threshold_od_sd": _finite(threshold_stats["sd_od"]),
        }
        if dice_rows:
            dice_rows.sort(key=lambda item: (item[1]["gray"], item[0]))
            text = "section\tdice_background\tdice_white\tdice_gray\n" + "".join(
                f"{n}\t{_format(d['background'])}\t{_format(d['white'])}\t{_format(d['gray'])}\n"
                for n, d in dice_rows
            )
            outputs.append(write_text_atomic(out_root / "dice.tsv", text))
            for cls in ("background", "white", "gray"):
                values = [d[cls] for _, d in dice_rows if not math.isnan(d[cls])]
                measured[f"dice_{cls}_mean"] = float(np.mean(values)) if values else math.nan
                measured[f"dice_{cls}_min"] = float(np.min(values)) if values else math.nan
            measured["worst_gray"] = [[n, round(d["gray"], 4)] for n, d in dice_rows[:5]]
        if new_masks:
            updated = [replace(r, mask=new_masks.get(r.section, r.mask)) for r in records]
            if brain.mask_spacing_um != spacing:
                brain.mask_spacing_um = spacing
                brain.write_manifest()
            brain.write_sections(updated)
        run.commit(outputs, measured)
        return run.summary(measured)

    return run_stage(
        store,
        StageId("segment", brain.id),
        compute,
        parameters={
            "segment": asdict(params),
            "working_spacing_um": spacing,
            "overrides": {str(k): v for k, v in sorted(table.items())},
            "qc_picture": qc,
            **manifest_values,
        },
        inputs=files,
        overwrite=overwrite,
        wait_s=wait_s,
    )


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 5)


def _read_image(brain: Brain, record, spacing_um: float) -> np.ndarray:
    """A section's image at ``spacing_um`` as uint8 or uint16 (float pyramid levels rounded)."""
    with Raster(brain.path(record.image, section=record.section)) as raster:
        image = np.asarray(raster.read_at_spacing(spacing_um))
    if image.dtype.kind == "f":
        image = np.clip(np.rint(image), 0, 65535).astype(
            np.uint16 if image.max() > 255 else np.uint8
        )
    return image


def _written_by_segment(path: Path) -> bool:
    try:
        with Raster(path) as raster:
            value = raster.attribute("source")
    except (DataFormatError, OSError):
        return False
    if isinstance(value, bytes):
        value = value.decode()
    return value == SOURCE
