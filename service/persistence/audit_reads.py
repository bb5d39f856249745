"""Reading the audit trail (admins only; the read itself is audited by the caller)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.persistence.models import AuditRecord


async def list_audit(
    session: AsyncSession,
    organisation_id: str,
    *,
    limit: int,
    before_id: int | None = None,
    action: str | None = None,
    object_id: str | None = None,
    patient_reference: str | None = None,
) -> list[AuditRecord]:
    """Newest first; ``before_id`` pages backwards."""
    query = select(AuditRecord).where(AuditRecord.organisation_id == organisation_id)
    if before_id is not None:
        query = query.where(AuditRecord.id < before_id)
    if action is not None:
        query = query.where(AuditRecord.action == action)
    if object_id is not None:
        query = query.where(AuditRecord.object_id == object_id)
    if patient_reference is not None:
        query = query.where(AuditRecord.patient_reference == patient_reference)
    query = query.order_by(AuditRecord.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())
