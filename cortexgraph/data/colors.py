"""Colours of areas and of scalar node values, shared by section overlays and surface pictures.

Area colours come from the cohort's area table (``areas.tsv``, column ``color``), made
distinguishable first (:func:`display_colours`): an area keeps its table colour when that colour
differs by at least :data:`MIN_DELTA_E` (CIEDE2000) from the colours of every area listed before it,
from the unlabelled gray and from the white background; otherwise it takes the closest colour that
does (searched on a grid of sRGB colours of medium lightness and some chroma, so that black area
names stay legible on it). Atlas tables often give neighbouring areas near-identical colours (the
phantom's table has 71 pairs closer than 5); with the display table no two areas of a 100-area table
are closer than 10, so neighbours never look alike. Every picture and every export (GIfTI label
tables, FreeSurfer annotations, PLY colours) uses the display table, so an area has one colour
everywhere. Two lookups:

* by **area id** (:func:`area_id_colours`): row ``id`` of a ``(max_id + 1, 3)`` uint8 table, row 0 =
  unlabelled;
* by **class index** (:func:`class_colours`): row ``k + 1`` for class ``k`` (the k-th area sorted by
  id), row 0 for ``-1`` (unknown), so ``table[classes + 1]`` colours an array of class indices.

Unlabelled / unknown is light gray :data:`UNLABELLED_RGB`. Scalar values (a probability, a canonical
coordinate, an atlas map) use a matplotlib colour map (:func:`scalar_colours`).
"""

from __future__ import annotations

import functools

import numpy as np

from cortexgraph.data.manifest import AreaTable

UNLABELLED_RGB = (210, 210, 210)
CORRECT_RGB = (46, 160, 67)
WRONG_RGB = (214, 39, 40)
BACKGROUND_RGB = (255, 255, 255)
#: the same on nodes of training sections (seen by the model): lighter, so held-out errors stand out
CORRECT_SEEN_RGB = (170, 215, 170)
WRONG_SEEN_RGB = (240, 165, 160)
#: the smallest CIEDE2000 colour difference between two areas of the display table
MIN_DELTA_E = 10.0

__all__ = [
    "MIN_DELTA_E",
    "display_colours",
    "area_rgb",
    "UNLABELLED_RGB",
    "CORRECT_RGB",
    "WRONG_RGB",
    "CORRECT_SEEN_RGB",
    "WRONG_SEEN_RGB",
    "area_id_colours",
    "class_colours",
    "colour_classes",
    "scalar_colours",
    "error_colours",
]


def _lab(rgb_uint8: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb_uint8, dtype=np.float64).reshape(1, -1, 3) / 255.0)[0]


@functools.lru_cache(maxsize=1)
def _candidates() -> tuple[np.ndarray, np.ndarray]:
    """sRGB grid colours (uint8) with lightness 40-90 and chroma > 20, and their CIELAB values."""
    grid = np.round(np.linspace(0, 255, 24)).astype(np.uint8)
    rgb = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = _lab(rgb)
    keep = (lab[:, 0] > 40) & (lab[:, 0] < 90) & (np.hypot(lab[:, 1], lab[:, 2]) > 20)
    return rgb[keep], lab[keep]


@functools.lru_cache(maxsize=16)
def _display_table(
    colours: tuple[tuple[int, int, int], ...], min_delta_e: float
) -> tuple[tuple[int, int, int], ...]:
    from skimage.color import deltaE_ciede2000

    cand_rgb, cand_lab = _candidates()
    reserved = _lab(np.array([UNLABELLED_RGB, BACKGROUND_RGB], dtype=np.uint8))
    kept = list(reserved)
    # distance of every candidate to its nearest kept colour, updated as colours are kept
    nearest = np.min([deltaE_ciede2000(cand_lab, c[None]) for c in reserved], axis=0)
    out = []
    for rgb, lab in zip(colours, _lab(np.array(colours, dtype=np.uint8)), strict=True):
        if deltaE_ciede2000(np.array(kept), lab[None]).min() >= min_delta_e:
            chosen_rgb, chosen_lab = rgb_triple(rgb), lab
        else:
            free = nearest >= min_delta_e
            if free.any():  # the closest colour to the table's that keeps the distance
                distance = deltaE_ciede2000(cand_lab, lab[None])
                k = int(np.argmin(np.where(free, distance, np.inf)))
            else:  # the table is too large for the distance: the most distinct colour left
                k = int(np.argmax(nearest))
            chosen_rgb, chosen_lab = rgb_triple(cand_rgb[k]), cand_lab[k]
        out.append(chosen_rgb)
        kept.append(chosen_lab)
        nearest = np.minimum(nearest, deltaE_ciede2000(cand_lab, chosen_lab[None]))
    return tuple(out)


def rgb_triple(rgb) -> tuple[int, int, int]:
    """(r, g, b) as three Python ints (from a tuple, list or uint8 array row)."""
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def display_colours(areas: AreaTable, min_delta_e: float = MIN_DELTA_E) -> np.ndarray:
    """uint8 (K, 3): the display colour of each area of the table, in table order (module
    docstring). Deterministic: the same table gives the same colours."""
    colours = tuple(rgb_triple(a.rgb) for a in areas.areas)
    if not colours:
        return np.zeros((0, 3), dtype=np.uint8)
    return np.array(_display_table(colours, float(min_delta_e)), dtype=np.uint8).reshape(-1, 3)


def area_rgb(areas: AreaTable) -> dict[int, tuple[int, int, int]]:
    """``{area id: display colour (uint8 RGB)}``."""
    table = display_colours(areas)
    return {a.id: rgb_triple(table[k]) for k, a in enumerate(areas.areas)}


def area_id_colours(areas: AreaTable, max_id: int | None = None) -> np.ndarray:
    """uint8 (max_id + 1, 3) RGB table indexed by area id; id 0 and ids not in the table: gray.

    ``max_id`` (default: the largest id of the table) lets callers index label images holding ids
    beyond the table without an IndexError.
    """
    top = int(max(areas.ids.max(initial=0), max_id or 0))
    table = np.tile(np.array(UNLABELLED_RGB, dtype=np.uint8), (top + 1, 1))
    if len(areas):
        table[areas.ids] = display_colours(areas)
    return table


def class_colours(areas: AreaTable) -> np.ndarray:
    """uint8 (K + 1, 3) RGB table: row ``k + 1`` = colour of class ``k``, row 0 = unknown (-1)."""
    table = np.empty((len(areas) + 1, 3), dtype=np.uint8)
    table[0] = UNLABELLED_RGB
    table[1:] = display_colours(areas)
    return table


def colour_classes(classes: np.ndarray, areas: AreaTable) -> np.ndarray:
    """uint8 (N, 3) colours of class indices (-1 and out-of-range indices: unlabelled gray)."""
    classes = np.asarray(classes, dtype=np.int64)
    table = class_colours(areas)
    index = np.where((classes >= 0) & (classes < len(areas)), classes + 1, 0)
    return table[index]


def scalar_colours(
    values: np.ndarray,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "viridis",
) -> np.ndarray:
    """uint8 (N, 3) colours of scalar values through a matplotlib colour map; NaN -> gray."""
    from matplotlib import colormaps

    values = np.asarray(values, dtype=np.float64)
    span = vmax - vmin if vmax > vmin else 1.0
    scaled = np.clip((values - vmin) / span, 0.0, 1.0)
    rgba = colormaps[cmap](np.nan_to_num(scaled))
    rgb = np.round(rgba[..., :3] * 255.0).astype(np.uint8)
    rgb[~np.isfinite(values)] = UNLABELLED_RGB
    return rgb


def error_colours(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """uint8 (N, 3): green where ``pred == truth``, red where not, gray where either is -1."""
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    out = np.tile(np.array(UNLABELLED_RGB, dtype=np.uint8), (len(truth), 1))
    known = (truth >= 0) & (pred >= 0)
    out[known & (truth == pred)] = CORRECT_RGB
    out[known & (truth != pred)] = WRONG_RGB
    return out
