"""Chain plans of local segmentation models (Schiffer et al. 2021, NeuroImage, Sect. 2.3; Schiffer,
PhD thesis, Sect. 5.1.1, Fig. 5.1 and Sect. 5.2).

A neuroanatomist annotates an area on a few sections; one model per interval ``[s, t]`` between two
annotated sections labels every section in between. :func:`plan_chain`: the area's annotated
sections alternate between training and test sections (the publications train on every 120th
section and test on the annotated section in the middle, thesis Sect. 5.2 and Fig. 5.6);
consecutive training sections form the intervals of a chain of models that covers the area's
extent. Sections beyond the first / last training section use the closest model (NeuroImage paper
Sect. 2.3). :func:`plan_single_interval` is the chain of one given interval. An interval longer
than :data:`~cortexgraph.lsm.schedule.MAX_INTERVAL_MM` is refused (or, when allowed, planned with a
warning), and :func:`suggest_annotations` names the sections to annotate so that none is.

Plans are values: this module reads no file except the annotations :func:`plan_for_area` reads
through a :class:`~cortexgraph.data.stack.SectionStack`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from cortexgraph.data.stack import SectionStack
from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.lsm.data import area_sections
from cortexgraph.lsm.schedule import MAX_INTERVAL_MM

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainPlan:
    """Which models an area needs and which sections each one predicts.

    Attributes
    ----------
    area_id : the area.
    annotated : sorted annotated sections that contain the area.
    intervals : training pairs ``(s, t)`` of consecutive training sections.
    tests : per interval, the annotated sections strictly inside it (never trained on).
    sections : every section the chain predicts (available, not excluded, inside the extent).
    extent : ``(first, last)`` section numbers of the predicted range (inclusive).
    """

    area_id: int
    annotated: tuple[int, ...]
    intervals: tuple[tuple[int, int], ...]
    tests: tuple[tuple[int, ...], ...]
    sections: tuple[int, ...]
    extent: tuple[int, int]
    step: int = 2
    notes: dict = field(default_factory=dict)

    @property
    def training_sections(self) -> tuple[int, ...]:
        return tuple(sorted({s for pair in self.intervals for s in pair}))

    @property
    def test_sections(self) -> tuple[int, ...]:
        return tuple(sorted({s for group in self.tests for s in group}))

    def interval_of(self, section: int) -> int:
        """Index of the model that predicts ``section``: the interval containing it (a shared
        training section goes to the interval on its left), else the closest end model."""
        for index, (s, t) in enumerate(self.intervals):
            if s <= section <= t:
                return index
        return 0 if section < self.intervals[0][0] else len(self.intervals) - 1

    def role(self, section: int) -> str:
        """``train``, ``test`` (annotated, left out), ``between`` (inside an interval) or ``end``."""
        if section in self.training_sections:
            return "train"
        if section in self.test_sections:
            return "test"
        if self.intervals[0][0] < section < self.intervals[-1][1]:
            return "between"
        return "end"

    def to_dict(self) -> dict:
        return {
            "area_id": self.area_id,
            "annotated": list(self.annotated),
            "intervals": [list(p) for p in self.intervals],
            "tests": [list(t) for t in self.tests],
            "sections": list(self.sections),
            "extent": list(self.extent),
            "step": self.step,
            "notes": dict(self.notes),
        }

    @classmethod
    def from_dict(cls, values: dict) -> ChainPlan:
        return cls(
            area_id=int(values["area_id"]),
            annotated=tuple(int(s) for s in values["annotated"]),
            intervals=tuple((int(s), int(t)) for s, t in values["intervals"]),
            tests=tuple(tuple(int(s) for s in group) for group in values["tests"]),
            sections=tuple(int(s) for s in values["sections"]),
            extent=(int(values["extent"][0]), int(values["extent"][1])),
            step=int(values.get("step", 2)),
            notes=dict(values.get("notes", {})),
        )


def plan_chain(
    area_annotated: Sequence[int],
    available: Sequence[int],
    *,
    area_id: int = 0,
    step: int = 2,
    brain_annotated: Sequence[int] = (),
    extent: tuple[int, int] | None = None,
    max_interval: int | None = None,
    allow_long: bool = False,
    trim_to_extent: bool = False,
) -> ChainPlan:
    """Plan the chain of models of one area.

    Parameters
    ----------
    area_annotated : annotated sections whose annotation contains the area.
    available : sections that can be predicted (present, not excluded).
    area_id : the area (stored in the plan).
    step : every ``step``-th annotated section of the area is a training section (first and last
        always); the ones in between are test sections. ``step=2`` is the published protocol (train on
        every 120th section, test on the annotated 60th between, thesis Sect. 5.2, Fig. 5.6).
    brain_annotated : all annotated sections of the brain. By default the extent reaches from the
        area's first annotated section back to (excluding) the brain's previous annotated section
        that does *not* show the area, or to the first available section when there is none; the
        same forward. These end sections use the closest model (NeuroImage paper Sect. 2.3).
    extent : explicit ``(first, last)`` range of sections to predict (inclusive).
    max_interval : longest allowed interval ``t - s`` in section numbers (``None``: no limit); the
        callers derive it from :data:`MAX_INTERVAL_MM` and the section thickness.
    allow_long : plan longer intervals anyway, with a warning; the plan's ``notes`` list them
        (``long_intervals``) and the sections to annotate (``suggested_sections``).
    trim_to_extent : keep only the intervals whose model predicts a section of the extent (those
        that overlap it; the closest one when the extent lies beyond every interval), with their
        test sections: an explicit extent over part of the area then trains only the models it
        needs. The default extent overlaps every interval.

    Returns
    -------
    :class:`ChainPlan`. Raises CortexgraphError when the area has fewer than two annotated sections,
    and LongIntervalError (naming the intervals and the sections to annotate next) when an
    interval is longer than ``max_interval`` and ``allow_long`` is False.
    """
    annotated = sorted({int(s) for s in area_annotated})
    if len(annotated) < 2:
        raise CortexgraphError(
            f"area {area_id} is annotated on {len(annotated)} section(s); a local model needs two",
            fix="annotate the area on at least two sections",
        )
    if step < 1:
        raise ValueError("step must be >= 1")
    indices = list(range(0, len(annotated), step))
    if indices[-1] != len(annotated) - 1:
        indices.append(len(annotated) - 1)
    training = [annotated[i] for i in indices]
    intervals = tuple(zip(training[:-1], training[1:], strict=True))
    tests = tuple(tuple(a for a in annotated if s < a < t) for s, t in intervals)
    available = sorted({int(s) for s in available})
    if extent is None:
        others = sorted(set(int(s) for s in brain_annotated) - set(annotated))
        before = [s for s in others if s < annotated[0]]
        after = [s for s in others if s > annotated[-1]]
        lo = before[-1] + 1 if before else min(available + annotated)
        hi = after[0] - 1 if after else max(available + annotated)
        extent = (lo, hi)
    lo, hi = int(extent[0]), int(extent[1])
    if trim_to_extent:
        intervals, tests = _intervals_for_extent(intervals, tests, lo, hi)
    sections = tuple(s for s in available if lo <= s <= hi)
    if not sections:
        raise CortexgraphError(
            f"the extent {lo}..{hi} holds no available section to predict",
            fix="give an extent that overlaps the digitized sections (--extent first,last)",
        )
    plan = ChainPlan(
        area_id=int(area_id),
        annotated=tuple(annotated),
        intervals=intervals,
        tests=tests,
        sections=sections,
        extent=(lo, hi),
        step=int(step),
    )
    return _check_intervals(plan, available, max_interval, allow_long)


class LongIntervalError(ParameterError):
    """A planned interval is longer than the limit (exit status 2)."""


def _intervals_for_extent(
    intervals: tuple[tuple[int, int], ...], tests: tuple[tuple[int, ...], ...], lo: int, hi: int
) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, ...], ...]]:
    """The intervals (and their test sections) whose model predicts a section of ``lo..hi``: those
    overlapping it, or the closest end interval when none does (:meth:`ChainPlan.interval_of`)."""
    keep = [i for i, (s, t) in enumerate(intervals) if s <= hi and t >= lo]
    if not keep:
        keep = [0 if hi < intervals[0][0] else len(intervals) - 1]
    return tuple(intervals[i] for i in keep), tuple(tests[i] for i in keep)


def long_intervals(plan: ChainPlan, max_interval: int) -> list[tuple[int, int]]:
    """The intervals of ``plan`` longer than ``max_interval`` sections."""
    return [(s, t) for s, t in plan.intervals if t - s > max_interval]


def suggest_annotations(
    annotated: Sequence[int],
    available: Sequence[int],
    max_interval: int,
    *,
    step: int = 2,
    single: bool = False,
) -> list[int]:
    """Sections to annotate next so that no interval of the re-planned chain is too long.

    First every gap between consecutive annotated sections inside a long interval that is wider
    than ``max_interval / step`` gets the fewest available sections that leave no step wider than
    that (a training interval spans ``step`` gaps); then, while the chain planned from the annotated sections plus the suggestions still has
    a long interval (a gap without a digitized section where one was wanted), its widest gap gets
    the available section nearest its middle. With ``single=True`` (one given interval ``[s, t]``,
    :func:`plan_single_interval`) the interval is split into models of at most ``max_interval``.

    Returns the suggested section numbers, sorted (empty when no available section can shorten the
    long intervals: the gaps hold no digitized section).
    """
    have = sorted({int(a) for a in annotated})
    free = sorted({int(a) for a in available} - set(have))
    if not have or max_interval < 1:
        return []
    suggested: set[int] = set()

    def nearest(lo: int, hi: int, target: float) -> int | None:
        inside = [x for x in free if lo < x < hi and x not in suggested]
        return min(inside, key=lambda x: (abs(x - target), x)) if inside else None

    def split(lo: int, hi: int, widest: int) -> None:
        """Sections in (lo, hi) so that no step between them is wider than ``widest``: walking
        from ``lo``, the farthest available section within reach each time."""
        at = lo
        while hi - at > widest:
            reach = [x for x in free if at < x < hi and x - at <= widest]
            if not reach:  # no digitized section within reach: the nearest one beyond
                beyond = [x for x in free if at < x < hi]
                if not beyond:
                    return
                reach = beyond[:1]
            at = max(reach)
            suggested.add(at)

    def long_now() -> list[tuple[int, int]]:
        points = sorted(set(have) | suggested)
        indices = list(range(0, len(points), step))
        if indices[-1] != len(points) - 1:
            indices.append(len(points) - 1)
        training = [points[i] for i in indices]
        pairs = zip(training[:-1], training[1:], strict=True)
        return [(a, b) for a, b in pairs if b - a > max_interval]

    if single:
        split(have[0], have[-1], max_interval)
        return sorted(suggested)
    gap_limit = max(1, max_interval // max(step, 1))
    for a, b in long_now():
        inner = [p for p in have if a <= p <= b]
        for lo, hi in zip(inner[:-1], inner[1:], strict=True):
            split(lo, hi, gap_limit)
    for _ in range(len(free) + 1):
        long = long_now()
        if not long:
            break
        added = False
        for a, b in long:
            inner = sorted(p for p in set(have) | suggested if a <= p <= b)
            gaps = sorted(zip(inner[:-1], inner[1:], strict=True), key=lambda g: g[0] - g[1])
            for lo, hi in gaps:
                pick = nearest(lo, hi, (lo + hi) / 2)
                if pick is not None:
                    suggested.add(pick)
                    added = True
                    break
        if not added:
            break
    return sorted(suggested)


def _check_intervals(
    plan: ChainPlan,
    available: Sequence[int],
    max_interval: int | None,
    allow_long: bool,
    single: bool = False,
) -> ChainPlan:
    """Refuse (or, with ``allow_long``, note and warn about) intervals longer than the limit."""
    if max_interval is None:
        return plan
    long = long_intervals(plan, max_interval)
    if not long:
        return plan
    suggestion = suggest_annotations(
        plan.annotated, available, max_interval, step=plan.step, single=single
    )
    listed = ", ".join(f"{s}-{t} ({t - s} sections)" for s, t in long)
    what = (
        f"area {plan.area_id}: {len(long)} interval(s) longer than {max_interval} sections "
        f"(the longest interval a local model is trained on, {MAX_INTERVAL_MM:g} mm by default): "
        f"{listed}"
    )
    advice = (
        f"annotate the area on section(s) {', '.join(str(x) for x in suggestion)} and plan again"
        if suggestion
        else "annotate the area on sections inside these intervals (no digitized section lies "
        "inside the widest gaps)"
    )
    if not allow_long:
        raise LongIntervalError(
            what,
            section=long[0][0],
            fix=f"{advice}; or raise --max-interval-mm, or plan anyway with --allow-long-intervals",
        )
    log.warning("%s; %s", what, advice)
    notes = dict(plan.notes)
    notes["long_intervals"] = [list(p) for p in long]
    notes["max_interval_sections"] = int(max_interval)
    notes["suggested_sections"] = list(suggestion)
    return replace(plan, notes=notes)


def max_interval_sections(max_interval_mm: float | None, thickness_um: float) -> int | None:
    """The interval limit in section numbers for a limit in mm (``None``: no limit)."""
    if max_interval_mm is None:
        return None
    ok = isinstance(max_interval_mm, int | float) and math.isfinite(max_interval_mm)
    ParameterError.check_ranges(
        [(ok and max_interval_mm > 0, "--max-interval-mm", max_interval_mm, "a length > 0 mm")]
    )
    return max(1, int(math.floor(max_interval_mm * 1000.0 / thickness_um + 1e-6)))


def plan_for_area(
    stack: SectionStack,
    area_id: int,
    *,
    step: int = 2,
    extent: tuple[int, int] | None = None,
    max_interval_mm: float | None = MAX_INTERVAL_MM,
    allow_long: bool = False,
) -> ChainPlan:
    """:func:`plan_chain` from a brain's annotations (reads every annotated section once)."""
    annotated = area_sections(stack, area_id)
    return plan_chain(
        annotated,
        stack.sections,
        area_id=area_id,
        step=step,
        brain_annotated=stack.brain.annotated_sections,
        extent=extent,
        max_interval=max_interval_sections(max_interval_mm, stack.brain.thickness_um),
        allow_long=allow_long,
    )


def plan_single_interval(
    area_annotated: Sequence[int],
    available: Sequence[int],
    interval: tuple[int, int],
    *,
    area_id: int = 0,
    max_interval: int | None = None,
    allow_long: bool = False,
) -> ChainPlan:
    """The chain of one given interval ``(s, t)`` (``cortexgraph lsm train --sections s,t``).

    Parameters
    ----------
    area_annotated : annotated sections whose annotation contains the area (at least those in
        ``[s, t]``).
    available : sections that can be predicted.
    interval : the two training sections; both must show the area.
    max_interval, allow_long : the interval limit, as for :func:`plan_chain`.

    Returns
    -------
    :class:`ChainPlan` with the one interval, the annotated sections strictly inside it as test
    sections and every available section of ``[s, t]`` (both ends included) to predict.
    """
    s, t = sorted(int(v) for v in interval)
    if s == t:
        raise CortexgraphError("the two training sections must differ", section=s)
    annotated = sorted({int(a) for a in area_annotated if s <= int(a) <= t})
    for section in (s, t):
        if section not in annotated:
            raise CortexgraphError(
                f"area {area_id} is not annotated on this section",
                section=section,
                fix="train on sections whose annotation contains the area (`cortexgraph lsm chain` "
                "plans them)",
            )
    plan = ChainPlan(
        area_id=int(area_id),
        annotated=tuple(annotated),
        intervals=((s, t),),
        tests=(tuple(a for a in annotated if s < a < t),),
        sections=tuple(int(u) for u in sorted(available) if s <= int(u) <= t),
        extent=(s, t),
        step=len(annotated) - 1,
    )
    return _check_intervals(plan, available, max_interval, allow_long, single=True)


def parse_sections(text: str, option: str = "--sections") -> tuple[int, int]:
    """``"s,t"`` -> (s, t); ``option`` names the option in the error message."""
    try:
        values = [int(v) for v in re.split(r"[,\s]+", text.strip()) if v]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) < 0:
        raise CortexgraphError(
            f"{option} {text!r}: give two section numbers", fix=f"e.g. {option} 511,751"
        )
    return values[0], values[1]
