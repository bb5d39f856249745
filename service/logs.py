"""Structured JSON logs and the access log.

The access log records request id, method, route template (never the raw path, which may carry
ids), status, latency and organisation; never bodies, query strings or headers.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from typing import Any, Final

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("labrec.access")
_RESERVED: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage().replace("\n", "\\n").replace("\r", "\\r"),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "aiosqlite", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The JSON lines never show caller, thread or process fields: skip finding them per record
    # (a fifth of the cost of every access-log line).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    """Gives every request an id (``X-Request-Id``) and writes one access-log line for it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        except HTTPException as exc:
            # Raised by a middleware inside this one (``reject_control_characters``): Litestar's
            # outer exception handler sends the response after this line, with this status.
            # The X-Request-Id header is added there by ``api.headers.response_headers``.
            status = exc.status_code
            raise
        finally:
            state = scope.get("state", {})
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "route": scope.get("path_template") or "unmatched",
                    "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                    "organisation": state.get("organisation_id"),
                },
            )

    return middleware
