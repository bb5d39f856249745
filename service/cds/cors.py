"""CORS for browser-based EHRs on the CDS routes only, from the registered clients' origins.

An allowed origin gets its own origin echoed (never ``*``), ``Vary: Origin``, and on preflight
``GET, POST, OPTIONS`` with ``Authorization, Content-Type``. No credentials are allowed (the JWT
travels in a header, not a cookie). Other origins get no CORS headers at all.
"""

from __future__ import annotations

from typing import Any, Final

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_PREFIX: Final = "/cds-services"
_PREFLIGHT_HEADERS: Final = [
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"Authorization, Content-Type"),
    (b"access-control-max-age", b"600"),
]


def cds_cors_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not _on_cds_path(scope["path"]):
            await app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin_raw = headers.get(b"origin")
        if origin_raw is None:
            await app(scope, receive, send)
            return
        origin = origin_raw.decode("latin-1")
        allowed = await _allowed(scope, origin)
        preflight = scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers
        if preflight:
            response_headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
            if allowed:
                response_headers += [(b"access-control-allow-origin", origin_raw)]
                response_headers += _PREFLIGHT_HEADERS
            start: Any = {"type": "http.response.start", "status": 204, "headers": response_headers}
            await send(start)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"vary", b"Origin")]
                if allowed:
                    extra.append((b"access-control-allow-origin", origin_raw))
                    extra.append((b"access-control-expose-headers", b"X-Request-Id"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await app(scope, receive, send_with_cors)

    return middleware


def _on_cds_path(path: str) -> bool:
    return path == _PREFIX or path.startswith(_PREFIX + "/")


async def _allowed(scope: Scope, origin: str) -> bool:
    if len(origin) > 200:
        return False
    app: Any = scope.get("app")
    runtime = getattr(getattr(app, "state", None), "cds", None)
    if runtime is None:
        return False
    allowed: bool = await runtime.registry.origin_allowed(origin)
    return allowed
