"""Orders reach the lab exactly once in effect, whatever fails on the way (real sandbox lab over
loopback, real databases): injected 503s, timeouts and dropped responses; a worker killed with
SIGKILL mid-dispatch; two workers on one PostgreSQL outbox.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from pathlib import Path

import httpx
import msgspec

from service.container import build_container
from service.labs.webhooks import new_secret
from service.usecases.dto import OrderRequest
from service.worker import build_dispatcher
from tests.conftest import make_settings
from tests.support.builders import order_body
from tests.support.processes import sandbox_lab, worker

SECRET = new_secret()


async def _place_orders(container, count: int) -> list[str]:
    from service.domain.principal import Principal
    from service.persistence.organisations import create_api_key, create_organisation

    now = dt.datetime.now(dt.UTC)
    async with container.sessions() as session, session.begin():
        org = await create_organisation(session, f"org-{random.random()}", now)
        await create_api_key(session, org.id, now)
    principal = Principal(organisation_id=org.id, actor="test", role="integration")
    request = msgspec.convert(order_body(), OrderRequest)
    ids = []
    for i in range(count):
        result = await container.orders.place(principal, f"key-{i}", request)
        ids.append(result.body["id"])
    return ids


async def _statuses(container, ids: list[str]) -> dict[str, str]:
    from sqlalchemy import select

    from service.persistence.models import Order

    async with container.sessions() as session:
        rows = await session.execute(select(Order.id, Order.status).where(Order.id.in_(ids)))
        return dict(rows.all())


def _lab_stats(base: str) -> dict[str, int]:
    return httpx.get(f"{base}/_sandbox/stats", timeout=10).json()


def _lab_view(base: str) -> dict[str, dict]:
    return {o["order_id"]: o for o in httpx.get(f"{base}/_sandbox/orders", timeout=10).json()}


def _worker_env(database_url: str, lab: str, **dispatch: str) -> dict[str, str]:
    """Environment of a ``labrec worker`` process; ``dispatch`` sets LABREC_DISPATCH_*."""
    return {
        "LABREC_DATABASE_URL": database_url,
        "LABREC_LAB_BASE_URL": lab,
        "LABREC_LAB_WEBHOOK_SECRET": SECRET,
        "LABREC_DEMO": "false",
        **{f"LABREC_DISPATCH_{name}": value for name, value in dispatch.items()},
    }


def _settings(database_url: str, lab: str, **overrides: object):
    return make_settings(
        database_url,
        lab_base_url=lab,
        lab_webhook_secret=SECRET,
        lab_read_timeout=0.5,
        lab_connect_timeout=0.5,
        dispatch_max_attempts=50,
        **overrides,
    )


async def test_500_orders_through_a_lab_failing_30_percent(
    database_url: str, tmp_path: Path
) -> None:
    with sandbox_lab(
        tmp_path,
        error_rate="0.1",
        timeout_rate="0.1",
        drop_rate="0.1",
        hang_seconds="1.5",
        seed="7",
    ) as lab:
        container = build_container(_settings(database_url, lab))
        try:
            ids = await _place_orders(container, 500)
            dispatcher = build_dispatcher(container)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                statuses = await _statuses(container, ids)
                if all(s == "submitted" for s in statuses.values()):
                    break
                if await dispatcher.run_once() == 0:
                    await asyncio.sleep(0.05)
            statuses = await _statuses(container, ids)
        finally:
            await container.aclose()
        stats = _lab_stats(lab)
        view = _lab_view(lab)
    assert sorted(statuses.values()) == ["submitted"] * 500, "every order reached the lab"
    assert set(view) == set(ids), "the lab knows exactly our orders"
    assert {o["accepted_count"] for o in view.values()} == {1}, "no order accepted twice"
    assert stats["injected_errors"] and stats["injected_timeouts"] and stats["injected_drops"]
    assert stats["submissions_received"] > 500, "faults forced resends"


async def test_worker_killed_mid_dispatch_loses_and_doubles_nothing(
    database_url: str, tmp_path: Path
) -> None:
    with sandbox_lab(tmp_path, latency_ms="150") as lab:
        container = build_container(_settings(database_url, lab))
        try:
            ids = await _place_orders(container, 120)
            env = _worker_env(
                database_url, lab, LEASE_SECONDS="1", POLL_INTERVAL="0.05", BACKOFF_BASE="0.05"
            )
            with worker(tmp_path, env, "first") as first:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    done = sum(s == "submitted" for s in (await _statuses(container, ids)).values())
                    if done >= 20:
                        break
                    await asyncio.sleep(0.05)
                first.kill()
            killed_at = sum(s == "submitted" for s in (await _statuses(container, ids)).values())
            assert killed_at < len(ids), "the kill happened mid-way"
            with worker(tmp_path, env, "second"):
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    statuses = await _statuses(container, ids)
                    if all(s == "submitted" for s in statuses.values()):
                        break
                    await asyncio.sleep(0.2)
        finally:
            await container.aclose()
        view = _lab_view(lab)
    assert sorted(statuses.values()) == ["submitted"] * len(ids)
    assert set(view) == set(ids)
    assert {o["accepted_count"] for o in view.values()} == {1}


async def test_two_workers_on_postgres_never_send_an_order_twice(
    postgres_url: str, tmp_path: Path
) -> None:
    database_url = postgres_url
    with sandbox_lab(tmp_path, latency_ms="20") as lab:
        container = build_container(_settings(database_url, lab))
        try:
            ids = await _place_orders(container, 300)
            env = _worker_env(database_url, lab, POLL_INTERVAL="0.02")
            with worker(tmp_path, env, "a"), worker(tmp_path, env, "b"):
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    statuses = await _statuses(container, ids)
                    if all(s == "submitted" for s in statuses.values()):
                        break
                    await asyncio.sleep(0.2)
        finally:
            await container.aclose()
        view = _lab_view(lab)
        stats = _lab_stats(lab)
    assert sorted(statuses.values()) == ["submitted"] * len(ids)
    assert {o["accepted_count"] for o in view.values()} == {1}
    assert stats["submissions_received"] == len(ids), "no claim overlapped: every order sent once"
