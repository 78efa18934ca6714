"""The ASGI app of ``cortexgraph serve``: :func:`create_app` over a cohort folder.

Routers, one per concern (all under ``/api``; docs/web-app.md lists every endpoint):

* :mod:`cortexgraph.web.routes.cohort`: the cohort, its brains and sections (flags, roles), section
  image tiles, the state of every stage;
* :mod:`cortexgraph.web.routes.overlays`: tissue mask, annotation label image, phantom truth, label
  images of model runs and per-area LSM predictions as coloured tiles, with their legends; review
  (accept / reject) of predictions;
* :mod:`cortexgraph.web.routes.annotate`: read, save (version check), history and restore;
* :mod:`cortexgraph.web.routes.jobs`: local-model jobs (start, progress, predictions so far, cancel);
* :mod:`cortexgraph.web.routes.inspect3d`: midsurfaces with per-vertex colours, 3D area maps and
  their statistics.

The page itself (``/``) and its scripts are static files from ``cortexgraph/web/static`` (the
JavaScript libraries under ``static/vendor`` are installed by ``make web`` from the pinned npm
packages of ``web/frontend``; nothing is loaded from the network). Errors are JSON
``{"error", "file", "section", "fix"}`` with the status of their class (400 bad input, 404 unknown
name, 409 conflict / busy / stale upstream, 413 too large, 422 invalid payload); paths in messages are
relative to the cohort folder.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from cortexgraph.errors import CortexgraphError, StageBusyError, UpstreamError
from cortexgraph.web.security import (
    ConflictError,
    InvalidError,
    NotFoundError,
    SecurityMiddleware,
    TooLargeError,
)
from cortexgraph.web.state import WebSettings, WebState

__all__ = ["create_app", "STATIC_DIR", "VENDOR_FILES", "missing_vendor_files"]

STATIC_DIR = Path(__file__).parent / "static"
#: the files the page loads from static/vendor (copied there by `make web`)
VENDOR_FILES = (
    "openseadragon/openseadragon.min.js",
    "openseadragon/images/home_rest.png",
    "annotorious/annotorious-openseadragon.js",
    "annotorious/annotorious-openseadragon.css",
    "niivue/niivue.umd.js",
)


def missing_vendor_files(static_dir: Path = STATIC_DIR) -> list[str]:
    """The vendor files the page needs that are not installed (``make web`` installs them)."""
    return [name for name in VENDOR_FILES if not (static_dir / "vendor" / name).is_file()]


def _status_of(error: CortexgraphError) -> int:
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ConflictError | StageBusyError | UpstreamError):
        return 409
    if isinstance(error, TooLargeError):
        return 413
    if isinstance(error, InvalidError):
        return 422
    return 400


def create_app(
    root: str | Path,
    *,
    token: str | None = None,
    settings: WebSettings | None = None,
):
    """The FastAPI app serving the cohort at ``root``.

    Parameters
    ----------
    root : the cohort folder (with cohort.toml).
    token : access token every request must carry (None: no token; then bind to loopback only).
    settings : further settings (:class:`~cortexgraph.web.state.WebSettings`); ``root`` and
        ``token`` override theirs.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    from cortexgraph import __version__
    from cortexgraph.web.routes import annotate, cohort, inspect3d, jobs, overlays

    settings = settings or WebSettings(root=Path(root))
    settings.root = Path(root).resolve()
    settings.token = token if token is not None else settings.token
    state = WebState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        state.close()
        from cortexgraph.web.lsm_adapter import close_engines

        close_engines()  # the engine this server started, and its jobs, end with it

    app = FastAPI(
        lifespan=lifespan,
        title="cortexgraph",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.web = state

    @app.exception_handler(CortexgraphError)
    async def cortexgraph_error(request: Request, error: CortexgraphError):
        body: dict[str, Any] = {
            "error": error.message,
            "file": state.relative(error.file) if error.file else None,
            "section": error.section,
            "fix": error.fix,
        }
        if isinstance(error, ConflictError):
            body["current_version"] = error.current
        if isinstance(error, InvalidError):
            body["problems"] = error.problems
        return JSONResponse(body, status_code=_status_of(error))

    for module in (cohort, overlays, annotate, jobs, inspect3d):
        app.include_router(module.router, prefix="/api")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(
        SecurityMiddleware, token=settings.token, max_body_bytes=settings.max_body_bytes
    )

    return app
