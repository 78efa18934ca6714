"""``cortexgraph serve``: the interactive mapping web app (docs/web-app.md).

Browse a cohort's sections as deep-zoom tiles with overlays (tissue mask, annotations, labels of model
runs, local-model predictions), draw and correct area polygons (saved as GeoJSON contours and label
images, with versions and history), train local models between two annotated sections and watch their
predictions appear, accept or reject them, and inspect midsurfaces and 3D area maps.

Modules: :mod:`~cortexgraph.web.app` (the ASGI app), :mod:`~cortexgraph.web.state` (cohort and
caches), :mod:`~cortexgraph.web.tiles` (deep-zoom tiles from the raster pyramids),
:mod:`~cortexgraph.web.overlays`, :mod:`~cortexgraph.web.annotations`,
:mod:`~cortexgraph.web.lsm_adapter` (the only contact with the LSM workflow and its jobs),
:mod:`~cortexgraph.web.security`, and the HTTP routers in :mod:`cortexgraph.web.routes`.
Needs the ``web`` extra (FastAPI, uvicorn).
"""
