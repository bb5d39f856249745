"""Requests without a valid API key: limited per client address, audited as bounded aggregates.

300 refused requests once wrote 300 undeletable audit rows. Now each address has a refusal budget
(429 with Retry-After beyond it, decided before any database work) and refusals are written as
one row per address, minute and outcome carrying a count. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event, select

from service.persistence.models import AuditRecord
from service.persistence.refusals import client_key
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import tenant
from tests.ui.conftest import MovableClock

BUDGET = 60  # LABREC_AUTH_REFUSALS_PER_MINUTE's default: the burst an address may spend
REQUESTS = 300


async def _refusal_rows(container: Any) -> list[AuditRecord]:
    async with container.sessions() as session:
        query = select(AuditRecord).where(AuditRecord.action.in_(["auth.refused", "auth.denied"]))
        return list((await session.execute(query.order_by(AuditRecord.id))).scalars())


@pytest.fixture
async def app(database_url: str):
    settings = make_settings(database_url, api_key_cache_seconds=600)
    async with running_app(settings, run_worker=False) as (client, container):
        yield client, container


async def test_300_bad_keys_are_limited_and_audited_in_a_few_rows(app) -> None:
    client, container = app
    good = await tenant(container)
    assert (await client.get("/v1/orders", headers={"X-API-Key": good})).status_code == 200
    headers = [{"X-API-Key": f"lrk_guess{i}"} if i % 3 else {} for i in range(REQUESTS)]
    statuses: Counter[int] = Counter()
    for chunk in range(0, REQUESTS, 50):  # concurrent, as a flood would be
        responses = await asyncio.gather(
            *(client.get("/v1/orders", headers=h) for h in headers[chunk : chunk + 50])
        )
        for response in responses:
            statuses[response.status_code] += 1
            assert response.headers["content-type"].startswith("application/problem+json")
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
    assert statuses == Counter({401: BUDGET, 429: REQUESTS - BUDGET})
    # A key this process already knows as valid still works from the same address.
    assert (await client.get("/v1/orders", headers={"X-API-Key": good})).status_code == 200
    await container.refusals.flush(everything=True)
    rows = await _refusal_rows(container)
    assert len(rows) <= 4  # per outcome, at most two minutes if the burst crossed one
    assert {r.action for r in rows} == {"auth.refused"}
    assert {r.object_id for r in rows} == {"127.0.0.1"}
    totals: Counter[str] = Counter()
    for row in rows:
        totals[row.outcome] += row.count
        assert row.organisation_id is None and row.actor == "anonymous"
        assert row.at.second == 0 and row.at.microsecond == 0
    assert totals == Counter({"unauthenticated": BUDGET, "rate_limited": REQUESTS - BUDGET})


async def test_over_budget_refusals_do_no_database_work(app) -> None:
    client, container = app
    for i in range(BUDGET):
        await client.get("/v1/orders", headers={"X-API-Key": f"lrk_guess{i}"})
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(container.engine.sync_engine, "before_cursor_execute", count)
    try:
        for i in range(50):
            response = await client.get("/v1/orders", headers={"X-API-Key": f"lrk_more{i}"})
            assert response.status_code == 429
    finally:
        event.remove(container.engine.sync_engine, "before_cursor_execute", count)
    assert statements == []


async def test_each_finished_minute_becomes_its_own_row(database_url: str) -> None:
    clock = MovableClock()
    clock.now = clock.now.replace(second=5)
    settings = make_settings(database_url)
    async with running_app(settings, run_worker=False, clock=clock) as (client, container):
        for _ in range(3):
            await client.get("/v1/orders", headers={"X-API-Key": "lrk_wrong"})
        clock.advance(minutes=1)
        for _ in range(2):
            await client.get("/v1/orders")
        for _ in range(100):  # the first minute is written in the background meanwhile
            if await _refusal_rows(container):
                break
            await asyncio.sleep(0.02)
        first = await _refusal_rows(container)
        assert [(r.count, r.outcome) for r in first] == [(3, "unauthenticated")]
    # Shutting down writes the minute in progress.
    async with running_app(settings, run_worker=False) as (_, container):
        rows = await _refusal_rows(container)
    assert [r.count for r in rows] == [3, 2]
    assert rows[1].at - rows[0].at == dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # same /64: one host, one budget
        ("::ffff:198.51.100.7", "198.51.100.7"),
        (None, "unknown"),
        ("testclient", "unknown"),
    ],
)
def test_client_key(host: str | None, key: str) -> None:
    assert client_key(host) == key


async def test_operators_list_refusals_with_the_cli(database_url: str, monkeypatch, capsys) -> None:
    from service.cli import main

    async with running_app(make_settings(database_url), run_worker=False) as (client, _):
        for _ in range(4):
            await client.get("/v1/orders", headers={"X-API-Key": "lrk_wrong"})
    monkeypatch.setenv("LABREC_DATABASE_URL", database_url)
    capsys.readouterr()  # only the command's own output below (the app prints its sandbox token)
    assert await asyncio.to_thread(main, ["audit", "refusals", "--minutes", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[1].split()[-3:] == ["127.0.0.1", "unauthenticated", "4"]
