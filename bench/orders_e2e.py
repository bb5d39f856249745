"""(g) Orders end to end (issue 3's closing figures): intake rate with the dispatcher running, and
the time from ``201 Created`` to ``submitted`` at the sandbox lab.

Per backend: the sandbox lab (``labrec sandbox-lab``, LABREC_SANDBOX_STEP_DELAY=0, no faults), and
- SQLite: ``labrec serve`` (1 worker) with the in-process dispatcher;
- PostgreSQL: ``labrec serve --workers 2`` (dispatch off) and one ``labrec worker``.
Phase 1 drives ``POST /v1/orders`` with wrk (unique Idempotency-Keys) and then waits for the
backlog to drain. Phase 2 paces 50 orders/s for 5 s from a small async client, so the latency
shows the dispatcher when it is not behind. Times come from the database: an order's
``created_at`` (set just before the 201 commits) to its ``accepted`` submit attempt.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.procs import LABREC, Proc, clean_env, create_tenant, free_port, running
from service.persistence.models import Order, OrderAttempt

if TYPE_CHECKING:
    from bench.run import Bench

DRAIN_TIMEOUT = 90.0
#: Intake is measured over a shorter run than the others: the dispatcher then drains the backlog.
LOAD_SECONDS = 5.0


async def _latencies(
    url: str, ids: list[str] | None = None
) -> tuple[list[tuple[dt.datetime, dt.datetime]], int, int]:
    """(created, accepted by the lab) per submitted order; and (orders, still queued)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            query = (
                select(Order.created_at, func.min(OrderAttempt.at))
                .join(OrderAttempt, OrderAttempt.order_id == Order.id)
                .where(OrderAttempt.kind == "submit", OrderAttempt.outcome == "accepted")
                .group_by(Order.id, Order.created_at)
            )
            total_q = select(func.count()).select_from(Order)
            queued_q = select(func.count()).select_from(Order).where(Order.status == "queued")
            if ids is not None:
                query = query.where(Order.id.in_(ids))
                total_q = total_q.where(Order.id.in_(ids))
                queued_q = queued_q.where(Order.id.in_(ids))
            rows = (await conn.execute(query)).all()
            total = (await conn.execute(total_q)).scalar_one()
            queued = (await conn.execute(queued_q)).scalar_one()
    finally:
        await engine.dispose()
    return [(created, accepted) for created, accepted in rows], total, queued


async def _wait_drained(url: str, ids: list[str] | None = None) -> float:
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT:
        _, total, queued = await _latencies(url, ids)
        if total and not queued:
            break
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def _paced(base: str, key: str, body: str, rate: float, seconds: float) -> list[str]:
    ids: list[str] = []
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def one() -> None:
            r = await client.post(
                "/v1/orders",
                content=body,
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            if r.status_code == 201:
                ids.append(r.json()["id"])

        tasks = []
        started = time.monotonic()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return ids


def _seconds(pairs: list[tuple[dt.datetime, dt.datetime]]) -> list[float]:
    return [(accepted - created).total_seconds() for created, accepted in pairs]


def _dispatch_rate(pairs: list[tuple[dt.datetime, dt.datetime]]) -> float:
    """Orders the lab accepted per second, first to last acceptance."""
    if len(pairs) < 2:
        return float("nan")
    accepted = sorted(a for _, a in pairs)
    return len(accepted) / max(1e-6, (accepted[-1] - accepted[0]).total_seconds())


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _settled_rss(proc: Proc) -> list[float]:
    """RSS of a just-started ``labrec worker`` once it has imported everything and polls."""
    time.sleep(3.0)
    return proc.worker_rss_mib()


def run_backend(bench: Bench, name: str, url: str, workers: int) -> dict[str, Any]:
    out = bench.out
    lab_port = free_port()
    lab_env = clean_env(LABREC_SANDBOX_STEP_DELAY="0")
    lab = f"http://127.0.0.1:{lab_port}"
    sqlite = url.startswith("sqlite")
    with running(
        [*LABREC, "sandbox-lab", "--port", str(lab_port)],
        lab_env,
        out / f"sandbox-{name}.log",
        f"{lab}/_sandbox/stats",
    ):
        env = bench.labrec_env(
            url, LABREC_LAB_BASE_URL=lab, LABREC_DISPATCH_IN_PROCESS="true" if sqlite else "false"
        )
        key = create_tenant(env)
        worker_env = {**env, "LABREC_DISPATCH_IN_PROCESS": "true"}
        with bench.labrec(env, workers, f"e2e-{name}") as base:
            worker = (
                None
                if sqlite
                else running([*LABREC, "worker"], worker_env, out / f"worker-{name}.log", lab)
            )
            worker_proc = worker.__enter__() if worker is not None else None
            worker_idle = _settled_rss(worker_proc) if worker_proc is not None else []
            try:
                load = bench.wrk(
                    f"(g) POST /v1/orders {name}, dispatcher on",
                    base,
                    "orders.lua",
                    [str(bench.order_file), key, f"g{uuid.uuid4().hex[:8]}"],
                    connections=32,
                    duration=LOAD_SECONDS,
                )
                drain = asyncio.run(_wait_drained(url))
                loaded, total, queued = asyncio.run(_latencies(url))
                body = bench.order_file.read_text().splitlines()[0]
                ids = asyncio.run(_paced(base, key, body, rate=50, seconds=5))
                asyncio.run(_wait_drained(url, ids))
                paced, _, _ = asyncio.run(_latencies(url, ids))
                if worker_proc is not None:
                    bench.memory.append(
                        (f"`labrec worker` e2e-{name}", worker_idle, worker_proc.worker_rss_mib())
                    )
            finally:
                if worker is not None:
                    worker.__exit__(None, None, None)
        stats = httpx.get(f"{lab}/_sandbox/stats", timeout=10).json()
    return {
        "backend": name,
        "accepted_per_s": load.rps,
        "orders": total,
        "left_queued": queued,
        "drain_s": round(drain, 1),
        "dispatched_per_s": _dispatch_rate(loaded),
        "loaded_p50_s": _pct(_seconds(loaded), 0.5),
        "loaded_p99_s": _pct(_seconds(loaded), 0.99),
        "paced_orders": len(ids),
        "paced_p50_s": _pct(_seconds(paced), 0.5),
        "paced_p99_s": _pct(_seconds(paced), 0.99),
        "lab_submissions": stats.get("submissions_received"),
    }


def run_end_to_end(bench: Bench) -> dict[str, Any]:
    rows = [
        run_backend(bench, "SQLite", bench.sqlite_url("e2e"), 1),
        run_backend(bench, "PostgreSQL", bench.postgres_url(), 2),
    ]
    lines = [
        "(g) orders end to end with the sandbox lab (step delay 0) and the dispatcher "
        "(SQLite: in-process, 1 API worker; PostgreSQL: 2 API workers + 1 `labrec worker`); "
        "201 → submitted from the database",
        f"| backend | accepted/s (wrk -c32 {LOAD_SECONDS:g} s, dispatcher on) | orders "
        "| drained after | dispatched/s | 201→submitted p50 / p99 under that load "
        "| paced 50/s: p50 / p99 | lab submissions |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['accepted_per_s']:,.0f} | {r['orders']} "
            f"(queued left: {r['left_queued']}) | {r['drain_s']} s "
            f"| {r['dispatched_per_s']:.0f} "
            f"| {r['loaded_p50_s']:.2f} s / {r['loaded_p99_s']:.2f} s "
            f"| {r['paced_p50_s'] * 1000:.0f} ms / {r['paced_p99_s'] * 1000:.0f} ms "
            f"| {r['lab_submissions']} |"
        )
    return {"rows": rows, "text": "\n".join(lines)}
