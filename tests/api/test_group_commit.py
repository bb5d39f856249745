"""Group commit (persistence/group_insert.py): concurrent requests share a transaction, yet each
keeps its own outcome: committed before its await returns, failing alone, and never half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Awaitable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.persistence.audit import audit_values
from service.persistence.database import create_engine, session_factory
from service.persistence.group_insert import GroupInserter, Staging
from service.persistence.idempotency import Replay, Reservation, Reservations, Reserved
from service.persistence.models import AuditRecord, Base, Organisation, StoredRecommendation
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import new_key, order_body, tenant


def _staged(org: str, marker: str) -> Staging:
    now = dt.datetime.now(dt.UTC)
    staged = Staging()
    staged.insert(
        StoredRecommendation,
        {
            "id": str(uuid.uuid4()),
            "organisation_id": org,
            "created_at": now,
            "catalog_version": "v",
            "context": {"m": marker},
            "result": {"m": marker},
        },
    )
    staged.insert(
        AuditRecord,
        audit_values(
            principal=None,
            action="recommendation.create",
            object_type="recommendation",
            object_id=marker,
            patient_reference=None,
            outcome="success",
            now=now,
            organisation_id=org,
        ),
    )
    return staged


async def _count(sessions: async_sessionmaker[AsyncSession], model: type[Base]) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_one_bad_request_fails_alone_and_writes_nothing(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            session.add(Organisation(id="org-1", name="one", created_at=dt.datetime.now(dt.UTC)))
        inserter = GroupInserter(sessions)
        results = await asyncio.gather(
            *(inserter.commit(_staged("org-1", f"ok-{i}")) for i in range(10)),
            inserter.commit(_staged("no-such-org", "bad")),  # foreign key violation
            return_exceptions=True,
        )
        assert all(r is None for r in results[:10])
        assert isinstance(results[10], Exception)
        assert await _count(sessions, StoredRecommendation) == 10
        assert await _count(sessions, AuditRecord) == 10, "the bad request's audit row is gone too"
    finally:
        await engine.dispose()


async def test_a_cancelled_caller_returns_only_after_its_batch_settled(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            session.add(Organisation(id="org-1", name="one", created_at=dt.datetime.now(dt.UTC)))
        inserter = GroupInserter(sessions)
        task = asyncio.create_task(inserter.commit(_staged("org-1", "gone")))
        await asyncio.sleep(0)  # the batch has started
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await _count(sessions, StoredRecommendation) == 1, "committed before it returned"
    finally:
        await engine.dispose()


async def test_reservations_claim_new_keys_together_and_route_known_ones(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        now = dt.datetime.now(dt.UTC)
        async with sessions() as session, session.begin():
            session.add(Organisation(id="org-1", name="one", created_at=now))
        reservations = Reservations(sessions)
        ttl = dt.timedelta(hours=1)

        def claim(key: str, fingerprint: str = "f") -> Awaitable[Reservation]:
            return reservations.reserve(
                organisation_id="org-1",
                scope="s",
                key=key,
                fingerprint=fingerprint,
                now=now,
                ttl=ttl,
            )

        first = await asyncio.gather(*(claim(f"k{i}") for i in range(20)), claim("k0"))
        assert first[:20] == [Reserved()] * 20
        assert type(first[20]).__name__ == "InProgress", "the same key twice: one is in flight"
        assert type(await claim("k1", "other")).__name__ == "Mismatch"
        assert not isinstance(await claim("k2"), Replay)
        expired = await reservations.reserve(
            organisation_id="org-1",
            scope="s",
            key="k3",
            fingerprint="x",
            now=now + 2 * ttl,
            ttl=ttl,
        )
        assert expired == Reserved(), "a key past its retention is claimed anew"
    finally:
        await engine.dispose()


async def test_the_201_body_is_what_a_read_of_the_stored_order_returns(database_url: str) -> None:
    """The intake answer is built from the request (orders.new_order_out), not read back: it
    must equal what GET /v1/orders/{id} (usecases.orders.order_out of the row) says."""
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        key = await tenant(container)
        bodies = [
            order_body(),
            order_body(
                panel_ids=["hepatic-function-panel", "hs-crp", "urine-drug-screen"],
                conditions=[],
                notes="Fasting sample, please.",
            ),
        ]
        for body in bodies:
            created = await client.post(
                "/v1/orders", json=body, headers={**new_key(), "X-API-Key": key}
            )
            assert created.status_code == 201, created.text
            read = await client.get(
                f"/v1/orders/{created.json()['id']}", headers={"X-API-Key": key}
            )
            assert read.json() == created.json()
