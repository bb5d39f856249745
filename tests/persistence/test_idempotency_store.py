"""The idempotency key store on both databases: reservation, replay, mismatch, in-flight,
takeover of a stale reservation (crashed request), release, expiry."""

from __future__ import annotations

import datetime as dt

import pytest

from service.persistence import idempotency
from service.persistence.database import create_engine, session_factory
from service.persistence.organisations import create_organisation

T0 = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=72)


@pytest.fixture
async def store(database_url: str):
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        org = await create_organisation(session, "o", T0)
    yield sessions, org.id
    await engine.dispose()


async def _reserve(sessions, org: str, key: str, fingerprint: str, now: dt.datetime):
    return await idempotency.reserve(
        sessions,
        organisation_id=org,
        scope="s",
        key=key,
        fingerprint=fingerprint,
        now=now,
        ttl=TTL,
    )


async def test_lifecycle(store) -> None:
    sessions, org = store
    assert isinstance(await _reserve(sessions, org, "k", "f1", T0), idempotency.Reserved)
    assert isinstance(await _reserve(sessions, org, "k", "f1", T0), idempotency.InProgress)
    assert isinstance(await _reserve(sessions, org, "k", "f2", T0), idempotency.Mismatch)
    async with sessions() as session, session.begin():
        await session.execute(
            idempotency.COMPLETE,
            idempotency.complete_params(
                organisation_id=org, scope="s", key="k", status=201, body={"id": "x"}
            ),
        )
    replay = await _reserve(sessions, org, "k", "f1", T0)
    assert replay == idempotency.Replay(status=201, body={"id": "x"})


async def test_stale_reservation_is_taken_over_and_release_frees_the_key(store) -> None:
    sessions, org = store
    await _reserve(sessions, org, "k", "f1", T0)
    later = T0 + idempotency.STALE_AFTER + dt.timedelta(seconds=1)
    assert isinstance(await _reserve(sessions, org, "k", "f1", later), idempotency.Reserved)
    await idempotency.release(sessions, organisation_id=org, scope="s", key="k")
    assert isinstance(await _reserve(sessions, org, "k", "f2", later), idempotency.Reserved)


async def test_expired_keys_are_purged_and_reusable(store) -> None:
    sessions, org = store
    await _reserve(sessions, org, "old", "f1", T0)
    await _reserve(sessions, org, "new", "f1", T0 + TTL)
    assert await idempotency.purge_expired(sessions, T0 + TTL + dt.timedelta(minutes=1)) == 1
    reused = await _reserve(sessions, org, "old", "other", T0 + TTL + dt.timedelta(minutes=2))
    assert isinstance(reused, idempotency.Reserved)
