"""Cohort, brains, sections (stack order, flags, roles), section image tiles, stage states.

Endpoints::

    GET /api/cohort                                        name, brains, areas (id, name, colour)
    GET /api/brains/{brain}/sections[?area=ID]             sections in stack order with their flags
    GET /api/brains/{brain}/sections/{s}/image             tile grid of the section image
    GET /api/brains/{brain}/sections/{s}/image/{z}/{x}_{y}.jpg[?v=TAG]   one 256 px tile
    GET /api/brains/{brain}/status                         every stage of the brain (done/stale/...)
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from cortexgraph.web import lsm_adapter
from cortexgraph.web.routes import identity_tag, parse_tile, state_of, tile_response
from cortexgraph.web.tiles import encode_jpeg, read_tile

router = APIRouter()


@router.get("/cohort")
def cohort_info(request: Request) -> dict:
    state = state_of(request)
    cohort = state.cohort()
    from cortexgraph import __version__

    return {
        "name": cohort.name,
        "brains": list(cohort.brain_ids),
        "areas": [{"id": a.id, "name": a.name, "color": a.color} for a in cohort.areas.areas],
        "section_thickness_um": cohort.section_thickness_um,
        "version": __version__,
        "job_defaults": state.settings.job_defaults,
    }


def _gnn_roles(brain) -> dict[int, str]:
    """train / test of the annotated sections under the GNN's split (every fifth annotated section
    is a test section; :func:`cortexgraph.data.roles.split_sections`)."""
    from cortexgraph.data.roles import split_sections

    usable = [
        r.section
        for r in brain.sections
        if not r.missing and not r.excluded and r.image and (r.annotation or r.contours)
    ]
    if not usable:
        return {}
    train, test = split_sections(sorted(usable))
    roles = dict.fromkeys((int(s) for s in train), "train")
    roles.update(dict.fromkeys((int(s) for s in test), "test"))
    return roles


@router.get("/brains/{brain_id}/sections")
def sections(request: Request, brain_id: str, area: int | None = Query(None)) -> dict:
    """Sections in stack order (posterior to anterior) with flags, roles and predictions."""
    state = state_of(request)
    brain = state.brain(brain_id)
    roles = _gnn_roles(brain)
    lsm_roles = {}
    if area is not None:
        lsm_roles = lsm_adapter.chain_roles(brain, state.cohort().areas.resolve(area))
    predicted: dict[int, list[str]] = {}
    for found in lsm_adapter.prediction_sets(brain):
        for s in lsm_adapter.prediction_files(brain, found.source, found.area):
            predicted.setdefault(s, []).append(f"pred~{found.source}~{found.area.id}")
    rows = []
    for index, r in enumerate(brain.sections):
        rows.append(
            {
                "index": index,
                "section": r.section,
                "missing": r.missing,
                "mirrored": r.mirrored,
                "excluded": r.excluded,
                "image": bool(r.image),
                "mask": bool(r.mask),
                "annotated": bool(r.annotation or r.contours) and not r.missing,
                "role": roles.get(r.section),
                "lsm_role": lsm_roles.get(r.section),
                "predictions": predicted.get(r.section, []),
            }
        )
    return {
        "brain": brain.id,
        "spacing_um": {
            "image": brain.image_spacing_um,
            "mask": brain.mask_spacing_um,
            "annotation": brain.annotation_spacing_um,
        },
        "sections": rows,
    }


@router.get("/brains/{brain_id}/sections/{section}/image")
def image_info(request: Request, brain_id: str, section: int) -> dict:
    state = state_of(request)
    brain = state.brain(brain_id)
    path = state.section_file(brain, section, "image")
    _, grid, identity = state.pool.get(path)
    record = state.section(brain, section)
    return dict(
        grid.as_dict(),
        section=section,
        version=identity_tag(identity),
        mirrored=record.mirrored,
        excluded=record.excluded,
    )


@router.get("/brains/{brain_id}/sections/{section}/image/{level}/{tile}.jpg")
def image_tile(
    request: Request, brain_id: str, section: int, level: int, tile: str, v: str | None = None
):
    state = state_of(request)
    brain = state.brain(brain_id)
    x, y = parse_tile(tile)
    path = state.section_file(brain, section, "image")
    raster, grid, identity = state.pool.get(path)
    data = state.tiles.get_or_make(
        (identity, "jpeg", level, x, y),
        lambda: encode_jpeg(read_tile(raster, grid, level, x, y)),
    )
    return tile_response(data, "image/jpeg", v, identity)


@router.get("/brains/{brain_id}/status")
def status(request: Request, brain_id: str) -> dict:
    """The state of the brain's stages (:func:`cortexgraph.derivatives.status.cohort_status`):
    which outputs an annotation edit made stale, and the command that updates each."""
    from cortexgraph.derivatives.status import cohort_status

    state = state_of(request)
    brain = state.brain(brain_id)
    result = cohort_status(state.cohort(), [brain.id])
    stages = [s.as_dict() for s in result["brains"][brain.id]]
    counts: dict[str, int] = {}
    for s in stages:
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    return {"brain": brain.id, "stages": stages, "counts": counts, "runs": result["runs"]}
