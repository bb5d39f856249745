"""Reading a feedback POST (CDS Hooks 2.0 §Feedback) with the cds-fb-1..3 rules."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final

import msgspec

from service.cds.wire import MalformedHookRequest
from service.domain.text import TOKEN_PATTERN, has_control_characters
from service.usecases.cds_feedback import FeedbackItem

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=TOKEN_PATTERN)]


class _AcceptedIn(msgspec.Struct):
    id: _Id


class _OverrideReasonIn(msgspec.Struct, rename="camel"):
    reason: dict[str, Any] | None = None
    user_comment: str | None = None


class _FeedbackIn(msgspec.Struct, rename="camel"):
    card: _Id
    outcome: str
    outcome_timestamp: dt.datetime
    accepted_suggestions: Annotated[list[_AcceptedIn], msgspec.Meta(max_length=100)] | None = None
    override_reason: _OverrideReasonIn | None = None


class _FeedbackBody(msgspec.Struct):
    feedback: Annotated[list[_FeedbackIn], msgspec.Meta(max_length=100)]


_DECODER: Final = msgspec.json.Decoder(_FeedbackBody)


def parse_feedback(body: bytes) -> list[FeedbackItem]:
    try:
        raw = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        message = str(exc).split(" - at ")
        where = message[1] if len(message) > 1 else "the body"
        raise MalformedHookRequest(f"feedback does not match the spec at {where}") from None
    items: list[FeedbackItem] = []
    for i, entry in enumerate(raw.feedback):
        where = f"feedback[{i}]"
        if entry.outcome not in ("accepted", "overridden"):
            raise MalformedHookRequest(f"{where}.outcome must be accepted or overridden (cds-fb-1)")
        if entry.outcome_timestamp.tzinfo is None:
            raise MalformedHookRequest(f"{where}.outcomeTimestamp needs a UTC offset (RFC 3339)")
        accepted = tuple(a.id for a in entry.accepted_suggestions or [])
        if entry.outcome == "accepted" and not accepted:
            raise MalformedHookRequest(f"{where}.acceptedSuggestions is required (cds-fb-2)")
        system = code = None
        comment = False
        override = entry.override_reason
        if override is not None:
            if override.reason is None and not override.user_comment:
                raise MalformedHookRequest(
                    f"{where}.overrideReason needs a reason or a userComment (cds-fb-3)"
                )
            if override.reason is not None:
                system, code = _coding(override.reason, where)
            comment = bool(override.user_comment)
        overridden = entry.outcome == "overridden"
        items.append(
            FeedbackItem(
                card=entry.card,
                outcome="overridden" if overridden else "accepted",
                outcome_at=entry.outcome_timestamp.astimezone(dt.UTC),
                accepted_suggestions=accepted if not overridden else (),
                reason_system=system if overridden else None,
                reason_code=code if overridden else None,
                has_comment=comment and overridden,
            )
        )
    return items


def _coding(reason: dict[str, Any], where: str) -> tuple[str | None, str]:
    code = reason.get("code")
    system = reason.get("system")
    if not isinstance(code, str) or not 0 < len(code) <= 64 or has_control_characters(code):
        raise MalformedHookRequest(f"{where}.overrideReason.reason.code must be a code")
    if system is not None and (
        not isinstance(system, str) or len(system) > 255 or has_control_characters(system)
    ):
        raise MalformedHookRequest(f"{where}.overrideReason.reason.system must be a URI")
    return system, code
