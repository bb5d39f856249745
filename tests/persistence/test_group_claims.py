"""Claims in group commit (persistence/group_insert.py ``Staging.claim``): a staging's writes
commit only if its claimed row is new, decided by the database's uniqueness, so the same key is
won exactly once however the calls are batched and however many processes race for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.persistence.audit import audit_values
from service.persistence.cds import stage_jti_claim
from service.persistence.database import create_engine, session_factory
from service.persistence.group_insert import GroupInserter, Staging
from service.persistence.models import AuditRecord, Organisation

EXPIRES = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


def _claiming(jti: str, marker: str) -> Staging:
    """Claim token id ``jti`` and, with it, write one audit row named ``marker``."""
    staged = Staging()
    stage_jti_claim(staged, "https://ehr.example.org", jti, EXPIRES)
    staged.insert(
        AuditRecord,
        audit_values(
            principal=None,
            action="test.claim",
            object_type="token",
            object_id=marker,
            patient_reference=None,
            outcome="success",
            now=dt.datetime.now(dt.UTC),
            organisation_id="org-1",
        ),
    )
    return staged


async def _markers(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(AuditRecord.object_id).where(AuditRecord.action == "test.claim")
        )
        return sorted(str(marker) for (marker,) in rows)


async def _setup(database_url: str) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        session.add(Organisation(id="org-1", name="one", created_at=dt.datetime.now(dt.UTC)))
    return engine, sessions


async def test_a_claim_is_won_once_within_and_across_batches(database_url: str) -> None:
    engine, sessions = await _setup(database_url)
    try:
        writer = GroupInserter(sessions)
        first = await asyncio.gather(
            *(writer.claim_and_commit(_claiming(f"t{i}", f"t{i}")) for i in range(20)),
            writer.claim_and_commit(_claiming("t3", "t3-again-same-batch")),
        )
        assert first == [True] * 20 + [False], "the same key later in one batch loses"
        later = await asyncio.gather(
            writer.claim_and_commit(_claiming("t5", "t5-replayed")),
            writer.claim_and_commit(_claiming("fresh", "fresh")),
        )
        assert later == [False, True]
        assert await _markers(sessions) == sorted([f"t{i}" for i in range(20)] + ["fresh"]), (
            "a lost claim writes nothing of its staging"
        )
        # Plain commits (no claim) share the batches and are unaffected.
        plain = Staging()
        plain.writes.extend(_claiming("unused", "plain").writes)
        assert await writer.claim_and_commit(plain) is True
        assert "plain" in await _markers(sessions)
    finally:
        await engine.dispose()


async def test_racing_processes_win_each_key_exactly_once(database_url: str) -> None:
    """Two writers with their own connection pools (as two processes) claim the same keys."""
    engine, sessions = await _setup(database_url)
    other_engine = create_engine(database_url)
    try:
        writers = [GroupInserter(sessions), GroupInserter(session_factory(other_engine))]
        keys = [f"k{i}" for i in range(40)]
        results = await asyncio.gather(
            *(
                writer.claim_and_commit(_claiming(key, f"{key}-by-{n}"))
                for key in keys
                for n, writer in enumerate(writers)
            )
        )
        assert sum(results) == len(keys)
        markers = await _markers(sessions)
        assert sorted(marker.split("-by-")[0] for marker in markers) == sorted(keys)
    finally:
        await other_engine.dispose()
        await engine.dispose()
