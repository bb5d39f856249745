"""The app's request class: every body is checked for JSON nesting depth as it is read.

Decoders recurse once per nesting level; a body nested about a thousand levels deep makes them
raise ``RecursionError`` (a 500) or leaves a structure later code cannot walk. Every face reads
its body through ``Request.body()`` (REST via Litestar's JSON extractor, CDS Hooks and lab events
directly, UI forms through ``form()``), so the limit lives there, once, before any decoder runs.
"""

from __future__ import annotations

import re
from typing import Any, Final

from litestar import Request
from litestar.exceptions import ClientException

#: Far deeper than any labrec body or FHIR resource (about 12 levels), far below the recursion
#: limit of decoders.
MAX_JSON_DEPTH: Final = 64

#: A JSON string, escapes included: brackets inside strings do not nest.
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STARTS_NESTED: Final = re.compile(rb"[ \t\r\n]*[\[{]")


class JsonTooDeep(ClientException):
    """A JSON body nested deeper than ``MAX_JSON_DEPTH``: 400 (OperationOutcome on CDS)."""

    def __init__(self) -> None:
        super().__init__(
            detail=f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep; "
            "labrec's request shapes need far fewer."
        )


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
