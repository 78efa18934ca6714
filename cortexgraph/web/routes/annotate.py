"""Annotations of a section: read, save with a version check, history, restore, export.

Endpoints::

    GET  /api/brains/{brain}/sections/{s}/annotation         {version, geojson, extent_mm, ...}
                                                              (also the ETag header)
    PUT  /api/brains/{brain}/sections/{s}/annotation         body: GeoJSON FeatureCollection (mm);
                                                              If-Match: the version read -> 200
                                                              {version}; 409 when it changed
    GET  /api/brains/{brain}/sections/{s}/annotation/history  kept versions, oldest first
    POST /api/brains/{brain}/sections/{s}/annotation/restore  {"id": "v0003"}, If-Match
    GET  /api/brains/{brain}/annotations/{area}.geojson        the area's polygons on every section
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Header, Request, Response

from cortexgraph.web.annotations import (
    current_annotation,
    history,
    restore_version,
    save_annotation,
)
from cortexgraph.web.routes import state_of
from cortexgraph.web.security import InvalidError

if TYPE_CHECKING:
    from cortexgraph.data.manifest import Brain

router = APIRouter()


@router.get("/brains/{brain_id}/sections/{section}/annotation")
def read(request: Request, brain_id: str, section: int, response: Response) -> dict:
    state = state_of(request)
    brain = state.brain(brain_id)
    record = state.section(brain, section)
    result = current_annotation(brain, record, state.cohort().areas)
    response.headers["ETag"] = f'"{result["version"]}"'
    response.headers["Cache-Control"] = "no-store"
    return result


async def _json_body(request: Request) -> object:
    body = await request.body()
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidError(f"the body is not JSON ({exc})") from None


@dataclass(frozen=True)
class _SectionWrite:
    """A write to one section's annotation: the request, the path's brain id and section, and
    ``version``, the If-Match header (the version the client read) without its quotes."""

    request: Request
    brain_id: str
    section: int
    version: str

    async def apply(self, write: Callable[[Brain, int, Any, str], dict], value: Any) -> dict:
        """``write(brain, section, value, version)`` (:func:`save_annotation` or
        :func:`restore_version`) in a worker thread; afterwards the app forgets its cached copy of
        the brain (the write rewrote the section table). Returns what ``write`` returns."""
        from starlette.concurrency import run_in_threadpool

        state = state_of(self.request)
        brain = state.brain(self.brain_id)
        state.section(brain, self.section)
        result = await run_in_threadpool(write, brain, self.section, value, self.version)
        state.forget(brain.id)
        return result


async def _section_write(
    request: Request,
    brain_id: str,
    section: int,
    if_match: str = Header(..., alias="If-Match"),
) -> _SectionWrite:
    """The parameters of a write endpoint (path and If-Match header) as a :class:`_SectionWrite`."""
    return _SectionWrite(request, brain_id, section, if_match.strip('"'))


@router.put("/brains/{brain_id}/sections/{section}/annotation")
async def save(target: _SectionWrite = Depends(_section_write)) -> dict:
    payload = await _json_body(target.request)
    return await target.apply(save_annotation, payload)


@router.get("/brains/{brain_id}/sections/{section}/annotation/history")
def annotation_history(request: Request, brain_id: str, section: int) -> dict:
    state = state_of(request)
    brain = state.brain(brain_id)
    state.section(brain, section)
    return {"section": section, "versions": history(brain, section)}


@router.post("/brains/{brain_id}/sections/{section}/annotation/restore")
async def restore(target: _SectionWrite = Depends(_section_write)) -> dict:
    payload = await _json_body(target.request)
    entry = payload.get("id") if isinstance(payload, dict) else None
    if not isinstance(entry, str):
        raise InvalidError('restore needs {"id": "<version id from the history>"}')
    return await target.apply(restore_version, entry)


@router.get("/brains/{brain_id}/annotations/{area_key}.geojson")
def export_area(request: Request, brain_id: str, area_key: str) -> Response:
    """One area's annotated polygons on every section of the brain, one GeoJSON file (each feature
    names its ``section``): the area's map as drawn and accepted, for use elsewhere."""
    from cortexgraph.data.annotations import read_contours

    state = state_of(request)
    brain = state.brain(brain_id)
    area = state.cohort().areas.resolve(area_key)
    features = []
    for record in brain.sections:
        if record.missing or not (record.contours or record.annotation):
            continue
        current = (
            current_annotation(brain, record, state.cohort().areas)
            if not record.contours
            else {
                "geojson": {
                    "features": read_contours(state.section_file(brain, record.section, "contours"))
                }
            }
        )
        for feature in current["geojson"]["features"]:
            if int(feature["properties"]["area_id"]) == area.id:
                features.append(
                    dict(feature, properties=dict(feature["properties"], section=record.section))
                )
    body = json.dumps(
        {"type": "FeatureCollection", "brain": brain.id, "area": area.name, "features": features}
    )
    filename = f"{brain.id}_{area.name}.geojson".replace('"', "")
    return Response(
        body,
        media_type="application/geo+json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
