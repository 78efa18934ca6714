"""`status` on LSM models that a changed plan dropped: ``unused``, not ``stale`` for ever (the
chain command of the run does not touch them, so `status` used to exit 1 however often it ran)."""

from __future__ import annotations

import json

from cortexgraph.data.manifest import find_brain
from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.derivatives.external import record_external
from cortexgraph.derivatives.status import cohort_status
from tests.web.conftest import copy_cohort


def _plan(store, intervals):
    chain = store.root / "B01" / "lsm" / "lsm-ms" / "hOc1" / "chain.json"
    chain.parent.mkdir(parents=True, exist_ok=True)
    chain.write_text(json.dumps({"intervals": intervals}), encoding="utf-8")
    plan = StageId("lsm-plan", "B01", ("lsm-ms", "hOc1"))
    record_external(store, plan, [chain], {"source": "test", "intervals": intervals})
    return plan


def _model(store, plan, name):
    model = store.root / "B01" / "lsm" / "lsm-ms" / "hOc1" / "models" / name / "model.pt"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(name.encode())
    sid = StageId("lsm-train", "B01", ("lsm-ms", "hOc1", name))
    record_external(store, sid, [model], {"source": "test"}, upstream=[plan])
    return sid


def test_a_model_the_current_plan_dropped_is_unused_not_stale(tiny_cohort, tmp_path):
    root = copy_cohort(tiny_cohort, tmp_path / "tiny")
    cohort = find_brain("B01", root).cohort
    store = Derivatives(root)
    plan = _plan(store, [[422, 722], [722, 842]])
    kept = _model(store, plan, "s0722-s0842")
    dropped = _model(store, plan, "s0422-s0722")

    def states():
        rows = cohort_status(cohort, ["B01"])["brains"]["B01"]
        return {s.label: s for s in rows}

    before = states()
    assert before[kept.label].state == before[dropped.label].state == "done"
    # an annotation changed: the chain is planned again without 422; both models' upstream changed
    _plan(store, [[602, 722], [722, 842]])
    after = states()
    assert after[kept.label].state == "stale"  # in the plan: the chain command updates it
    assert after[dropped.label].state == "unused"
    assert "not in the current plan of lsm-ms for hOc1" in after[dropped.label].reasons[0]
    assert "s0602-s0722, s0722-s0842" in after[dropped.label].reasons[0]
    # a stale plan is no basis: the record's own state stands
    (store.root / "B01" / "lsm" / "lsm-ms" / "hOc1" / "chain.json").write_text("{}")
    assert states()[dropped.label].state == "stale"
