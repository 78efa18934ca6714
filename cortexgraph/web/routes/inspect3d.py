"""3D inspection: a brain's midsurface coloured by annotation, by a run's prediction or by its errors;
an area's 3D map with its volume and surface statistics.

Endpoints::

    GET /api/brains/{brain}/surfaces                       hemispheres and colourings that exist
    GET /api/brains/{brain}/surfaces/{hemi}?colour=y|pred|errors|none[&run=R]
                                                           mesh + per-vertex colours + legend
    GET /api/brains/{brain}/maps3d                         the 3D area maps (source, area, files)
    GET /api/brains/{brain}/maps3d/{source}/{area}         the map's surface mesh (preview) + stats

Meshes are JSON with base64 arrays (little-endian): ``positions`` float32 (N*3, world mm),
``faces`` uint32 (M*3), ``colours`` uint8 (N*4, RGBA). The midsurface is the graph of
``build-graph`` (its vertices are the graph's nodes), its colours come from the node arrays of
``node-labels`` (annotation, ``y``) and ``predict@<run>`` (``pred``), read through
:func:`cortexgraph.derivatives.graphs.load_brain_graph` (which refuses stale or foreign node
arrays) and coloured by :func:`cortexgraph.render.brain.node_colouring`.
"""

from __future__ import annotations

import base64
import csv

import numpy as np
from fastapi import APIRouter, Query, Request

from cortexgraph.data.names import check_name
from cortexgraph.derivatives import Derivatives, StageId
from cortexgraph.errors import CortexgraphError, UpstreamError
from cortexgraph.web.routes import state_of
from cortexgraph.web.security import NotFoundError

router = APIRouter()

COLOURINGS = ("none", "y", "pred", "errors")
PLAIN_RGB = (200, 200, 200)


def _b64(array: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def mesh_payload(vertices, faces, rgb, legend=None, title: str = "") -> dict:
    """The JSON mesh of the module docstring from (N, 3) vertices, (M, 3) faces, (N, 3) colours."""
    vertices = np.asarray(vertices, np.float32).reshape(-1, 3)
    rgba = np.concatenate(
        [np.asarray(rgb, np.uint8).reshape(-1, 3), np.full((len(vertices), 1), 255, np.uint8)], 1
    )
    return {
        "num_vertices": int(len(vertices)),
        "num_faces": int(np.asarray(faces).reshape(-1, 3).shape[0]),
        "positions": _b64(vertices, "<f4"),
        "faces": _b64(np.asarray(faces).reshape(-1, 3), "<u4"),
        "colours": _b64(rgba, np.uint8),
        "bounds_mm": [vertices.min(0).tolist(), vertices.max(0).tolist()] if len(vertices) else [],
        "legend": legend or [],
        "title": title,
    }


def _runs_of(store: Derivatives, brain_id: str) -> list[str]:
    from cortexgraph.derivatives.status import model_runs

    return [r for r in model_runs(store) if store.record(StageId("predict", brain_id, (r,)))]


@router.get("/brains/{brain_id}/surfaces")
def surfaces(request: Request, brain_id: str) -> dict:
    from cortexgraph.derivatives.graphs import graph_hemispheres

    state = state_of(request)
    brain = state.brain(brain_id)
    store = Derivatives.of(brain)
    try:
        hemis = graph_hemispheres(store, brain.id)
    except UpstreamError as error:
        return {
            "hemispheres": [],
            "colourings": [],
            "runs": [],
            "message": str(error.message),
            "fix": error.fix,
        }
    labels = store.record(StageId("node-labels", brain.id)) is not None
    runs = _runs_of(store, brain.id)
    colourings = ["none"] + (["y"] if labels else []) + (["pred"] if runs else [])
    if labels and runs:
        colourings.append("errors")
    return {"hemispheres": hemis, "colourings": colourings, "runs": runs}


@router.get("/brains/{brain_id}/surfaces/{hemi}")
def surface(
    request: Request,
    brain_id: str,
    hemi: str,
    colour: str = Query("none"),
    run: str | None = Query(None),
) -> dict:
    from cortexgraph.derivatives.graphs import load_brain_graph
    from cortexgraph.render.brain import node_colouring

    state = state_of(request)
    brain = state.brain(brain_id)
    if hemi not in ("lh", "rh"):
        raise NotFoundError(f"no hemisphere {hemi!r}", fix="use lh or rh")
    if colour not in COLOURINGS:
        raise CortexgraphError(f"unknown colouring {colour!r}", fix=f"use {', '.join(COLOURINGS)}")
    if colour in ("pred", "errors"):
        if not run:
            raise CortexgraphError(f"colouring {colour} needs a model run", fix="pass run=<name>")
        check_name(run, "run name")
    store = Derivatives.of(brain)
    data = load_brain_graph(
        store,
        brain.id,
        hemi,
        labels=colour in ("y", "errors"),
        run=run if colour in ("pred", "errors") else None,
    )
    vertices = data.pos.numpy()
    faces = data.face.numpy().T
    if colour == "none":
        return mesh_payload(
            vertices,
            faces,
            np.tile(PLAIN_RGB, (len(vertices), 1)),
            title=f"{brain.id} {hemi} midsurface",
        )
    arrays = {
        k: getattr(data, k).numpy()
        for k in ("y", "pred", "proba")
        if getattr(data, k, None) is not None
    }
    colouring = node_colouring(colour, arrays, state.cohort().areas)
    legend = [
        {
            "name": name,
            "color": "#{:02x}{:02x}{:02x}".format(*tuple(int(round(c * 255)) for c in rgb)),
        }
        for name, rgb in (colouring.legend or [])
    ]
    title = f"{brain.id} {hemi}: {colouring.title}" + (f" ({run})" if run and colour != "y" else "")
    payload = mesh_payload(vertices, faces, colouring.rgb, legend, title)
    payload["summary"] = colouring.summary
    return payload


def _maps(store: Derivatives, brain) -> list[dict]:
    folder = store.root / brain.id / "records"
    out: list[dict] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("map3d@*.json")):
        try:
            sid = StageId.from_label(f"{brain.id}/{path.stem}")
        except (KeyError, ValueError, CortexgraphError):
            continue
        if len(sid.scope) != 2:
            continue
        source, stem = sid.scope
        stats = store.record(StageId("stats", brain.id, (source, stem)))
        out.append({"source": source, "area": stem, "has_stats": stats is not None})
    return out


@router.get("/brains/{brain_id}/maps3d")
def maps3d(request: Request, brain_id: str) -> dict:
    state = state_of(request)
    brain = state.brain(brain_id)
    return {"maps": _maps(Derivatives.of(brain), brain)}


@router.get("/brains/{brain_id}/maps3d/{source}/{area}")
def map3d(request: Request, brain_id: str, source: str, area: str) -> dict:
    """The map's surface (its preview surface when there is one) and its statistics table."""
    from cortexgraph.derivatives.layout import maps3d_dir
    from cortexgraph.meshes.io import read_gifti_surface

    state = state_of(request)
    brain = state.brain(brain_id)
    check_name(source, "label source")
    check_name(area, "area file name")
    store = Derivatives.of(brain)
    sid = StageId("map3d", brain.id, (source, area))
    record = store.record(sid)
    if record is None:
        raise NotFoundError(
            f"brain {brain.id} has no 3D map {source}/{area}", fix=f"run `{sid.command()}`"
        )
    folder = maps3d_dir(store.root, brain.id, source)
    names = set(record.outputs)
    chosen = None
    for candidate in (f"{area}_preview.gii", f"{area}.gii"):
        path = folder / candidate
        if store.namer.name(path) in names and path.is_file():
            chosen = path
            break
    if chosen is None:
        raise NotFoundError(f"the 3D map {source}/{area} has no surface file")
    vertices, faces = read_gifti_surface(chosen)
    areas = state.cohort().areas
    colour = next((a.rgb for a in areas.areas if _slug(a.name) == area), (200, 60, 60))
    payload = mesh_payload(
        vertices,
        faces,
        np.tile(colour, (len(vertices), 1)),
        title=f"{brain.id} {area} from {source}",
    )
    rows: list[dict] = []
    stats_record = store.record(StageId("stats", brain.id, (source, area)))
    stats_path = folder / f"{area}_stats.tsv"
    if stats_record is not None and stats_path.is_file():
        with open(stats_path, encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        payload["stats_stale"] = bool(store.problems(stats_record))
    payload["stats"] = rows
    payload["map_stale"] = bool(store.problems(record))
    return payload


def _slug(name: str) -> str:
    from cortexgraph.data.names import slug

    return slug(name)
