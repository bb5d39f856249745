"""Repositories of the CDS Hooks face: clients, seen JWT ids, issued cards and feedback."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Table, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.persistence.cds_models import (
    CdsCard,
    CdsClient,
    CdsFeedback,
    CdsSeenJti,
    CdsSuggestion,
    CdsSuggestionRule,
)
from service.persistence.group_insert import Staging


async def upsert_cds_client(
    session: AsyncSession,
    *,
    organisation_id: str,
    iss: str,
    jwks_url: str | None,
    jwks: dict[str, Any] | None,
    origins: Sequence[str],
    now: dt.datetime,
    fhir_servers: Sequence[str] = (),
) -> tuple[CdsClient, bool]:
    """Register ``iss`` for the organisation, or replace its keys, origins and FHIR servers.

    Returns the row and whether it was created. An issuer registered to another organisation is
    a ``ValueError``: one issuer always maps to exactly one tenant.
    """
    row = await cds_client_by_iss(session, iss, include_revoked=True)
    if row is not None and row.organisation_id != organisation_id:
        raise ValueError("this issuer is registered to another organisation")
    created = row is None
    if row is None:
        row = CdsClient(
            id=str(uuid.uuid4()),
            organisation_id=organisation_id,
            iss=iss,
            created_at=now,
            revoked_at=None,
        )
        session.add(row)
    row.jwks_url = jwks_url
    row.jwks = jwks
    row.origins = list(origins)
    row.fhir_servers = list(fhir_servers)
    row.revoked_at = None
    await session.flush()
    return row, created


async def cds_client_by_iss(
    session: AsyncSession, iss: str, *, include_revoked: bool = False
) -> CdsClient | None:
    query = select(CdsClient).where(CdsClient.iss == iss)
    if not include_revoked:
        query = query.where(CdsClient.revoked_at.is_(None))
    return (await session.execute(query)).scalar_one_or_none()


async def active_cds_origins(session: AsyncSession) -> set[str]:
    rows = await session.execute(select(CdsClient.origins).where(CdsClient.revoked_at.is_(None)))
    return {origin for (origins,) in rows for origin in origins or [] if isinstance(origin, str)}


def stage_jti_claim(staged: Staging, iss: str, jti: str, expires_at: dt.datetime) -> None:
    """The token id as ``staged``'s claim: its writes commit only if this issuer never used it
    (the primary key makes it single-use across processes)."""
    staged.claim(CdsSeenJti, {"iss": iss, "jti": jti, "expires_at": expires_at})


def stage_jti_purge(staged: Staging, now: dt.datetime) -> None:
    """Forget token ids whose tokens can no longer be used."""
    staged.execute(_PURGE_JTI, {"purge_before": now})


_SEEN_JTI: Final[Table] = CdsSeenJti.__table__  # type: ignore[assignment]
#: On the Table, not the entity: the ORM would read a list of parameters as a bulk delete by key.
_PURGE_JTI: Final = delete(_SEEN_JTI).where(_SEEN_JTI.c.expires_at < bindparam("purge_before"))


def stage_issued_card(
    staged: Staging,
    card: dict[str, Any],
    suggestions: Sequence[tuple[dict[str, Any], Sequence[str]]],
) -> None:
    """A card, its suggestions and the rules behind each suggestion (column values)."""
    staged.insert(CdsCard, card)
    for suggestion, _ in suggestions:
        staged.insert(CdsSuggestion, suggestion)
    for suggestion, rules in suggestions:
        for rule_id in dict.fromkeys(rules):
            staged.insert(
                CdsSuggestionRule,
                {
                    "suggestion_uuid": suggestion["uuid"],
                    "rule_id": rule_id,
                    "organisation_id": suggestion["organisation_id"],
                },
            )


async def issued_card(
    session: AsyncSession, organisation_id: str, card_uuid: str
) -> tuple[CdsCard, set[str]] | None:
    """The caller's card and the uuids of its suggestions; None when it is not theirs."""
    card = await session.get(CdsCard, card_uuid)
    if card is None or card.organisation_id != organisation_id:
        return None
    rows = await session.execute(
        select(CdsSuggestion.uuid).where(CdsSuggestion.card_uuid == card_uuid)
    )
    return card, {suggestion_uuid for (suggestion_uuid,) in rows}


async def insert_feedback(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert unless the natural key exists; True when a row was written."""
    return await _insert_ignoring_duplicates(session, CdsFeedback, values)


async def _insert_ignoring_duplicates(
    session: AsyncSession, table: type[CdsFeedback], values: dict[str, Any]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL); True when a row was written."""
    dialect = session.get_bind().dialect.name
    statement: Any
    if dialect == "postgresql":
        statement = pg_insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite_insert(table).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise RuntimeError(f"unsupported database dialect {dialect}")
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


async def rule_feedback_counts(
    session: AsyncSession, organisation_id: str, rule_id: str
) -> dict[str, Any]:
    """Suggestions issued for a rule, and accepted / overridden outcomes, for one organisation.

    ``accepted`` counts accepted suggestions the rule produced; ``overridden`` counts overridden
    cards that carried at least one suggestion from the rule.
    """
    rule_suggestions = select(CdsSuggestionRule.suggestion_uuid).where(
        CdsSuggestionRule.organisation_id == organisation_id,
        CdsSuggestionRule.rule_id == rule_id,
    )
    rule_cards = select(CdsSuggestion.card_uuid).where(CdsSuggestion.uuid.in_(rule_suggestions))
    issued = await session.scalar(select(func.count()).select_from(rule_suggestions.subquery()))
    cards = await session.scalar(
        select(func.count(func.distinct(CdsSuggestion.card_uuid))).where(
            CdsSuggestion.uuid.in_(rule_suggestions)
        )
    )
    mine = CdsFeedback.organisation_id == organisation_id
    accepted = await session.scalar(
        select(func.count()).where(
            mine,
            CdsFeedback.outcome == "accepted",
            CdsFeedback.suggestion_uuid.in_(rule_suggestions),
        )
    )
    overridden_filter = (
        mine,
        CdsFeedback.outcome == "overridden",
        CdsFeedback.card_uuid.in_(rule_cards),
    )
    overridden = await session.scalar(select(func.count()).where(*overridden_filter))
    reasons = await session.execute(
        select(CdsFeedback.override_system, CdsFeedback.override_code, func.count())
        .where(*overridden_filter, CdsFeedback.override_code.is_not(None))
        .group_by(CdsFeedback.override_system, CdsFeedback.override_code)
        .order_by(func.count().desc(), CdsFeedback.override_code)
    )
    return {
        "suggestions_issued": int(issued or 0),
        "cards_issued": int(cards or 0),
        "accepted": int(accepted or 0),
        "overridden": int(overridden or 0),
        "override_reasons": [
            {"system": system, "code": code, "count": int(count)} for system, code, count in reasons
        ],
    }
