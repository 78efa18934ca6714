"""Overlays of a section as coloured tiles, with legends; review of predictions.

Endpoints::

    GET  /api/brains/{brain}/sections/{s}/overlays                     keys, titles, legends, grids
    GET  /api/brains/{brain}/sections/{s}/overlays/{key}/{z}/{x}_{y}.png[?v=TAG]
    GET  /api/brains/{brain}/predictions                               (source, area) sets + review
    POST /api/brains/{brain}/sections/{s}/predictions/{source}/{area}/accept   (If-Match: version)
    POST /api/brains/{brain}/sections/{s}/predictions/{source}/{area}/reject
"""

from __future__ import annotations

from fastapi import APIRouter, Header, Request

from cortexgraph.web import lsm_adapter
from cortexgraph.web.annotations import accept_prediction
from cortexgraph.web.overlays import find_overlay, read_review, section_overlays, set_review
from cortexgraph.web.routes import identity_tag, parse_tile, state_of, tile_response
from cortexgraph.web.security import NotFoundError
from cortexgraph.web.tiles import encode_png_rgba, read_tile

router = APIRouter()


@router.get("/brains/{brain_id}/sections/{section}/overlays")
def overlays(request: Request, brain_id: str, section: int) -> dict:
    state = state_of(request)
    brain = state.brain(brain_id)
    state.section(brain, section)
    out = []
    for overlay in section_overlays(brain, section):
        _, grid, identity = state.pool.get(overlay.path)
        out.append(dict(overlay.as_dict(), grid=grid.as_dict(), version=identity_tag(identity)))
    return {"section": section, "overlays": out}


@router.get("/brains/{brain_id}/sections/{section}/overlays/{key}/{level}/{tile}.png")
def overlay_tile(
    request: Request,
    brain_id: str,
    section: int,
    key: str,
    level: int,
    tile: str,
    v: str | None = None,
):
    state = state_of(request)
    brain = state.brain(brain_id)
    x, y = parse_tile(tile)
    overlay = find_overlay(brain, section, key)
    raster, grid, identity = state.pool.get(overlay.path)
    data = state.tiles.get_or_make(
        (identity, key, "png", level, x, y),
        lambda: encode_png_rgba(read_tile(raster, grid, level, x, y), overlay.table),
    )
    return tile_response(data, "image/png", v, identity)


@router.get("/brains/{brain_id}/predictions")
def predictions(request: Request, brain_id: str) -> dict:
    """Every (source, area) with predictions: their sections and the review of each."""
    state = state_of(request)
    brain = state.brain(brain_id)
    out = []
    for found in lsm_adapter.prediction_sets(brain):
        files = lsm_adapter.prediction_files(brain, found.source, found.area)
        review = read_review(brain, found.source, found.area.id)
        out.append(
            {
                "source": found.source,
                "area_id": found.area.id,
                "area": found.area.name,
                "sections": list(files),
                "review": {str(k): v["state"] for k, v in review.items()},
            }
        )
    return {"brain": brain.id, "predictions": out}


def _prediction(state, brain, section: int, source: str, area_id: int):
    area = state.cohort().areas.resolve(area_id)
    files = lsm_adapter.prediction_files(brain, source, area)
    if section not in files:
        raise NotFoundError(
            f"{source} has no prediction of {area.name} on section {section}", section=section
        )
    return area, files[section]


@router.post("/brains/{brain_id}/sections/{section}/predictions/{source}/{area_id}/accept")
def accept(
    request: Request,
    brain_id: str,
    section: int,
    source: str,
    area_id: int,
    if_match: str = Header(..., alias="If-Match"),
) -> dict:
    """The prediction becomes the section's annotation of the area (a new, undoable version)."""
    state = state_of(request)
    brain = state.brain(brain_id)
    area, path = _prediction(state, brain, section, source, area_id)
    result = accept_prediction(brain, section, area.id, path, if_match.strip('"'), source)
    state.forget(brain.id)
    set_review(brain, source, area.id, section, "accepted")
    return result


@router.post("/brains/{brain_id}/sections/{section}/predictions/{source}/{area_id}/reject")
def reject(request: Request, brain_id: str, section: int, source: str, area_id: int) -> dict:
    state = state_of(request)
    brain = state.brain(brain_id)
    area, _ = _prediction(state, brain, section, source, area_id)
    review = set_review(brain, source, area.id, section, "rejected")
    return {"review": {str(k): v["state"] for k, v in review.items()}}
