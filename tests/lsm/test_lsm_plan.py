"""Chain plans: training and test sections, extents, single intervals, and long intervals refused
with the sections to annotate next."""

from __future__ import annotations

import json

import pytest

from cortexgraph.errors import CortexgraphError
from cortexgraph.lsm.plan import (
    ChainPlan,
    LongIntervalError,
    max_interval_sections,
    parse_sections,
    plan_chain,
    plan_single_interval,
    suggest_annotations,
)


def test_plan_alternates_training_and_test_sections():
    available = list(range(10, 461, 30))
    plan = plan_chain(
        [100, 160, 220, 280, 340],
        available,
        area_id=7,
        brain_annotated=[40, 100, 160, 220, 280, 340, 400],
    )
    assert plan.intervals == ((100, 220), (220, 340))
    assert plan.tests == ((160,), (280,))
    assert plan.training_sections == (100, 220, 340) and plan.test_sections == (160, 280)
    # the extent reaches to (not including) the neighbouring annotated sections without the area
    assert plan.extent == (41, 399)
    assert plan.sections == tuple(range(70, 371, 30))
    assert [plan.interval_of(s) for s in (70, 100, 190, 220, 250, 340, 370)] == [
        0,
        0,
        0,
        0,
        1,
        1,
        1,
    ]
    assert [plan.role(s) for s in (70, 100, 130, 160, 370)] == [
        "end",
        "train",
        "between",
        "test",
        "end",
    ]
    assert ChainPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_plan_variants():
    available = list(range(0, 301, 20))
    even = plan_chain([100, 160, 220, 280], available)
    assert even.intervals == ((100, 220), (220, 280)) and even.tests == ((160,), ())
    # no other annotation: the chain's end models cover the stack to its ends
    assert even.extent == (0, 300) and even.sections[0] == 0 and even.sections[-1] == 300
    dense = plan_chain([100, 160, 220], available, step=1)
    assert dense.intervals == ((100, 160), (160, 220)) and dense.test_sections == ()
    fixed = plan_chain([100, 160, 220], available, extent=(120, 200))
    assert fixed.sections == (120, 140, 160, 180, 200) and fixed.intervals == ((100, 220),)
    with pytest.raises(CortexgraphError):
        plan_chain([100], available)


def test_an_explicit_extent_trains_only_the_models_that_predict_it():
    available = list(range(0, 401, 20))
    annotated = [40, 80, 120, 160, 200, 240, 280, 320]  # step 1: 7 intervals of 40
    full = plan_chain(annotated, available, step=1)
    assert len(full.intervals) == 7
    # the default extent reaches every interval: trimming changes nothing
    assert plan_chain(annotated, available, step=1, trim_to_extent=True) == full
    # 130..210 is predicted by (120, 160), (160, 200), (200, 240)
    part = plan_chain(annotated, available, step=1, extent=(130, 210), trim_to_extent=True)
    assert part.intervals == ((120, 160), (160, 200), (200, 240))
    assert all(part.intervals[part.interval_of(s)][0] <= s for s in part.sections)
    assert [full.intervals[full.interval_of(s)] for s in part.sections] == [
        part.intervals[part.interval_of(s)] for s in part.sections
    ]  # every section keeps the model it had in the whole chain
    # an extent beyond the last interval: its closest model, as interval_of picks it
    end = plan_chain(annotated, available, step=2, extent=(340, 400), trim_to_extent=True)
    assert end.intervals == ((280, 320),) and end.sections == (340, 360, 380, 400)
    # step 2: the test sections go with their intervals
    two = plan_chain(annotated, available, step=2, extent=(50, 110), trim_to_extent=True)
    assert two.intervals == ((40, 120),) and two.tests == ((80,),)


def test_plan_of_a_single_interval():
    available = list(range(0, 301, 20))
    plan = plan_single_interval([60, 100, 160, 220, 280], available, (220, 100), area_id=3)
    assert plan.intervals == ((100, 220),) and plan.tests == ((160,),)
    assert plan.sections == tuple(range(100, 221, 20)) and plan.extent == (100, 220)
    assert plan.role(100) == "train" and plan.role(160) == "test" and plan.role(140) == "between"
    with pytest.raises(CortexgraphError, match="not annotated"):
        plan_single_interval([100, 160], available, (100, 220))
    with pytest.raises(CortexgraphError, match="differ"):
        plan_single_interval([100, 160], available, (100, 100))


def test_long_intervals_are_refused_with_the_sections_to_annotate_next():
    """Schiffer et al. 2021 (NeuroImage, Sect. 2.3) train a local model on two sections about 2.4 mm
    (120 sections) apart; sparse annotations (every 180 sections here, step 2: 360-section
    intervals) are refused by default, naming the sections that would bring every interval under the limit."""
    limit = max_interval_sections(2.4, 20.0)
    assert limit == 120
    available = list(range(0, 1201, 15))
    annotated = [105, 285, 465, 645]
    with pytest.raises(LongIntervalError) as error:
        plan_chain(annotated, available, max_interval=limit)
    message = str(error.value)
    assert "105-465 (360 sections)" in message and "--allow-long-intervals" in message
    suggested = suggest_annotations(annotated, available, limit, step=2)
    assert suggested == [165, 225, 345, 405, 525, 585]  # each 180-section gap split in three
    assert "annotate the area on section(s) 165, 225, 345, 405, 525, 585" in message
    # with the suggested sections annotated, the chain plans without a long interval
    fixed = plan_chain(sorted(annotated + suggested), available, max_interval=limit)
    assert max(t - s for s, t in fixed.intervals) <= limit
    # allowed: planned, with a warning and the suggestion in the plan's notes
    plan = plan_chain(annotated, available, max_interval=limit, allow_long=True)
    assert plan.intervals == ((105, 465), (465, 645))
    assert plan.notes["long_intervals"] == [[105, 465], [465, 645]]
    assert plan.notes["suggested_sections"] == suggested
    # the gaps follow the step: with step 1 the intervals are the 180-section gaps
    assert suggest_annotations(annotated, available, limit, step=1) == [225, 405, 585]
    # sections off the digitized grid, or missing: the fewest available sections that do it
    off_grid = suggest_annotations([100, 280], available, limit, step=1)
    assert off_grid == [210] and all(s in available for s in off_grid)
    # a single interval is split into models of at most the limit
    with pytest.raises(LongIntervalError, match="annotate the area on section"):
        plan_single_interval(annotated, available, (105, 465), max_interval=limit)
    assert suggest_annotations([105, 465], available, limit, single=True) == [225, 345]
    # no digitized section inside the gap: nothing to suggest, the error says so
    with pytest.raises(LongIntervalError, match="no digitized section"):
        plan_chain([100, 300], [100, 300], max_interval=limit, step=1)
    # no limit (None) keeps the old behaviour
    assert plan_chain(annotated, available).intervals == plan.intervals
    with pytest.raises(CortexgraphError, match="max-interval-mm"):
        max_interval_sections(-1.0, 20.0)


def test_parse_sections():
    assert parse_sections("511,751") == (511, 751)
    assert parse_sections(" 722 842 ") == (722, 842)
    for bad in ("511", "a,b", "1,2,3", "-1,5"):
        with pytest.raises(CortexgraphError, match="--extent"):
            parse_sections(bad, "--extent")
