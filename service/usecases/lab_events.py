"""Lab status events (webhooks and reconciliation polls) applied through the state machine.

An event id seen before is acknowledged and ignored; an event that would move an order backwards
(late or out of order) is recorded but changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain import orders as states
from service.persistence import orders as repo
from service.persistence.audit import record_audit
from service.persistence.models import LabEvent, Order
from service.usecases.clock import Clock

log = logging.getLogger("labrec.lab_events")

EventOutcome = Literal["applied", "ignored", "duplicate", "unknown_order"]
_IN_LAB: Final = ("submitted", "received", "in_progress")


async def apply_lab_status(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    event_id: str,
    order_id: str,
    lab_order_id: str | None,
    status: str,
    occurred_at: dt.datetime,
    message: str | None,
) -> EventOutcome:
    now = clock()
    async with sessions() as session, session.begin():
        try:
            async with session.begin_nested():
                session.add(
                    LabEvent(
                        id=event_id,
                        order_id=order_id[:36],
                        status=status,
                        occurred_at=occurred_at,
                        received_at=now,
                        applied=False,
                    )
                )
        except IntegrityError:
            return "duplicate"
        order = await repo.get_order_for_lab(session, order_id, for_update=True)
        if order is None:
            log.warning("lab event for an unknown order id")
            return "unknown_order"
        target = states.after_lab_event(order.status, status)
        detail = f"lab reported {status}" + (f": {message[:300]}" if message else "")
        repo.add_attempt(
            session, order.id, now, "lab_event", "applied" if target else "ignored", detail
        )
        record_audit(
            session,
            principal=None,
            actor="lab",
            organisation_id=order.organisation_id,
            action="order.lab_event",
            object_type="order",
            object_id=order.id,
            patient_reference=order.patient_reference,
            outcome="success" if target else "ignored",
            now=now,
        )
        if target is None:
            return "ignored"
        order.status = target
        order.updated_at = now
        if lab_order_id and not order.lab_order_id:
            order.lab_order_id = lab_order_id
        if target in ("rejected", "cancelled") and message:
            order.status_detail = f"Lab: {message[:300]}"
        event = await session.get(LabEvent, event_id)
        if event is not None:
            event.applied = True
        return "applied"


async def overdue_orders(
    sessions: async_sessionmaker[AsyncSession], *, older_than: dt.datetime, limit: int
) -> list[Order]:
    """Orders at the lab whose last news is older than the reconcile threshold."""
    async with sessions() as session:
        query = (
            select(Order)
            .where(Order.status.in_(_IN_LAB), Order.updated_at < older_than)
            .order_by(Order.updated_at)
            .limit(limit)
        )
        return list((await session.execute(query)).scalars())
