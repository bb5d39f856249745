"""What the engine returns: suggestions, what was left out and why, and advisories."""

from __future__ import annotations

import datetime as dt

import msgspec

from service.domain.catalog import Evidence, Panel
from service.domain.vocabulary import Priority, Severity, SuppressionReason


class Suggestion(msgspec.Struct, frozen=True):
    panel: Panel
    priority: Priority
    rationale: str
    evidence: tuple[Evidence, ...]
    rules: tuple[str, ...]
    cautions: tuple[str, ...] = ()
    alternatives: tuple[Panel, ...] = ()
    retest_days: int | None = None
    #: MAPPING.md: true only for safety-tier essential/recommended suggestions.
    preselected: bool = False


class Suppressed(msgspec.Struct, frozen=True):
    panel_id: str
    panel_name: str
    reason: SuppressionReason
    detail: str
    rules: tuple[str, ...]
    last_tested: dt.date | None = None
    #: For ``recently_tested``: ``last_tested`` + the retest interval.
    next_due: dt.date | None = None


class AdvisoryNote(msgspec.Struct, frozen=True):
    id: str
    text: str
    source: str
    severity: Severity = "info"


class IgnoredCoding(msgspec.Struct, frozen=True):
    """A coding labrec could not map (MAPPING.md rule 7): reported, never a rejection."""

    path: str
    reason: str


class Recommendation(msgspec.Struct, frozen=True):
    catalog_version: str
    as_of: dt.date
    suggestions: tuple[Suggestion, ...]
    suppressed: tuple[Suppressed, ...]
    advisories: tuple[AdvisoryNote, ...]
    ignored_codings: tuple[IgnoredCoding, ...] = ()
