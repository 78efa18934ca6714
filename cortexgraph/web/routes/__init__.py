"""HTTP routers of the web app, one module per concern (see :mod:`cortexgraph.web.app`)."""

from __future__ import annotations

import hashlib

from fastapi import Request, Response

from cortexgraph.web.state import WebState

__all__ = ["state_of", "identity_tag", "tile_response", "parse_tile"]


def state_of(request: Request) -> WebState:
    """The app's :class:`~cortexgraph.web.state.WebState`."""
    return request.app.state.web


def identity_tag(identity: tuple) -> str:
    """A short tag of a file identity (path, size, mtime): part of tile URLs, so browsers may keep
    tiles of an unchanged file and never show tiles of an older one."""
    return hashlib.sha1(repr(identity).encode()).hexdigest()[:12]


def parse_tile(tile: str) -> tuple[int, int]:
    """``"3_5"`` -> (3, 5)."""
    from cortexgraph.errors import CortexgraphError

    x, sep, y = tile.partition("_")
    if not sep or not x.isdigit() or not y.isdigit() or len(x) > 7 or len(y) > 7:
        raise CortexgraphError(f"bad tile name {tile!r}", fix="tiles are named <x>_<y>")
    return int(x), int(y)


def tile_response(data: bytes, media_type: str, version: str | None, identity: tuple) -> Response:
    """A tile, cached by the browser for good when the URL names the file's current version."""
    current = identity_tag(identity)
    cache = "private, max-age=31536000, immutable" if version == current else "no-cache"
    return Response(data, media_type=media_type, headers={"Cache-Control": cache, "ETag": current})
