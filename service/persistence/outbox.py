"""The transactional outbox: rows written with the order, claimed by dispatchers under a lease.

A claim is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`` statement:
on PostgreSQL concurrent workers skip each other's rows; on SQLite the statement runs under the
database's single write lock. A worker that dies leaves its lease to expire, and the row is
claimed again. Each claim carries a fresh token, so a worker whose lease expired cannot record
an outcome over the new claimer's (fencing).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Final

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.persistence.models import OutboxMessage

_OUTBOX: Final[Table] = OutboxMessage.__table__  # type: ignore[assignment]


def message_values(
    *, organisation_id: str, order_id: str, kind: str, now: dt.datetime
) -> dict[str, Any]:
    """The column values of a new outbox row (``add_message`` adds it to a session)."""
    return {
        "id": str(uuid.uuid4()),
        "organisation_id": organisation_id,
        "order_id": order_id,
        "kind": kind,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": None,
        "claimed_by": None,
        "last_error": None,
        "created_at": now,
    }


def add_message(
    session: AsyncSession, *, organisation_id: str, order_id: str, kind: str, now: dt.datetime
) -> OutboxMessage:
    message = OutboxMessage(
        **message_values(organisation_id=organisation_id, order_id=order_id, kind=kind, now=now)
    )
    session.add(message)
    return message


async def claim_due(
    session: AsyncSession, *, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[OutboxMessage]:
    """Claim up to ``limit`` due messages (pending and due, or in flight with an expired lease)."""
    token = str(uuid.uuid4())
    due = (
        select(OutboxMessage.id)
        .where(
            or_(
                and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
                and_(OutboxMessage.status == "in_flight", OutboxMessage.lease_until < now),
            )
        )
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(status="in_flight", claimed_by=token, lease_until=now + lease)
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False)
    )
    return list(claimed.scalars())


async def settle(
    session: AsyncSession,
    message: OutboxMessage,
    *,
    status: str,
    attempts: int,
    next_attempt_at: dt.datetime | None = None,
    last_error: str | None = None,
) -> bool:
    """Record an outcome if this claim still holds the message; False when the lease was lost."""
    values: dict[str, object] = {
        "status": status,
        "attempts": attempts,
        "lease_until": None,
        "claimed_by": None,
        "last_error": last_error,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    # Core, not the ORM's bulk-update path: this runs once per delivery.
    result = await session.execute(
        update(_OUTBOX)
        .where(_OUTBOX.c.id == message.id, _OUTBOX.c.claimed_by == message.claimed_by)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def messages_for(session: AsyncSession, order_id: str) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.order_id == order_id)
    return list((await session.execute(query)).scalars())
