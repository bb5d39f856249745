"""Orders, their attempt history and stored recommendations; every tenant read filters on org."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Final

from sqlalchemy import Select, Table, and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.persistence.models import Order, OrderAttempt, StoredRecommendation

#: Core tables for the dispatcher's per-delivery statements (no ORM statement machinery).
_ORDERS: Final[Table] = Order.__table__  # type: ignore[assignment]
_ATTEMPTS: Final[Table] = OrderAttempt.__table__  # type: ignore[assignment]


async def get_order(
    session: AsyncSession, organisation_id: str, order_id: str, *, for_update: bool = False
) -> Order | None:
    query = select(Order).where(Order.id == order_id, Order.organisation_id == organisation_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def get_order_for_lab(
    session: AsyncSession, order_id: str, *, for_update: bool = False
) -> Order | None:
    """Lab-side lookup (dispatcher, lab events): the order id is the only key the lab knows."""
    query = select(Order).where(Order.id == order_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def orders_for_lab(session: AsyncSession, order_ids: list[str]) -> dict[str, Order]:
    """The orders a dispatcher just claimed, in one query."""
    if not order_ids:
        return {}
    query = select(Order).where(Order.id.in_(set(order_ids)))
    return {order.id: order for order in (await session.execute(query)).scalars()}


async def lock_status_for_lab(session: AsyncSession, order_id: str) -> str | None:
    """The order's status, row locked (``FOR UPDATE``): what the dispatcher needs to record an
    outcome, without loading the whole order.
    """
    query = select(Order.status).where(Order.id == order_id).with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def update_for_lab(session: AsyncSession, order_id: str, **values: object) -> None:
    """Write the dispatcher's changes to an order (status, lab_order_id, status_detail, ...)."""
    await session.execute(update(_ORDERS).where(_ORDERS.c.id == order_id).values(**values))


async def insert_attempt(
    session: AsyncSession,
    order_id: str,
    at: dt.datetime,
    kind: str,
    outcome: str,
    detail: str | None,
) -> None:
    """``add_attempt`` as one INSERT statement (no unit of work: the dispatcher's hot path)."""
    await session.execute(
        insert(_ATTEMPTS).values(
            order_id=order_id, at=at, kind=kind, outcome=outcome, detail=detail
        )
    )


async def attempts_of(session: AsyncSession, order_id: str) -> list[OrderAttempt]:
    query = select(OrderAttempt).where(OrderAttempt.order_id == order_id).order_by(OrderAttempt.id)
    return list((await session.execute(query)).scalars())


def add_attempt(
    session: AsyncSession,
    order_id: str,
    at: dt.datetime,
    kind: str,
    outcome: str,
    detail: str | None,
) -> None:
    session.add(OrderAttempt(order_id=order_id, at=at, kind=kind, outcome=outcome, detail=detail))


class BadCursor(ValueError):
    pass


def encode_cursor(order: Order) -> str:
    raw = f"{order.created_at.isoformat()}|{order.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, order_id = raw.split("|", 1)
        when = dt.datetime.fromisoformat(created)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor(cursor) from None
    if when.tzinfo is None:
        raise BadCursor(cursor)
    return when, order_id


async def list_orders(
    session: AsyncSession,
    organisation_id: str,
    *,
    limit: int,
    status: str | None = None,
    patient_reference: str | None = None,
    cursor: str | None = None,
) -> tuple[list[Order], str | None]:
    """Newest first, keyset-paginated on (created_at, id); returns the page and the next cursor."""
    query: Select[Order] = select(Order).where(Order.organisation_id == organisation_id)
    if status is not None:
        query = query.where(Order.status == status)
    if patient_reference is not None:
        query = query.where(Order.patient_reference == patient_reference)
    if cursor is not None:
        created, order_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Order.created_at < created,
                and_(Order.created_at == created, Order.id < order_id),
            )
        )
    query = query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def get_recommendation(
    session: AsyncSession, organisation_id: str, recommendation_id: str
) -> StoredRecommendation | None:
    query = select(StoredRecommendation).where(
        StoredRecommendation.id == recommendation_id,
        StoredRecommendation.organisation_id == organisation_id,
    )
    return (await session.execute(query)).scalar_one_or_none()
