"""Label overlays of a section: what exists, its colours and legend, and the review of predictions.

An overlay is one label raster of the section drawn over its image, each pixel coloured by its value:

==========================  ==================================================================
key                         file, colours
==========================  ==================================================================
``mask``                    the tissue mask (1 white matter, 2 gray matter)
``annotation``              the annotation's label image (area colours of ``areas.tsv``)
``truth``                   a phantom's ground truth ``ground_truth/<brain>/labels/sNNNN.h5``
``labels~<source>``         a label source's per-section area ids,
                            ``<brain derivatives>/labels/<source>/sNNNN.h5`` (GNN runs projected
                            by ``cortexgraph project``; merged LSM labels)
``pred~<source>~<area id>`` one area's prediction of a local-model run (class 3 = the area, in its
                            colour; classes 0-2 inside the prediction ROI light grey; outside the
                            ROI transparent)
==========================  ==================================================================

The overlay's own pixel grid is kept (its spacing may differ from the image's); the viewer places it
by its physical extent, which shares the image's top-left corner (docs/data-format.md).

**Review.** A prediction can be accepted (it becomes the section's annotation of the area:
:func:`cortexgraph.web.annotations.accept_prediction`) or rejected; the decision is kept in
``<brain derivatives>/web/review/<source>@<area id>.json`` (``{section: {"state", "unix"}}``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import AreaTable, Brain
from cortexgraph.data.names import check_name, inside
from cortexgraph.outputs import write_json_atomic
from cortexgraph.web import lsm_adapter
from cortexgraph.web.security import NotFoundError
from cortexgraph.web.tiles import colour_lookup

__all__ = [
    "MASK_COLOURS",
    "Overlay",
    "section_overlays",
    "find_overlay",
    "area_table_rgba",
    "prediction_rgba",
    "read_review",
    "set_review",
]

MASK_COLOURS = {1: ("white matter", (70, 130, 180, 255)), 2: ("gray matter", (235, 160, 50, 255))}
ROI_RGBA = (150, 150, 150, 70)
_KEY = re.compile(
    r"(mask|annotation|truth)|labels~([A-Za-z0-9][A-Za-z0-9._-]{0,63})|"
    r"pred~([A-Za-z0-9][A-Za-z0-9._-]{0,63})~(\d{1,9})"
)


@dataclass
class Overlay:
    """One overlay of a section (module docstring)."""

    key: str
    title: str
    group: str
    path: Path
    table: np.ndarray
    legend: list[dict] = field(default_factory=list)
    area_id: int | None = None
    source: str | None = None

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "title": self.title,
            "group": self.group,
            "legend": self.legend,
            "area_id": self.area_id,
            "source": self.source,
        }


def area_table_rgba(areas: AreaTable) -> np.ndarray:
    """RGBA by area id: the area's colour, opaque; 0 and unknown ids transparent."""
    return colour_lookup({a.id: (*a.rgb, 255) for a in areas.areas})


def prediction_rgba(colour: tuple[int, int, int]) -> np.ndarray:
    """RGBA by LSM class: 3 the area's colour, 0-2 (inside the ROI) light grey, 255 transparent."""
    return colour_lookup(
        {0: ROI_RGBA, 1: ROI_RGBA, 2: ROI_RGBA, lsm_adapter.CLASS_AREA: (*colour, 255)},
        top=lsm_adapter.OUTSIDE_ROI,
    )


def _area_legend(areas: AreaTable, ids) -> list[dict]:
    return [
        {"value": int(i), "name": areas.by_id[int(i)].name, "color": areas.by_id[int(i)].color}
        for i in ids
        if int(i) in areas
    ]


def _ids_in(path: Path) -> list[int]:
    """Area ids present in a label raster (read at the finest level of at most 4 million pixels, so
    a large level 0 is not read for a legend)."""
    from cortexgraph.data.raster import Raster

    with Raster(path) as raster:
        fits = [lv.index for lv in raster.levels if lv.shape[0] * lv.shape[1] <= 4_000_000]
        level = fits[0] if fits else raster.levels[-1].index
        values = np.unique(raster.read_level(level))
    return [int(v) for v in values if v > 0]


_LEGENDS: dict[tuple, list[int]] = {}
_LEGEND_LOCK = threading.Lock()


def _ids_cached(path: Path) -> list[int]:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _LEGEND_LOCK:
        if key in _LEGENDS:
            return _LEGENDS[key]
    ids = _ids_in(path)
    with _LEGEND_LOCK:
        if len(_LEGENDS) > 4096:
            _LEGENDS.clear()
        _LEGENDS[key] = ids
    return ids


def _truth_path(brain: Brain, section: int) -> Path:
    return brain.ground_truth / "labels" / f"s{int(section):04d}.h5"


def section_overlays(brain: Brain, section: int, with_legend: bool = True) -> list[Overlay]:
    """Every overlay that exists for one section (module docstring), in a stable order."""
    areas = brain.area_table
    record = brain.section(int(section))
    by_id = area_table_rgba(areas)
    out: list[Overlay] = []
    if record.mask and not record.missing:
        path = inside(brain.root, record.mask, what="mask path", file=brain.section_table_path)
        if path.is_file():
            legend = [
                {"value": v, "name": n, "color": "#{:02x}{:02x}{:02x}".format(*c[:3])}
                for v, (n, c) in MASK_COLOURS.items()
            ]
            table = colour_lookup({v: c for v, (_, c) in MASK_COLOURS.items()})
            out.append(Overlay("mask", "tissue mask", "tissue", path, table, legend))
    if record.annotation and not record.missing:
        path = inside(
            brain.root, record.annotation, what="annotation path", file=brain.section_table_path
        )
        if path.is_file():
            legend = _area_legend(areas, _ids_cached(path)) if with_legend else []
            out.append(
                Overlay("annotation", "annotation (label image)", "annotation", path, by_id, legend)
            )
    truth = _truth_path(brain, section)
    if truth.is_file():
        legend = _area_legend(areas, _ids_cached(truth)) if with_legend else []
        out.append(Overlay("truth", "ground truth (phantom)", "truth", truth, by_id, legend))
    labels_root = brain.derivatives / "labels"
    if labels_root.is_dir():
        for folder in sorted(p for p in labels_root.iterdir() if p.is_dir()):
            path = folder / f"s{int(section):04d}.h5"
            if path.is_file():
                legend = _area_legend(areas, _ids_cached(path)) if with_legend else []
                out.append(
                    Overlay(
                        f"labels~{folder.name}",
                        f"labels of {folder.name}",
                        "labels",
                        path,
                        by_id,
                        legend,
                        source=folder.name,
                    )
                )
    for found in lsm_adapter.prediction_sets(brain):
        files = lsm_adapter.prediction_files(brain, found.source, found.area)
        if int(section) in files:
            area = found.area
            legend = [
                {"value": lsm_adapter.CLASS_AREA, "name": area.name, "color": area.color},
                {"value": 0, "name": "prediction ROI", "color": "#969696"},
            ]
            out.append(
                Overlay(
                    f"pred~{found.source}~{area.id}",
                    f"{area.name} predicted by {found.source}",
                    "prediction",
                    files[int(section)],
                    prediction_rgba(area.rgb),
                    legend,
                    area_id=area.id,
                    source=found.source,
                )
            )
    return out


def find_overlay(brain: Brain, section: int, key: str) -> Overlay:
    """The overlay ``key`` of a section (404 when the key is malformed or the overlay absent)."""
    if not _KEY.fullmatch(key or ""):
        raise NotFoundError(f"no overlay {key!r}", fix="use a key listed by .../overlays")
    for overlay in section_overlays(brain, section, with_legend=False):
        if overlay.key == key:
            return overlay
    raise NotFoundError(f"section {section} of {brain.id} has no overlay {key!r}", section=section)


# --------------------------------------------------------------------------------------------------
# review of predictions


def review_path(brain: Brain, source: str, area_id: int) -> Path:
    check_name(source, "label source")
    return brain.derivatives / "web" / "review" / f"{source}@{int(area_id)}.json"


def read_review(brain: Brain, source: str, area_id: int) -> dict[int, dict]:
    """``{section: {"state": "accepted" | "rejected", "unix"}}`` of one source and area."""
    path = review_path(brain, source, area_id)
    if not path.is_file():
        return {}
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


_REVIEW_LOCK = threading.Lock()


def set_review(brain: Brain, source: str, area_id: int, section: int, decision: str | None) -> dict:
    """Record (or with ``None`` clear) the decision on one section's prediction."""
    if decision not in ("accepted", "rejected", None):
        raise ValueError(decision)
    with _REVIEW_LOCK:
        review = read_review(brain, source, area_id)
        if decision is None:
            review.pop(int(section), None)
        else:
            review[int(section)] = {"state": decision, "unix": round(time.time(), 3)}
        write_json_atomic(
            review_path(brain, source, area_id), {str(k): v for k, v in review.items()}
        )
    return review
