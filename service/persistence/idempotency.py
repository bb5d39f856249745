"""Idempotency keys for POST /v1/orders, scoped per organisation.

A key is first reserved in its own short transaction (state ``in_flight``) so a concurrent request
with the same key can be told 409 instead of waiting. The work then commits together with the key's
final response (``done``). A failure before that commit releases the key so a retry runs again; a
reservation left by a crashed process is taken over once it is older than ``STALE_AFTER``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final, NamedTuple

import msgspec
from sqlalchemy import Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.persistence.group_insert import Batcher
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


_KEYS: Final[Table] = IdempotencyKey.__table__  # type: ignore[assignment]
#: Prepared once (``bindparam``): building SQL expressions per request costs more than running them.
_SAME_KEY: Final = and_(
    _KEYS.c.organisation_id == bindparam("k_org"),
    _KEYS.c.scope == bindparam("k_scope"),
    _KEYS.c.key == bindparam("k_key"),
)
_DELETE_EXPIRED: Final = delete(_KEYS).where(_SAME_KEY, _KEYS.c.expires_at < bindparam("k_now"))
_INSERT: Final = insert(_KEYS)
_SELECT: Final = select(_KEYS).where(_SAME_KEY)
_TAKE_OVER: Final = (
    update(_KEYS)
    .where(_SAME_KEY, _KEYS.c.created_at == bindparam("k_created"))
    .values(created_at=bindparam("k_now"))
)
#: Staged with the order (``group_insert.Staging.execute``) by ``complete_params``.
COMPLETE: Final = (
    update(_KEYS)
    .where(_SAME_KEY)
    .values(state="done", response_status=bindparam("k_status"), response_body=bindparam("k_body"))
)
_RELEASE: Final = delete(_KEYS).where(_SAME_KEY, _KEYS.c.state == "in_flight")


#: INSERT ... ON CONFLICT DO NOTHING RETURNING the key: [SQLite, PostgreSQL].
_CLAIM: Final = tuple(
    insert_(_KEYS)
    .on_conflict_do_nothing()
    .returning(_KEYS.c.organisation_id, _KEYS.c.scope, _KEYS.c.key)
    for insert_ in (sqlite_insert, pg_insert)
)


def _key(organisation_id: str, scope: str, key: str) -> dict[str, Any]:
    return {"k_org": organisation_id, "k_scope": scope, "k_key": key}


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
    same = _key(organisation_id, scope, key)
    for _ in range(3):
        async with sessions() as session:
            try:
                async with session.begin():
                    await session.execute(_DELETE_EXPIRED, {**same, "k_now": now})
                    await session.execute(
                        _INSERT,
                        _new_key(_Claim(organisation_id, scope, key, fingerprint, now, ttl)),
                    )
                return Reserved()
            except IntegrityError:
                pass
        async with sessions() as session, session.begin():
            row = (await session.execute(_SELECT, same)).one_or_none()
            if row is None:
                continue  # released meanwhile: try to reserve again
            if row.fingerprint != fingerprint:
                return Mismatch()
            if row.state == "done" and row.response_status is not None:
                return Replay(status=row.response_status, body=row.response_body or {})
            if now - row.created_at < STALE_AFTER:
                return InProgress()
            taken = await session.execute(
                _TAKE_OVER, {**same, "k_created": row.created_at, "k_now": now}
            )
            if taken.rowcount:  # type: ignore[attr-defined]
                return Reserved()
    return InProgress()


class _Claim(NamedTuple):
    organisation_id: str
    scope: str
    key: str
    fingerprint: str
    now: dt.datetime
    ttl: dt.timedelta


class Reservations(Batcher[_Claim, bool]):
    """``reserve`` with a fast path: new keys of concurrent requests are claimed together.

    One transaction inserts the whole batch (``ON CONFLICT DO NOTHING RETURNING``); a key that was
    already there takes the full ``reserve`` path alone (replay, mismatch, in flight, take-over),
    so every answer is what ``reserve`` would have given.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__()
        self._sessions = sessions

    async def reserve(
        self,
        *,
        organisation_id: str,
        scope: str,
        key: str,
        fingerprint: str,
        now: dt.datetime,
        ttl: dt.timedelta,
    ) -> Reservation:
        if await self.submit(_Claim(organisation_id, scope, key, fingerprint, now, ttl)):
            return Reserved()
        return await reserve(
            self._sessions,
            organisation_id=organisation_id,
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            now=now,
            ttl=ttl,
        )

    async def _abandoned(self, item: _Claim, result: bool) -> None:
        if result:  # claimed for a request that is gone: free the key for its retry
            await release(
                self._sessions, organisation_id=item.organisation_id, scope=item.scope, key=item.key
            )

    async def _run(self, items: list[_Claim]) -> list[bool]:
        # The same key twice in one batch: only its first claim is tried here; the later ones
        # take the full path after this batch committed (in flight or mismatch, as before). A key
        # already stored, even an expired one, conflicts and takes the full path (which deletes
        # an expired key first), so no DELETE is needed here.
        first: dict[tuple[str, str, str], _Claim] = {}
        for c in items:
            first.setdefault((c.organisation_id, c.scope, c.key), c)
        async with self._sessions() as session, session.begin():
            claim = _CLAIM[session.get_bind().dialect.name == "postgresql"]
            rows = await session.execute(claim, [_new_key(c) for c in first.values()])
            claimed = {(r.organisation_id, r.scope, r.key) for r in rows}
        return [
            key in claimed and first[key] is c
            for c in items
            for key in [(c.organisation_id, c.scope, c.key)]
        ]


def _new_key(claim: _Claim) -> dict[str, Any]:
    return {
        "organisation_id": claim.organisation_id,
        "scope": claim.scope,
        "key": claim.key,
        "fingerprint": claim.fingerprint,
        "state": "in_flight",
        "response_status": None,
        "response_body": None,
        "created_at": claim.now,
        "expires_at": claim.now + claim.ttl,
    }


def complete_params(
    *, organisation_id: str, scope: str, key: str, status: int, body: dict[str, Any]
) -> dict[str, Any]:
    """Parameters of ``COMPLETE``: the key's final response, committed with the order."""
    return {**_key(organisation_id, scope, key), "k_status": status, "k_body": body}


async def release(
    sessions: async_sessionmaker[AsyncSession], *, organisation_id: str, scope: str, key: str
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(_RELEASE, _key(organisation_id, scope, key))


async def purge_expired(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> int:
    """Drop keys past their retention (they are also replaced lazily when reused)."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.expires_at < now)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
