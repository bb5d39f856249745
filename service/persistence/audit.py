"""The audit trail: one append-only row per access to an order or patient data."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.principal import Principal
from service.persistence.models import AuditRecord


def audit_values(
    *,
    principal: Principal | None,
    action: str,
    object_type: str,
    object_id: str | None,
    patient_reference: str | None,
    outcome: str,
    now: dt.datetime,
    actor: str | None = None,
    organisation_id: str | None = None,
) -> dict[str, Any]:
    """The column values of one audit row (``record_audit`` adds it to a session)."""
    return {
        "at": now,
        "organisation_id": principal.organisation_id if principal else organisation_id,
        "actor": principal.actor if principal else (actor or "system"),
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "patient_reference": patient_reference,
        "outcome": outcome,
        "request_id": principal.request_id if principal else None,
    }


def record_audit(
    session: AsyncSession,
    *,
    principal: Principal | None,
    action: str,
    object_type: str,
    object_id: str | None,
    patient_reference: str | None,
    outcome: str,
    now: dt.datetime,
    actor: str | None = None,
    organisation_id: str | None = None,
) -> None:
    """Adds the row to the caller's transaction, so it commits (or rolls back) with the write."""
    session.add(
        AuditRecord(
            **audit_values(
                principal=principal,
                action=action,
                object_type=object_type,
                object_id=object_id,
                patient_reference=patient_reference,
                outcome=outcome,
                now=now,
                actor=actor,
                organisation_id=organisation_id,
            )
        )
    )


async def record_not_found(
    sessions: async_sessionmaker[AsyncSession],
    *,
    principal: Principal | None,
    action: str,
    object_type: str,
    object_id: str,
    now: dt.datetime,
    actor: str | None = None,
) -> None:
    """Audit a refusal (an unknown or another organisation's id) in a transaction of its own:
    the refused request wrote nothing to commit it with, and its read has ended (SQLite has one
    writer)."""
    async with sessions() as session, session.begin():
        record_audit(
            session,
            principal=principal,
            action=action,
            object_type=object_type,
            object_id=object_id[:64],
            patient_reference=None,
            outcome="not_found",
            now=now,
            actor=actor,
        )
