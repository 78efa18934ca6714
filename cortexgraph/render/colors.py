"""Colours of areas and of scalar node values, shared by section overlays and surface pictures.

Area colours come from the cohort's area table (``areas.tsv``, column ``color``). Two lookups:

* by **area id** (:func:`area_id_colours`): row ``id`` of a ``(max_id + 1, 3)`` uint8 table, row 0 =
  unlabelled;
* by **class index** (:func:`class_colours`): row ``k + 1`` for class ``k`` (the k-th area sorted by
  id), row 0 for ``-1`` (unknown), so ``table[classes + 1]`` colours an array of class indices.

Unlabelled / unknown is light gray :data:`UNLABELLED_RGB`. Scalar values (a probability, a canonical
coordinate, an atlas map) use a matplotlib colour map (:func:`scalar_colours`).
"""

from __future__ import annotations

import numpy as np

from cortexgraph.data.manifest import AreaTable

UNLABELLED_RGB = (210, 210, 210)
CORRECT_RGB = (46, 160, 67)
WRONG_RGB = (214, 39, 40)

__all__ = [
    "UNLABELLED_RGB",
    "CORRECT_RGB",
    "WRONG_RGB",
    "area_id_colours",
    "class_colours",
    "colour_classes",
    "scalar_colours",
    "error_colours",
]


def area_id_colours(areas: AreaTable, max_id: int | None = None) -> np.ndarray:
    """uint8 (max_id + 1, 3) RGB table indexed by area id; id 0 and ids not in the table: gray.

    ``max_id`` (default: the largest id of the table) lets callers index label images holding ids
    beyond the table without an IndexError.
    """
    top = int(max(areas.ids.max(initial=0), max_id or 0))
    table = np.tile(np.array(UNLABELLED_RGB, dtype=np.uint8), (top + 1, 1))
    for area in areas.areas:
        table[area.id] = area.rgb
    return table


def class_colours(areas: AreaTable) -> np.ndarray:
    """uint8 (K + 1, 3) RGB table: row ``k + 1`` = colour of class ``k``, row 0 = unknown (-1)."""
    table = np.empty((len(areas) + 1, 3), dtype=np.uint8)
    table[0] = UNLABELLED_RGB
    for k, area in enumerate(areas.areas):
        table[k + 1] = area.rgb
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
