"""Scale-out on PostgreSQL: two ``labrec serve`` processes (no in-process dispatcher) and two
``labrec worker``s share one database and one sandbox lab. 1,000 orders POSTed over HTTP, spread
over both servers, each reach the lab exactly once and all end ``submitted``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import func, select

from service.container import build_container
from service.labs.webhooks import new_secret
from service.persistence.models import Order
from tests.conftest import make_settings
from tests.support.builders import order_body, tenant
from tests.support.processes import labrec_server, sandbox_lab, worker

ORDERS = 1000
CONCURRENCY = 32


async def _post_all(bases: list[str], key: str) -> dict[str, list[str]]:
    """POST the orders round-robin over ``bases``; returns the order ids per server."""
    per_server: dict[str, list[str]] = {base: [] for base in bases}
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=30) as client:

        async def place(i: int) -> None:
            base = bases[i % len(bases)]
            body = order_body(patient={**order_body()["patient"], "reference": f"ehr-{i}"})
            async with limit:
                response = await client.post(
                    f"{base}/v1/orders",
                    json=body,
                    headers={"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex},
                )
            assert response.status_code == 201, response.text
            per_server[base].append(response.json()["id"])

        await asyncio.gather(*(place(i) for i in range(ORDERS)))
    return per_server


async def test_two_servers_two_workers_every_order_reaches_the_lab_once(
    postgres_url: str, tmp_path: Path
) -> None:
    secret = new_secret()
    container = build_container(make_settings(postgres_url))
    try:
        key = await tenant(container)
        with sandbox_lab(tmp_path) as lab:
            env = {
                "LABREC_DATABASE_URL": postgres_url,
                "LABREC_LAB_BASE_URL": lab,
                "LABREC_LAB_WEBHOOK_SECRET": secret,
                "LABREC_DEMO": "false",
                "LABREC_DISPATCH_IN_PROCESS": "false",
                "LABREC_DISPATCH_POLL_INTERVAL": "0.05",
                "LABREC_RATE_LIMIT_PER_SECOND": "100000",
                "LABREC_RATE_LIMIT_BURST": "100000",
                "LABREC_LOG_LEVEL": "WARNING",
            }
            with (
                labrec_server(tmp_path, env, "serve-a") as a,
                labrec_server(tmp_path, env, "serve-b") as b,
                worker(tmp_path, env, "worker-a"),
                worker(tmp_path, env, "worker-b"),
            ):
                per_server = await _post_all([a, b], key)
                ids = [order_id for taken in per_server.values() for order_id in taken]
                deadline = time.monotonic() + 45
                submitted = 0
                while time.monotonic() < deadline:
                    async with container.sessions() as session:
                        submitted = (
                            await session.execute(
                                select(func.count())
                                .select_from(Order)
                                .where(Order.status == "submitted")
                            )
                        ).scalar_one()
                    if submitted == ORDERS:
                        break
                    await asyncio.sleep(0.25)
            async with container.sessions() as session:
                statuses = dict((await session.execute(select(Order.id, Order.status))).all())
            async with httpx.AsyncClient(timeout=10) as client:
                view = {
                    o["order_id"]: o for o in (await client.get(f"{lab}/_sandbox/orders")).json()
                }
                stats = (await client.get(f"{lab}/_sandbox/stats")).json()
    finally:
        await container.aclose()

    assert {base: len(taken) for base, taken in per_server.items()} == {
        a: ORDERS // 2,
        b: ORDERS // 2,
    }, "both servers took orders"
    assert len(set(ids)) == ORDERS
    assert set(statuses) == set(ids), "every 201 is an order in the shared database"
    assert sorted(statuses.values()) == ["submitted"] * ORDERS, "every order ends submitted"
    assert set(view) == set(ids), "the lab knows exactly our orders"
    assert {o["accepted_count"] for o in view.values()} == {1}, "no order accepted twice"
    assert stats["submissions_received"] == ORDERS, "no order sent twice by the two workers"
    assert not (stats["injected_errors"] or stats["injected_timeouts"] or stats["injected_drops"])
