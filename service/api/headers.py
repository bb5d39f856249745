"""Response headers set once for every response, whatever produced it (handler, guard, error).

A Litestar ``before_send`` hook sees every ``http.response.start`` the app sends, including 401s
from guards, problem+json errors and 404s for unknown paths, so no route can forget them:

- ``Cache-Control: no-store`` on ``/v1`` and ``/cds-services``: their answers carry orders,
  patient references, recommendations for a patient context and the audit trail; no browser,
  proxy or CDN may keep a copy.
- ``Server: labrec`` replaces Granian's ``server: granian`` banner (Granian adds its own only when
  the application sent none, and has no option to drop it).
- ``X-Request-Id`` when the response lacks it: an error raised by a middleware (control
  characters in the address) is rendered outside the access-log middleware that adds it.
"""

from __future__ import annotations

from typing import Final

from litestar.types import Message, Scope

NO_STORE_PREFIXES: Final = ("/v1/", "/cds-services")
SERVER: Final = (b"server", b"labrec")


async def response_headers(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start":
        return
    path = scope.get("path", "")
    no_store = path.startswith(NO_STORE_PREFIXES) or path == "/v1"
    headers = [
        (name, value)
        for name, value in message.get("headers", ())
        if name.lower() != b"server" and not (no_store and name.lower() == b"cache-control")
    ]
    headers.append(SERVER)
    request_id = scope.get("state", {}).get("request_id")
    if request_id and not any(name.lower() == b"x-request-id" for name, _ in headers):
        # Responses rendered outside the access-log middleware (an error raised by a middleware
        # inside it) carry the id too, so the client can match the log line.
        headers.append((b"x-request-id", request_id.encode()))
    if no_store:
        headers.append((b"cache-control", b"no-store"))
    message["headers"] = headers
