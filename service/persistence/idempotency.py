"""Idempotency keys for POST /v1/orders, scoped per organisation.

A key is first reserved in its own short transaction (state ``in_flight``) so a concurrent request
with the same key can be told 409 instead of waiting. The work then commits together with the key's
final response (``done``). A failure before that commit releases the key so a retry runs again; a
reservation left by a crashed process is taken over once it is older than ``STALE_AFTER``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.persistence.models import IdempotencyKey

STALE_AFTER: Final = dt.timedelta(seconds=60)


class Reserved(msgspec.Struct, frozen=True):
    pass


class Replay(msgspec.Struct, frozen=True):
    status: int
    body: dict[str, Any]


class Mismatch(msgspec.Struct, frozen=True):
    pass


class InProgress(msgspec.Struct, frozen=True):
    pass


Reservation = Reserved | Replay | Mismatch | InProgress


async def reserve(
    sessions: async_sessionmaker[AsyncSession],
    *,
    organisation_id: str,
    scope: str,
    key: str,
    fingerprint: str,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> Reservation:
    for _ in range(3):
        async with sessions() as session:
            try:
                async with session.begin():
                    await session.execute(
                        delete(IdempotencyKey).where(
                            IdempotencyKey.organisation_id == organisation_id,
                            IdempotencyKey.scope == scope,
                            IdempotencyKey.key == key,
                            IdempotencyKey.expires_at < now,
                        )
                    )
                    session.add(
                        IdempotencyKey(
                            organisation_id=organisation_id,
                            scope=scope,
                            key=key,
                            fingerprint=fingerprint,
                            state="in_flight",
                            response_status=None,
                            response_body=None,
                            created_at=now,
                            expires_at=now + ttl,
                        )
                    )
                return Reserved()
            except IntegrityError:
                pass
        async with sessions() as session, session.begin():
            row = (
                await session.execute(
                    select(IdempotencyKey).where(
                        IdempotencyKey.organisation_id == organisation_id,
                        IdempotencyKey.scope == scope,
                        IdempotencyKey.key == key,
                    )
                )
            ).scalar_one_or_none()
            if row is None:
                continue  # released meanwhile: try to reserve again
            if row.fingerprint != fingerprint:
                return Mismatch()
            if row.state == "done" and row.response_status is not None:
                return Replay(status=row.response_status, body=row.response_body or {})
            if now - row.created_at < STALE_AFTER:
                return InProgress()
            taken = await session.execute(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.organisation_id == organisation_id,
                    IdempotencyKey.scope == scope,
                    IdempotencyKey.key == key,
                    IdempotencyKey.created_at == row.created_at,
                )
                .values(created_at=now)
            )
            if taken.rowcount:  # type: ignore[attr-defined]
                return Reserved()
    return InProgress()


async def complete(
    session: AsyncSession,
    *,
    organisation_id: str,
    scope: str,
    key: str,
    status: int,
    body: dict[str, Any],
) -> None:
    """Store the final response in the caller's transaction (with the order and outbox rows)."""
    await session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.organisation_id == organisation_id,
            IdempotencyKey.scope == scope,
            IdempotencyKey.key == key,
        )
        .values(state="done", response_status=status, response_body=body)
    )


async def release(
    sessions: async_sessionmaker[AsyncSession], *, organisation_id: str, scope: str, key: str
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.organisation_id == organisation_id,
                IdempotencyKey.scope == scope,
                IdempotencyKey.key == key,
                IdempotencyKey.state == "in_flight",
            )
        )


async def purge_expired(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> int:
    """Drop keys past their retention (they are also replaced lazily when reused)."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.expires_at < now)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
