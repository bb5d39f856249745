"""What free text labrec accepts: the patterns every edge type (REST, UI, lab events) uses.

Control characters would reach the database (PostgreSQL refuses NUL outright), the lab's
requisition, or a reader's screen (bidi overrides reorder what a person sees: "Trojan Source").
The patterns are plain regular expressions so msgspec checks them while decoding and the OpenAPI
document shows them.
"""

from __future__ import annotations

import re
from typing import Final

#: C0 controls (NUL, ...), DEL, C1 controls, the Unicode line and paragraph separators, the bidi
#: embeddings, overrides and isolates, and the bidi marks (LRM, RLM, ALM): they reorder or
#: disguise what a reader sees.
_CONTROL_BASE: Final = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_BIDI_MARKS: Final = r"\u200e\u200f\u061c"
#: Noncharacters: U+FDD0..U+FDEF and the last two code points of every plane. Never text.
_NONCHARACTERS: Final = r"\ufdd0-\ufdef" + "".join(
    rf"\U{(plane << 16) | 0xFFFE:08x}\U{(plane << 16) | 0xFFFF:08x}" for plane in range(17)
)
#: Every Unicode format character (category Cf, Unicode 15): soft hyphen, zero-width space,
#: joiners, word joiner, BOM, invisible operators, tags, ... Invisible, so an identifier holding
#: one looks exactly like another identifier. Names keep ZWJ/ZWNJ (U+200C/U+200D), which some
#: scripts need to spell words; identifiers and addresses refuse them all.
_FORMAT: Final = (
    r"\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    r"\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    r"\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    r"\U000e0020-\U000e007f"
)
#: What names and notes refuse.
_CONTROL: Final = _CONTROL_BASE + _BIDI_MARKS + _NONCHARACTERS
#: The same, less tab, line feed and carriage return (notes typed in a text area).
_CONTROL_BUT_LINES: Final = (
    r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    + _BIDI_MARKS
    + _NONCHARACTERS
)
#: What identifiers, references and addresses refuse: all of the above and every Cf character.
_INVISIBLE: Final = _CONTROL + _FORMAT
#: One line of text. ``(?!\n)``: Python's ``$`` also matches before a final newline.
LINE_PATTERN: Final = rf"^[^{_CONTROL}]*(?!\n)$"
#: Several lines of text.
TEXT_PATTERN: Final = rf"^[^{_CONTROL_BUT_LINES}]*$"
#: A reference or id: one line without whitespace or invisible characters.
TOKEN_PATTERN: Final = rf"^[^\s{_INVISIBLE}]+(?!\n)$"

_HAS_CONTROL: Final = re.compile(rf"[{_INVISIBLE}]")


def has_control_characters(text: str) -> bool:
    """For identifiers, issuers, codes and addresses: control, format (Cf) or noncharacters."""
    return _HAS_CONTROL.search(text) is not None
