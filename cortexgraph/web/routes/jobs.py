"""Local-model jobs of a brain: start, progress, predictions so far, cancel, the next interval.

Endpoints (jobs are those of ``cortexgraph lsm jobs``; :mod:`cortexgraph.web.lsm_adapter`)::

    GET  /api/brains/{brain}/jobs                      every job (browser and shell), oldest first
    POST /api/brains/{brain}/jobs                      {"area", "sections": [s, t], "arch"?,
                                                        "preset"?, "iterations"?} -> 202 {job}
    GET  /api/brains/{brain}/jobs/{id}                 state, progress, predicted sections, log tail
    POST /api/brains/{brain}/jobs/{id}/cancel          stop it cleanly
    GET  /api/brains/{brain}/intervals?area=A&after=T  the next interval of the area's chain
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from cortexgraph.lsm.config import PRESETS
from cortexgraph.lsm.networks import ARCHITECTURES
from cortexgraph.lsm.schedule import MAX_INTERVAL_MM
from cortexgraph.web import lsm_adapter
from cortexgraph.web.routes import state_of
from cortexgraph.web.security import InvalidError

router = APIRouter()

ARCHS = ARCHITECTURES
MAX_ITERATIONS = 100_000


def _summary(brain, job: dict) -> dict:
    keep = (
        "id",
        "name",
        "state",
        "progress",
        "message",
        "created_unix",
        "started_unix",
        "finished_unix",
        "argv",
    )
    out = {k: job.get(k) for k in keep}
    out["target"] = lsm_adapter.job_target(brain, job)
    return out


@router.get("/brains/{brain_id}/jobs")
def list_jobs(request: Request, brain_id: str) -> dict:
    brain = state_of(request).brain(brain_id)
    return {"jobs": [_summary(brain, j) for j in lsm_adapter.list_jobs(brain)]}


def _annotated_with(brain, area, section: int) -> bool:
    from cortexgraph.data.stack import SectionStack

    with SectionStack(brain) as stack:
        if section not in stack.sections:
            return False
        record = brain.section(section)
        if not (record.annotation or record.contours):
            return False
        return bool((stack.annotation(section) == area.id).any())


@router.post("/brains/{brain_id}/jobs", status_code=202)
async def start(request: Request, brain_id: str) -> dict:
    from starlette.concurrency import run_in_threadpool

    state = state_of(request)
    try:
        payload = await request.json()
    except Exception:  # noqa: BLE001 - any unreadable body
        raise InvalidError("the body must be JSON: {area, sections: [s, t]}") from None
    if not isinstance(payload, dict):
        raise InvalidError("the body must be a JSON object")
    brain = state.brain(brain_id)
    area = state.cohort().areas.resolve(payload.get("area"))
    sections = payload.get("sections")
    if (
        not isinstance(sections, list)
        or len(sections) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in sections)
        or sections[0] == sections[1]
    ):
        raise InvalidError("sections must be two different section numbers [s, t]")
    defaults = state.settings.job_defaults
    arch = payload.get("arch") or defaults.get("arch", "ms")
    preset = payload.get("preset") or defaults.get("preset", "auto")
    iterations = payload.get("iterations", defaults.get("iterations"))
    if arch not in ARCHS:
        raise InvalidError(f"arch must be one of {', '.join(ARCHS)}")
    if preset not in PRESETS:
        raise InvalidError(f"preset must be one of {', '.join(PRESETS)}")
    if iterations is not None and (
        not isinstance(iterations, int) or not 1 <= iterations <= MAX_ITERATIONS
    ):
        raise InvalidError(f"iterations must be an integer in 1..{MAX_ITERATIONS}")
    s, t = sorted(sections)
    max_interval_mm = float(defaults.get("max_interval_mm") or MAX_INTERVAL_MM)
    interval_mm = (t - s) * brain.thickness_um / 1000.0
    if interval_mm > max_interval_mm + 1e-9:
        raise InvalidError(
            f"sections {s} and {t} are {interval_mm:.2f} mm apart: local models are trained on "
            f"intervals of at most {max_interval_mm:g} mm (the published protocol); annotate "
            f"{area.name} on a section in between (about {(s + t) // 2}) and train on the shorter "
            "intervals, or start the app with `cortexgraph serve --max-interval-mm` larger",
            section=s,
        )
    for section in (s, t):
        state.section(brain, section)
        if not await run_in_threadpool(_annotated_with, brain, area, section):
            raise InvalidError(
                f"section {section} has no annotation of {area.name}: a local model learns from "
                "two sections where the area is drawn",
                section=section,
            )
    training = lsm_adapter.IntervalTraining(
        arch=arch,
        preset=preset,
        iterations=iterations,
        seed=int(defaults.get("seed", 0)),
        max_interval_mm=max_interval_mm,
    )
    job_id = lsm_adapter.start_interval_job(
        brain, area, (s, t), training, threads=state.settings.job_threads
    )
    return _summary(brain, lsm_adapter.job_status(brain, job_id))


@router.get("/brains/{brain_id}/jobs/{job_id}")
def job(request: Request, brain_id: str, job_id: str, response: Response) -> dict:
    """A job, with the sections whose prediction it has written so far."""
    state = state_of(request)
    brain = state.brain(brain_id)
    status = lsm_adapter.job_status(brain, job_id)
    out = _summary(brain, status)
    out["log_tail"] = lsm_adapter.job_log_tail(brain, job_id)
    out["predicted_sections"] = lsm_adapter.job_predictions(brain, status, out["target"])
    response.headers["Cache-Control"] = "no-store"
    return out


@router.post("/brains/{brain_id}/jobs/{job_id}/cancel")
def cancel(request: Request, brain_id: str, job_id: str) -> dict:
    brain = state_of(request).brain(brain_id)
    return _summary(brain, lsm_adapter.cancel_job(brain, job_id))


@router.get("/brains/{brain_id}/intervals")
def next_interval(
    request: Request, brain_id: str, area: str = Query(...), after: int | None = Query(None)
) -> dict:
    """The annotated sections that show the area, and the interval after section ``after``
    (the next pair of consecutive annotated sections of the area; the first pair without ``after``)."""
    from cortexgraph.data.stack import SectionStack

    state = state_of(request)
    brain = state.brain(brain_id)
    resolved = state.cohort().areas.resolve(area)
    with SectionStack(brain) as stack:
        shown = [
            s
            for s in brain.annotated_sections
            if s in stack.sections and (stack.annotation(s) == resolved.id).any()
        ]
    if after is None:
        start = 0
    else:
        before = [i for i, s in enumerate(shown) if s <= after]
        start = before[-1] if before else 0
    interval = shown[start : start + 2] if len(shown[start : start + 2]) == 2 else None
    return {"area_id": resolved.id, "annotated": shown, "interval": interval}
