"""The per-process API-key cache: how long a revoked key can keep working, and what is never cached.

Bound (persistence/key_cache.py): a key revoked through this process stops at once; revoked in
another process (simulated here by a plain UPDATE that no ORM event sees), it works for at most
``LABREC_API_KEY_CACHE_SECONDS`` more.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.persistence.database import create_engine, session_factory
from service.persistence.key_cache import ApiKeyCache
from service.persistence.models import ApiKey
from service.persistence.organisations import create_api_key, create_organisation, hash_key
from service.settings import load_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _org_with_key(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    now = dt.datetime.now(dt.UTC)
    async with sessions() as session, session.begin():
        org = await create_organisation(session, "org-cache", now)
        row, raw = await create_api_key(session, org.id, now)
    return row.id, raw


async def test_revoked_elsewhere_works_at_most_ttl_seconds(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    clock = FakeClock()
    cache = ApiKeyCache(sessions, ttl=5.0, clock=clock)
    try:
        key_id, raw = await _org_with_key(sessions)
        assert (await cache.find(raw)) is not None
        async with engine.begin() as conn:  # another process revokes: no ORM event here
            await conn.execute(
                update(ApiKey.__table__)
                .where(ApiKey.__table__.c.id == key_id)
                .values(revoked_at=dt.datetime.now(dt.UTC))
            )
        clock.now += 4.9
        assert (await cache.find(raw)) is not None, "within the bound it may still work"
        clock.now += 0.2
        assert (await cache.find(raw)) is None, "past the bound it never works"
    finally:
        await engine.dispose()


async def test_revoked_through_this_process_stops_at_once(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    cache = ApiKeyCache(sessions, ttl=3600.0, clock=FakeClock())
    try:
        key_id, raw = await _org_with_key(sessions)
        assert (await cache.find(raw)) is not None
        async with sessions() as session, session.begin():
            row = await session.get(ApiKey, key_id)
            assert row is not None
            row.revoked_at = dt.datetime.now(dt.UTC)
        assert (await cache.find(raw)) is None
    finally:
        await engine.dispose()


async def test_unknown_keys_are_not_cached_and_ttl_zero_caches_nothing(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    cache = ApiKeyCache(sessions, ttl=0.0, clock=FakeClock())
    try:
        assert (await cache.find("lrk_unknown")) is None
        _, raw = await _org_with_key(sessions)
        assert (await cache.find(raw)) is not None
        async with engine.begin() as conn:
            await conn.execute(
                update(ApiKey.__table__)
                .where(ApiKey.__table__.c.key_hash == hash_key(raw))
                .values(revoked_at=dt.datetime.now(dt.UTC))
            )
        assert (await cache.find(raw)) is None, "ttl 0: every request reads the database"
    finally:
        await engine.dispose()


def test_settings_parse_the_cache_ttl_and_a_catalog_dir(tmp_path: Path) -> None:
    settings = load_settings(
        {"LABREC_API_KEY_CACHE_SECONDS": "2.5", "LABREC_CATALOG_DIR": str(tmp_path)}
    )
    assert settings.api_key_cache_seconds == 2.5
    assert settings.catalog_dir == tmp_path
