"""The state of every stage of a cohort's brains: done, stale (and why), missing, running.

:func:`cohort_status` is what ``cortexgraph status`` prints (and what the web app shows). It reads
records and locks only; it never computes anything. A stage is

* ``done``: its record is current (:func:`~cortexgraph.derivatives.record.record_problems` is empty);
* ``stale``: its record exists but an input, an output, an upstream record or the stage's code
  changed (the reasons are listed);
* ``running``: another process holds its lock;
* ``missing``: an expected stage without a record (``build-graph`` and the node features of every
  brain, the CY of every encoder, the predictions and projections of every model run);
* ``unused``: the model of an LSM interval that the current plan of its run no longer has (an
  annotation changed, and the chain was planned again). It is kept, so that a plan that returns to
  the interval reuses it, and no command of the run updates it: it does not count as undone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cortexgraph.derivatives.lock import lock_is_held
from cortexgraph.derivatives.record import read_record
from cortexgraph.derivatives.stage import Derivatives
from cortexgraph.derivatives.stages import STAGES, StageId
from cortexgraph.errors import CortexgraphError

__all__ = ["StageState", "cohort_status", "brain_status", "model_runs", "encoders"]


@dataclass
class StageState:
    """One stage execution's state (module docstring)."""

    label: str
    stage: str
    brain: str | None
    scope: list[str]
    state: str
    reasons: list[str] = field(default_factory=list)
    command: str = ""
    key: str = ""
    finished: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _names_in(folder, stage: str) -> set[str]:
    """Scopes of the records ``<stage>@<scope>.json`` in a records folder."""
    if not folder.is_dir():
        return set()
    return {p.stem.split("@", 1)[1] for p in folder.glob(f"{stage}@*.json") if "@" in p.stem}


def model_runs(store: Derivatives) -> list[str]:
    """Names of the model runs of the cohort (train-gnn records, or run folders)."""
    names = _names_in(store.root / "records", "train-gnn")
    runs = store.root / "runs"
    if runs.is_dir():
        names |= {p.name for p in runs.iterdir() if (p / "config.json").is_file()}
    return sorted(names)


def encoders(store: Derivatives, brain_ids: list[str]) -> list[str]:
    """Names of the encoders of the cohort (train-encoder records, encoder folders, CY records)."""
    names = _names_in(store.root / "records", "train-encoder")
    folder = store.root / "encoders"
    if folder.is_dir():
        names |= {p.name for p in folder.iterdir() if (p / "encoder.pt").is_file()}
    for brain in brain_ids:
        names |= _names_in(store.root / brain / "records", "features")
    return sorted(names)


def _state(store: Derivatives, sid: StageId, memo: dict) -> StageState:
    base: dict[str, Any] = {
        "label": sid.label,
        "stage": sid.stage,
        "brain": sid.brain,
        "scope": list(sid.scope),
        "command": sid.command(),
    }
    holder = lock_is_held(sid.lock_path(store.root))
    if holder is not None:
        since = time.strftime("%H:%M:%S", time.localtime(holder.get("started_unix", 0)))
        return StageState(
            **base,
            state="running",
            reasons=[f"host {holder.get('host')}, pid {holder.get('pid')}, since {since}"],
        )
    record = read_record(sid.record_path(store.root))
    if record is None:
        return StageState(**base, state="missing")
    outside = _outside_the_plan(store, sid, memo)
    if outside is not None:
        return StageState(**base, state="unused", reasons=[outside], key=record.key)
    problems = store.problems(record, memo)
    finished = time.strftime(
        "%Y-%m-%d %H:%M", time.localtime(record.started_unix + record.seconds)
    )
    return StageState(
        **base,
        state="stale" if problems else "done",
        reasons=problems,
        key=record.key,
        finished=finished,
        seconds=record.seconds,
    )


def _outside_the_plan(store: Derivatives, sid: StageId, memo: dict) -> str | None:
    """Why an LSM interval's model is not in its run's current plan (``lsm-plan`` record current,
    its ``chain.json`` without the interval); None for every other stage and for a model in it."""
    if sid.stage != "lsm-train" or len(sid.scope) != 3 or sid.brain is None:
        return None
    import json
    import re

    run, area, interval = sid.scope
    pair = re.fullmatch(r"s(\d+)-s(\d+)", interval)  # an interval's scope: sSSSS-sTTTT
    if pair is None:
        return None
    plan_record = store.record(StageId("lsm-plan", sid.brain, (run, area)))
    if plan_record is None or store.problems(plan_record, memo):
        return None  # no current plan to compare with: the record's own state stands
    for name in plan_record.outputs:
        path = store.namer.path(name)
        if path.name == "chain.json":
            try:
                intervals = json.loads(path.read_text(encoding="utf-8"))["intervals"]
                planned = sorted((int(s), int(t)) for s, t in intervals)
            except (OSError, ValueError, KeyError, TypeError):
                return None
            if (int(pair.group(1)), int(pair.group(2))) in planned:
                return None
            names = ", ".join(f"s{s:04d}-s{t:04d}" for s, t in planned)
            return (
                f"not in the current plan of {run} for {area} ({names}): "
                "its model is not used, and is kept for a plan that returns to this interval"
            )
    return None


def _recorded(store: Derivatives, brain: str | None) -> list[StageId]:
    folder = (store.root / brain if brain else store.root) / "records"
    out = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                sid = StageId.from_label(f"{brain}/{path.stem}" if brain else path.stem)
            except (KeyError, ValueError, CortexgraphError):  # a foreign file in the folder
                continue
            out.append(sid)
    return out


def brain_status(
    store: Derivatives, brain: str, runs: list[str], encoder_names: list[str], memo: dict
) -> list[StageState]:
    """Every expected and every recorded stage execution of one brain."""
    expected = [
        StageId("build-graph", brain),
        StageId("node-priors", brain),
        StageId("node-labels", brain),
        *(StageId("features", brain, (e,)) for e in encoder_names),
        *(StageId("predict", brain, (r,)) for r in runs),
        *(StageId("project", brain, (f"gnn-{r}",)) for r in runs),
    ]
    seen = set(expected)
    ids = expected + [sid for sid in _recorded(store, brain) if sid not in seen]
    order = list(STAGES)
    ids.sort(key=lambda sid: (order.index(sid.stage), sid.scope))
    return [_state(store, sid, memo) for sid in ids]


def cohort_status(cohort, brains: list[str] | None = None) -> dict:
    """The state of every stage of the cohort (``brains``: restrict the per-brain part).

    Returns
    -------
    ``{"cohort": [StageState...], "brains": {brain: [StageState...]}, "runs": [...],
    "encoders": [...]}``.
    """
    store = Derivatives.of(cohort)
    brain_ids = list(brains or cohort.brain_ids)
    runs = model_runs(store)
    encoder_names = encoders(store, list(cohort.brain_ids))
    memo: dict = {}
    cohort_ids = [
        *(StageId("train-gnn", None, (r,)) for r in runs),
        *(StageId("evaluate", None, (r,)) for r in runs),
    ]
    seen = set(cohort_ids)
    cohort_ids += [sid for sid in _recorded(store, None) if sid not in seen]
    result = {
        "cohort": [_state(store, sid, memo) for sid in cohort_ids],
        "brains": {b: brain_status(store, b, runs, encoder_names, memo) for b in brain_ids},
        "runs": runs,
        "encoders": encoder_names,
    }
    store.cache.save()
    return result
