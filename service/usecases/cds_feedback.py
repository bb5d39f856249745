"""CDS feedback: remember which cards labrec issued, store what clinicians did with them, and
count outcomes per catalog rule for the catalog's quality review.

Feedback names only card and suggestion uuids; the issued-card tables map them back to the
stored recommendation, the panel and the rules that produced each suggestion.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.catalog import Catalog
from service.domain.principal import Principal
from service.persistence.cds import (
    insert_feedback,
    issued_card,
    rule_feedback_counts,
    stage_issued_card,
)
from service.persistence.group_insert import Staging
from service.usecases.clock import Clock
from service.usecases.errors import NotFound, shown

Outcome = Literal["accepted", "overridden"]


class IssuedSuggestion(msgspec.Struct, frozen=True):
    uuid: str
    panel_id: str
    priority: str
    rules: tuple[str, ...]


class FeedbackItem(msgspec.Struct, frozen=True):
    """One feedback entry after the cds-fb-1..3 checks."""

    card: str
    outcome: Outcome
    outcome_at: dt.datetime
    accepted_suggestions: tuple[str, ...] = ()
    reason_system: str | None = None
    reason_code: str | None = None
    has_comment: bool = False


class FeedbackReceipt(msgspec.Struct, frozen=True):
    stored: int
    already_stored: int
    unknown: int


class OverrideReasonCount(msgspec.Struct, frozen=True):
    code: str
    count: int
    system: str | None = None


class RuleFeedbackOut(msgspec.Struct, frozen=True):
    """CDS outcomes for one rule, for the caller's organisation only."""

    rule_id: str
    suggestions_issued: int
    cards_issued: int
    accepted: int
    overridden: int
    override_reasons: list[OverrideReasonCount]


class CdsFeedbackService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], catalog: Catalog, clock: Clock
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._clock = clock

    def stage_issued(
        self,
        staged: Staging,
        principal: Principal,
        *,
        card_uuid: str,
        service_id: str,
        hook: str,
        hook_instance: str,
        recommendation_id: str,
        therapy: str,
        suggestions: Sequence[IssuedSuggestion],
    ) -> None:
        """Adds the issued card to ``staged``, which also holds the recommendation it cites."""
        org = principal.organisation_id
        stage_issued_card(
            staged,
            {
                "uuid": card_uuid,
                "organisation_id": org,
                "service_id": service_id,
                "hook": hook,
                "hook_instance": hook_instance[:128],
                "recommendation_id": recommendation_id,
                "therapy": therapy,
                "created_at": self._clock(),
            },
            [
                (
                    {
                        "uuid": s.uuid,
                        "card_uuid": card_uuid,
                        "organisation_id": org,
                        "panel_id": s.panel_id,
                        "priority": s.priority,
                    },
                    s.rules,
                )
                for s in suggestions
            ],
        )

    async def record(
        self, principal: Principal, service_id: str, items: Sequence[FeedbackItem]
    ) -> FeedbackReceipt:
        """Store each outcome once; entries for cards this caller was not issued are skipped."""
        stored = already = unknown = 0
        now = self._clock()
        async with self._sessions() as session, session.begin():
            for item in items:
                found = await issued_card(session, principal.organisation_id, item.card)
                if found is None or found[0].service_id != service_id:
                    unknown += 1
                    continue
                _, suggestion_uuids = found
                targets: Sequence[str] = (
                    [s for s in item.accepted_suggestions if s in suggestion_uuids]
                    if item.outcome == "accepted"
                    else [""]
                )
                if item.outcome == "accepted" and len(targets) < len(item.accepted_suggestions):
                    unknown += len(item.accepted_suggestions) - len(targets)
                for suggestion_uuid in dict.fromkeys(targets):
                    written = await insert_feedback(
                        session,
                        {
                            "organisation_id": principal.organisation_id,
                            "card_uuid": item.card,
                            "outcome": item.outcome,
                            "suggestion_uuid": suggestion_uuid,
                            "outcome_at": item.outcome_at,
                            "override_system": item.reason_system,
                            "override_code": item.reason_code,
                            "has_comment": item.has_comment,
                            "received_at": now,
                        },
                    )
                    if written:
                        stored += 1
                    else:
                        already += 1
        return FeedbackReceipt(stored=stored, already_stored=already, unknown=unknown)

    async def rule_counts(self, principal: Principal, rule_id: str) -> RuleFeedbackOut:
        if rule_id not in self._catalog.rules:
            raise NotFound(
                f"No rule {shown(rule_id)} in the catalog; rule ids appear in each "
                "suggestion's rules[]."
            )
        async with self._sessions() as session:
            counts = await rule_feedback_counts(session, principal.organisation_id, rule_id)
        return RuleFeedbackOut(
            rule_id=rule_id,
            suggestions_issued=counts["suggestions_issued"],
            cards_issued=counts["cards_issued"],
            accepted=counts["accepted"],
            overridden=counts["overridden"],
            override_reasons=[
                OverrideReasonCount(code=r["code"], count=r["count"], system=r["system"])
                for r in counts["override_reasons"]
            ],
        )
