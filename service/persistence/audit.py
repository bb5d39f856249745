"""The audit trail: one append-only row per access to an order or patient data."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

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
