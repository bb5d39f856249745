"""What free text labrec accepts: the patterns every edge type (REST, UI, lab events) uses.

Control characters would reach the database (PostgreSQL refuses NUL outright), the lab's
requisition, or a reader's screen (bidi overrides reorder what a person sees: "Trojan Source").
The patterns are plain regular expressions so msgspec checks them while decoding and the OpenAPI
document shows them.
"""

from __future__ import annotations

import re
from typing import Final

#: C0 controls (NUL, ...), DEL, C1 controls, the Unicode line and paragraph separators, and the
#: bidi embeddings, overrides and isolates.
_CONTROL: Final = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
#: The same, less tab, line feed and carriage return (notes typed in a text area).
_CONTROL_BUT_LINES: Final = (
    r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
)
#: One line of text. ``(?!\n)``: Python's ``$`` also matches before a final newline.
LINE_PATTERN: Final = rf"^[^{_CONTROL}]*(?!\n)$"
#: Several lines of text.
TEXT_PATTERN: Final = rf"^[^{_CONTROL_BUT_LINES}]*$"
#: A reference or id: one line without whitespace.
TOKEN_PATTERN: Final = rf"^[^\s{_CONTROL}]+(?!\n)$"

_HAS_CONTROL: Final = re.compile(rf"[{_CONTROL}]")


def has_control_characters(text: str) -> bool:
    return _HAS_CONTROL.search(text) is not None
