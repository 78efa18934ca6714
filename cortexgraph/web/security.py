"""Safety of the web app: who may talk to it, how much they may send, and what they may name.

Rules (docs/web-app.md, "Safety"):

* **Bind address.** The app binds to ``127.0.0.1`` by default. Binding to any other address needs an
  access token (``cortexgraph serve`` makes one and prints it). With a token, every request must
  carry it: header ``X-Cortexgraph-Token: <token>`` or ``Authorization: Bearer <token>``, or the
  cookie that the page sets after it was opened once with ``?token=<token>``. Wrong or missing:
  HTTP 401.
* **Host header.** Without a token only loopback host names are accepted (``127.0.0.1``,
  ``localhost``, ``[::1]``), which stops DNS-rebinding pages from reaching the app through a name of
  their own (HTTP 421).
* **Cross-site writes.** Requests that change something (POST, PUT, PATCH, DELETE) must carry the
  header ``X-Requested-With: cortexgraph``, which a foreign web page cannot add without a CORS
  pre-flight that the app never grants, and an ``Origin``, when present, must be the app's own
  (HTTP 403).
* **Sizes.** A request body larger than ``max_body_bytes`` is refused (HTTP 413) before it is read
  in full.
* **Names.** Brain ids, run names, area names and job ids are checked against
  :func:`cortexgraph.data.names.check_name` and against what exists (a brain listed in the cohort, a
  job folder inside the brain's jobs folder); file paths from manifests go through
  :func:`cortexgraph.data.names.inside` (no ``..``, no absolute paths, no symbolic links out of the
  brain folder), so no request reads or writes outside the cohort.
"""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from cortexgraph.errors import CortexgraphError

__all__ = [
    "TOKEN_HEADER",
    "TOKEN_COOKIE",
    "WRITE_HEADER",
    "LOOPBACK_HOSTS",
    "NotFoundError",
    "ConflictError",
    "InvalidError",
    "TooLargeError",
    "new_token",
    "is_loopback",
    "SecurityMiddleware",
]

TOKEN_HEADER = "x-cortexgraph-token"
TOKEN_COOKIE = "cortexgraph_token"
WRITE_HEADER = ("x-requested-with", "cortexgraph")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class NotFoundError(CortexgraphError):
    """The brain, section, file, run or job named in a request does not exist (HTTP 404)."""


class ConflictError(CortexgraphError):
    """The resource changed since the client read it (HTTP 409); ``current`` is its new version."""

    def __init__(self, message: str, *, current: str | None = None, **kw) -> None:
        self.current = current
        super().__init__(message, **kw)


class InvalidError(CortexgraphError):
    """A payload that is well-formed JSON but not valid (HTTP 422); ``problems`` lists why."""

    def __init__(self, message: str, *, problems: list[str] | None = None, **kw) -> None:
        self.problems = list(problems or [])
        super().__init__(message, **kw)


class TooLargeError(CortexgraphError):
    """A payload over the size limits (HTTP 413)."""


def new_token() -> str:
    """A random access token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def _host_name(value: str) -> str:
    """``localhost:8000`` -> ``localhost``; ``[::1]:8000`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


async def _send_json(send, status: int, message: str, extra_headers=()) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + list(extra_headers)}
    )
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    """ASGI middleware enforcing the module's rules on every HTTP request.

    Parameters
    ----------
    app : the wrapped ASGI app.
    token : the access token, or None (loopback only, no token).
    max_body_bytes : the largest request body accepted.
    """

    def __init__(self, app, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = int(max_body_bytes)

    def _token_ok(self, headers: dict[str, str], query: dict) -> tuple[bool, bool]:
        """(authorised, came from the query string)."""
        if self.token is None:
            return True, False
        offered = headers.get(TOKEN_HEADER, "")
        auth = headers.get("authorization", "")
        if not offered and auth.lower().startswith("bearer "):
            offered = auth[7:].strip()
        if not offered and "cookie" in headers:
            cookie = SimpleCookie()
            try:
                cookie.load(headers["cookie"])
            except Exception:  # noqa: BLE001 - a malformed cookie header is just no token
                cookie = SimpleCookie()
            if TOKEN_COOKIE in cookie:
                offered = cookie[TOKEN_COOKIE].value
        if offered:
            return secrets.compare_digest(offered.encode(), self.token.encode()), False
        from_query = (query.get("token") or [""])[0]
        if from_query:
            return secrets.compare_digest(from_query.encode(), self.token.encode()), True
        return False, False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        method = scope["method"].upper()
        host = _host_name(headers.get("host", ""))
        if self.token is None and not is_loopback(host):
            await _send_json(send, 421, f"host {host!r} is not this app (loopback names only)")
            return
        authorised, via_query = self._token_ok(headers, query)
        if not authorised:
            await _send_json(
                send,
                401,
                "access token missing or wrong: open the address that `cortexgraph serve` printed "
                "(it ends in ?token=...)",
            )
            return
        if method in WRITE_METHODS:
            if headers.get(WRITE_HEADER[0], "").lower() != WRITE_HEADER[1]:
                await _send_json(
                    send, 403, f"writes need the header {WRITE_HEADER[0]}: cortexgraph"
                )
                return
            origin = headers.get("origin")
            if origin and origin != "null":
                origin_host = urlsplit(origin).netloc.lower()
                if origin_host != headers.get("host", "").lower():
                    await _send_json(send, 403, f"cross-site write from {origin} refused")
                    return
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body_bytes
            except ValueError:
                too_big = True
            if too_big:
                await _send_json(send, 413, f"request body over {self.max_body_bytes} bytes")
                return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise TooLargeError(f"request body over {self.max_body_bytes} bytes")
            return message

        if via_query and method == "GET":
            # remember the token in a cookie the browser sends back to this host only
            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    cookie = (
                        f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                    ).encode()
                    message = dict(
                        message, headers=list(message["headers"]) + [(b"set-cookie", cookie)]
                    )
                await send(message)

            await self.app(scope, limited_receive, send_with_cookie)
            return
        await self.app(scope, limited_receive, send)
