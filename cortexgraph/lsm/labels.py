"""The reading side of LSM labels: what ``project``, ``map3d``, ``stats`` and ``render`` call.

Each model run (``lsm-ms``, ``gsm-hr``, ``lsm-ms-long``...; :mod:`cortexgraph.lsm.layout`) predicts
each area on its own (stage ``lsm-predict``, one writer per file)::

    <cohort>/derivatives/cortexgraph/<brain>/lsm/<run>/<area>/pred/sNNNN.h5
        uint8 classes in the raw section frame at the model's output spacing:
        0 slide, 1 white matter, 2 other cortex, 3 the area, 255 outside the prediction ROI

There is no merged label file on disk: a consumer combines the areas of one run on one section when
it reads them (:func:`combined_section_labels`, :class:`RunLabels`). **The combine rule**: a pixel
gets the id of the area whose prediction has class 3 there; a pixel that two or more areas of the run
claim (class 3 in each) gets 0 (unlabelled) and is counted in ``info["conflict_px"]``; a pixel no
area claims is 0. No area wins over another, so the result does not depend on the order in which
areas were predicted or listed. All areas of a run combined on one section must share the grid
(shape and spacing), which they do when trained with the same preset.

Every function checks that the predictions it reads are current (the lsm-predict record exists, no
input, model or plan changed since, no file was modified): otherwise
:class:`~cortexgraph.errors.UpstreamError` names the stale stage and the command that updates it.
Consumers declare the returned :attr:`RunLabels.upstream` stage ids as upstream of their own stage.

Functions:

* :func:`is_run_name` -- whether a label source name is an LSM/GSM run (``lsm-*``, ``gsm-*``);
* :func:`lsm_runs` -- the runs of a brain with predictions, and their areas;
* :func:`lsm_area_sections` -- ``{section: prediction file}`` of one area of one run;
* :class:`RunLabels` -- one run's areas, checked once, combined per section;
* :func:`combined_section_labels` -- one section of one run, combined (a one-off :class:`RunLabels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cortexgraph.data.manifest import Area, Brain
from cortexgraph.data.names import is_name
from cortexgraph.data.raster import Raster
from cortexgraph.derivatives import Derivatives
from cortexgraph.derivatives.record import read_record
from cortexgraph.derivatives.stages import StageId
from cortexgraph.errors import CortexgraphError, DataFormatError
from cortexgraph.lsm.data import CLASS_AREA, OUTSIDE_ROI, resolve_area
from cortexgraph.lsm.layout import KINDS, check_run_name, predict_id, section_of_prediction

__all__ = [
    "is_run_name",
    "lsm_runs",
    "lsm_area_sections",
    "RunLabels",
    "combined_section_labels",
]


def is_run_name(source: str) -> bool:
    """True when a label source names an LSM/GSM model run (``lsm-...`` or ``gsm-...``)."""
    if not is_name(source):
        return False
    kind, sep, rest = source.partition("-")
    return kind in KINDS and bool(sep) and bool(rest)


def _area(brain: Brain, area_id: int, name: str) -> Area:
    if brain.cohort is not None and area_id in brain.cohort.areas:
        return brain.cohort.areas.by_id[area_id]
    return Area(id=int(area_id), name=str(name), color="#808080")


def lsm_runs(store: Derivatives, brain: Brain) -> dict[str, list[Area]]:
    """The model runs with an lsm-predict record on ``brain``: ``{run: [areas sorted by id]}``.

    Lists what has been predicted (a record exists), current or not; reading the labels checks that
    they are current. Runs whose models were trained without prediction are not listed.
    """
    folder = Path(store.root) / brain.id / "records"
    runs: dict[str, dict[int, Area]] = {}
    if not folder.is_dir():
        return {}
    for path in sorted(folder.glob("lsm-predict@*.json")):
        record = read_record(path)
        if record is None or record.stage != "lsm-predict" or len(record.scope) != 2:
            continue
        run = record.scope[0]
        area_id = record.parameters.get("area_id")
        if not is_run_name(run) or not isinstance(area_id, int):
            continue
        area = _area(brain, area_id, record.parameters.get("area", str(area_id)))
        runs.setdefault(run, {})[area.id] = area
    return {run: [areas[k] for k in sorted(areas)] for run, areas in sorted(runs.items())}


def lsm_area_sections(
    store: Derivatives,
    brain: Brain,
    run: str,
    area: Area | str | int,
    *,
    memo: dict | None = None,
) -> dict[int, Path]:
    """``{section: prediction file}`` of one area of one run (files as described in the module
    docstring), after checking that the lsm-predict record is current (else UpstreamError naming
    the command that brings it up to date). ``memo`` shares the currency checks between calls."""
    check_run_name(run)
    area = resolve_area(brain, area)
    record = store.require(predict_id(brain.id, run, area), memo)
    files = {}
    for name in record.outputs:
        path = store.namer.path(name)
        files[section_of_prediction(path)] = path
    return dict(sorted(files.items()))


class RunLabels:
    """The per-area predictions of one run on one brain, checked current once.

    Parameters
    ----------
    store : the cohort's :class:`~cortexgraph.derivatives.Derivatives`.
    brain : the brain.
    run : the run name (the label source, e.g. ``lsm-ms``).
    areas : the areas to combine (Area, name or id); default: every area the run predicted.

    Attributes
    ----------
    areas : the areas, sorted by id.
    files : ``{area id: {section: prediction file}}``.
    sections : every section at least one of the areas was predicted on, sorted.
    upstream : the lsm-predict stage ids read (declare them as upstream of a consuming stage).
    """

    def __init__(
        self,
        store: Derivatives,
        brain: Brain,
        run: str,
        areas: Sequence[Area | str | int] | None = None,
    ) -> None:
        check_run_name(run)
        self.store, self.brain, self.run = store, brain, run
        if areas is None:
            chosen = lsm_runs(store, brain).get(run, [])
            if not chosen:
                raise CortexgraphError(
                    f"run {run} has no predictions on {brain.id}",
                    file=Path(store.root) / brain.id / "records",
                    fix=f"run `cortexgraph lsm chain {brain.id} --name {run} --area AREA` "
                    "(lsm gsm for a gsm-* run) first",
                )
        else:
            chosen = sorted(
                {resolve_area(brain, a).id: resolve_area(brain, a) for a in areas}.values(),
                key=lambda a: a.id,
            )
        self.areas: list[Area] = list(chosen)
        memo: dict = {}
        self.files = {a.id: lsm_area_sections(store, brain, run, a, memo=memo) for a in self.areas}
        self.sections = sorted({s for files in self.files.values() for s in files})
        self.upstream: list[StageId] = [predict_id(brain.id, run, a) for a in self.areas]

    def combined(self, section: int) -> tuple[np.ndarray, float, dict]:
        """The areas' labels on ``section``, combined by the rule of the module docstring.

        Returns
        -------
        ``(labels, spacing_um, info)``: (rows, cols) uint16 area ids (0 = unlabelled) in the raw
        section frame; the pixel spacing; ``info`` with ``run``, ``section``, ``spacing_um``,
        ``areas`` (``{name: {"id", "file", "area_px"}}`` of the areas predicted on the section,
        ``area_px`` counted before conflicts are removed), ``conflict_px`` (pixels claimed by two or
        more areas, set to 0), ``predicted_px`` (pixels inside at least one area's prediction ROI).
        Raises CortexgraphError when none of the areas was predicted on ``section``.
        """
        section = int(section)
        present = [a for a in self.areas if section in self.files[a.id]]
        if not present:
            raise CortexgraphError(
                f"run {self.run} has no prediction on this section"
                + (f" (areas: {', '.join(a.name for a in self.areas)})" if self.areas else ""),
                section=section,
                fix=f"predicted sections: {_ranges(self.sections)}",
            )
        # (labels, claims, inside, spacing, file): the grid of the first area's prediction
        grid: tuple[np.ndarray, np.ndarray, np.ndarray, float, Path] | None = None
        info: dict = {"run": self.run, "section": section, "areas": {}}
        for area in present:
            path = self.files[area.id][section]
            with Raster(path) as raster:
                classes = raster.read_level(0)
                this_spacing = float(raster.spacing_um)
            if grid is None:
                grid = (
                    np.zeros(classes.shape, np.uint16),
                    np.zeros(classes.shape, np.uint8),
                    np.zeros(classes.shape, bool),
                    this_spacing,
                    path,
                )
            labels, claims, inside, spacing, first_file = grid
            if classes.shape != labels.shape or abs(this_spacing - spacing) > 1e-9 * spacing:
                raise DataFormatError(
                    f"the predictions of run {self.run} on this section differ in grid: "
                    f"{first_file.name} of another area is {labels.shape} at {spacing} um, this one "
                    f"{classes.shape} at {this_spacing} um",
                    file=path,
                    section=section,
                    fix="train every area of a run with the same --preset, or give the areas "
                    "separate runs (--name)",
                )
            mine = classes == CLASS_AREA
            labels[mine & (claims == 0)] = area.id
            claims += mine
            np.minimum(claims, 2, out=claims)  # 0, 1 or 'two or more'
            inside |= classes != OUTSIDE_ROI
            info["areas"][area.name] = {
                "id": area.id,
                "file": str(path),
                "area_px": int(mine.sum()),
            }
        assert grid is not None  # present is not empty
        labels, claims, inside, spacing, _ = grid
        conflict = claims > 1
        labels[conflict] = 0
        info["spacing_um"] = spacing
        info["conflict_px"] = int(conflict.sum())
        info["predicted_px"] = int(inside.sum())
        return labels, spacing, info


def combined_section_labels(
    store: Derivatives,
    brain: Brain,
    run: str,
    section: int,
    areas: Sequence[Area | str | int] | None = None,
) -> tuple[np.ndarray, float, dict]:
    """One run's areas combined on one section: ``(uint16 area ids, spacing_um, info)``.

    See :meth:`RunLabels.combined` (the rule is in the module docstring). For many sections build
    one :class:`RunLabels` and call its ``combined``: the currency checks then run once.
    """
    return RunLabels(store, brain, run, areas).combined(section)


def _ranges(sections: Sequence[int]) -> str:
    if not sections:
        return "none"
    if len(sections) <= 8:
        return ", ".join(str(s) for s in sections)
    return f"{sections[0]}..{sections[-1]} ({len(sections)} sections)"
