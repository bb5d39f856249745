"""Checks on every request before any route reads it: JSON nesting depth, control characters.

The app's request class checks each body for JSON nesting depth as it is read.

Decoders recurse once per nesting level; a body nested about a thousand levels deep makes them
raise ``RecursionError`` (a 500) or leaves a structure later code cannot walk. Every face reads
its body through ``Request.body()`` (REST via Litestar's JSON extractor, CDS Hooks and lab events
directly, UI forms through ``form()``), so the limit lives there, once, before any decoder runs.

``reject_control_characters`` refuses a path or query string holding control characters (NUL,
other C0/C1, bidi controls) before routing: ids and filters never contain them, and PostgreSQL
refuses NUL with an error. Bodies are checked by their types (``service/domain/text.py``).
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from litestar import Request
from litestar.enums import ScopeType
from litestar.exceptions import ClientException
from litestar.types import ASGIApp, Receive, Scope, Send

from service.domain.text import has_control_characters

#: Far deeper than any labrec body or FHIR resource (about 12 levels), far below the recursion
#: limit of decoders.
MAX_JSON_DEPTH: Final = 64

#: A JSON string, escapes included: brackets inside strings do not nest.
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STARTS_NESTED: Final = re.compile(rb"[ \t\r\n]*[\[{]")


class UnreadableRequest(ClientException):
    """400 before any route logic: problem+json on REST and lab events, an HTML page on the
    UI, an OperationOutcome on CDS Hooks (each face registers its own rendering)."""


class JsonTooDeep(UnreadableRequest):
    """A JSON body nested deeper than ``MAX_JSON_DEPTH``."""

    def __init__(self) -> None:
        super().__init__(
            detail=f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep; "
            "labrec's request shapes need far fewer."
        )


class ControlCharactersInAddress(UnreadableRequest):
    """A path or query string with control characters (NUL, C0/C1, bidi controls)."""

    def __init__(self) -> None:
        super().__init__(
            detail="The address (path or query string) contains control characters; labrec's "
            "ids, references and filters never do."
        )


def reject_control_characters(app: ASGIApp) -> ASGIApp:
    """Middleware: 400 for control characters in the decoded path or query string."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            query = unquote_to_bytes(scope.get("query_string", b"")).decode("utf-8", "replace")
            if has_control_characters(scope["path"]) or has_control_characters(query):
                raise ControlCharactersInAddress
        await app(scope, receive, send)

    return middleware


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``body`` looks like JSON and nests arrays/objects deeper than ``limit``.

    Cheap for ordinary bodies: with no more than ``limit`` opening brackets in all, nothing is
    scanned. Otherwise strings are cut out and innermost ``[]``/``{}`` pairs removed one level
    per pass (C-speed ``bytes`` operations); anything left after ``limit`` passes is too deep.
    Unbalanced brackets are malformed JSON anyway; more than ``limit`` unclosed ones count as
    too deep (a decoder would recurse into them before noticing the end).
    """
    if not _STARTS_NESTED.match(body) or body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return False
        if shorter == brackets:  # unbalanced: what is left cannot pair up
            return brackets.count(b"[") + brackets.count(b"{") > limit
        brackets = shorter
    return True


class LabrecRequest(Request[Any, Any, Any]):
    """``Litestar(request_class=LabrecRequest)``: ``body()`` refuses over-deep JSON."""

    __slots__ = ("_depth_checked",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._depth_checked = False

    async def body(self) -> bytes:
        body = await super().body()
        if not self._depth_checked:
            if json_too_deep(body):
                raise JsonTooDeep
            self._depth_checked = True
        return body
