"""(h) The dispatcher alone (issue 15): orders/s one ``labrec worker`` hands to a lab.

Per backend (SQLite, PostgreSQL) and lab:
- ``faults``: 200 orders through a sandbox lab where 10% of calls are processed and then answered
  12 s late, 10% answer 503 with ``Retry-After: 1`` and 10% are processed and their answer lost
  (dropped connection); default timeouts (read 15 s). Target: all submitted within 45 s, each
  accepted by the lab exactly once.
- ``healthy``: 3,000 orders through a sandbox lab answering after 20 ms. Target: >= 300 orders/s
  per worker on PostgreSQL.

The orders are placed in the database first (in-process, through ``OrderService.place``), then one
``labrec worker`` is started and the clock runs until every order is ``submitted`` (or a time
limit). "orders/s" is orders over the span from the worker's start to the last acceptance; the
lab's own counters prove each order was accepted once.

``.venv/bin/python -m bench.dispatch_flow [--only faults,healthy] [--backends sqlite,postgres]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
from sqlalchemy import func, select

from bench.contexts import order_bodies
from bench.procs import (
    DEFAULT_PG,
    LABREC,
    RESULTS,
    SECRET,
    Proc,
    clean_env,
    free_port,
    labrec_cli,
    recreate_postgres_database,
    running,
)

BENCH_DB = "labrec_bench_dispatch"

SCENARIOS: dict[str, dict[str, Any]] = {
    "faults": {
        "orders": 200,
        "limit_s": 150.0,
        "lab": {
            "ERROR_RATE": "0.1",
            "TIMEOUT_RATE": "0.1",
            "DROP_RATE": "0.1",
            "HANG_SECONDS": "12",
            "RETRY_AFTER": "seconds",
            "SEED": "15",
        },
    },
    "healthy": {"orders": 3000, "limit_s": 120.0, "lab": {"LATENCY_MS": "20"}},
}


async def _place(url: str, count: int) -> list[str]:
    from service.container import build_container
    from service.domain.principal import Principal
    from service.persistence.organisations import create_organisation
    from service.settings import Settings
    from service.usecases.dto import OrderRequest

    settings = msgspec.convert(
        {
            "database_url": url,
            "demo": False,
            "lab_base_url": "http://127.0.0.1:9/fhir",
            "lab_webhook_secret": SECRET,
            "log_level": "WARNING",
        },
        Settings,
    )
    container = build_container(settings)
    try:
        async with container.sessions() as session, session.begin():
            org = await create_organisation(
                session, f"bench-{uuid.uuid4().hex[:6]}", dt.datetime.now(dt.UTC)
            )
        principal = Principal(organisation_id=org.id, actor="bench", role="integration")
        bodies = [msgspec.json.decode(b, type=OrderRequest) for b in order_bodies()]
        ids: list[str] = []
        for start in range(0, count, 50):  # concurrent calls share group commits
            results = await asyncio.gather(
                *(
                    container.orders.place(principal, uuid.uuid4().hex, bodies[i % len(bodies)])
                    for i in range(start, min(count, start + 50))
                )
            )
            ids += [r.body["id"] for r in results]
        return ids
    finally:
        await container.aclose()


async def _progress(url: str) -> tuple[int, int, dt.datetime | None, dt.datetime | None]:
    """(orders submitted, orders in total, times of the first and the last acceptance)."""
    from service.persistence.database import create_engine
    from service.persistence.models import Order, OrderAttempt

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(Order))).scalar_one()
            done = (
                await conn.execute(
                    select(func.count()).select_from(Order).where(Order.status == "submitted")
                )
            ).scalar_one()
            first, last = (
                await conn.execute(
                    select(func.min(OrderAttempt.at), func.max(OrderAttempt.at)).where(
                        OrderAttempt.outcome == "accepted"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return done, total, first, last


def run_one(scenario: str, backend: str, url: str, out: Path, extra_env: dict[str, str]) -> dict:
    spec = SCENARIOS[scenario]
    ids = asyncio.run(_place(url, spec["orders"]))
    lab_port = free_port()
    lab = f"http://127.0.0.1:{lab_port}"
    lab_env = clean_env(
        LABREC_SANDBOX_STEP_DELAY="0", **{f"LABREC_SANDBOX_{k}": v for k, v in spec["lab"].items()}
    )
    tag = f"{scenario}-{backend}"
    with running(
        [*LABREC, "sandbox-lab", "--port", str(lab_port)],
        lab_env,
        out / f"sandbox-{tag}.log",
        f"{lab}/_sandbox/stats",
    ):
        env = clean_env(
            LABREC_DATABASE_URL=url,
            LABREC_DEMO="false",
            LABREC_LAB_BASE_URL=lab,
            LABREC_LAB_WEBHOOK_SECRET=SECRET,
            LABREC_LOG_LEVEL="WARNING",
            **extra_env,
        )
        started_wall = dt.datetime.now(dt.UTC)
        started = time.monotonic()
        worker = Proc([*LABREC, "worker"], env, out / f"worker-{tag}.log")
        try:
            done = 0
            while time.monotonic() - started < spec["limit_s"]:
                done, total, _, last = asyncio.run(_progress(url))
                if done == total:
                    break
                time.sleep(0.25)
            elapsed = time.monotonic() - started
            worker_cpu = _cpu_seconds(worker.popen.pid)
            done, total, first, last = asyncio.run(_progress(url))
        finally:
            worker.stop()
        stats = httpx.get(f"{lab}/_sandbox/stats", timeout=10).json()
        view = httpx.get(f"{lab}/_sandbox/orders", timeout=30).json()
    accepted_once = sum(o["accepted_count"] == 1 for o in view)
    span = (last - started_wall).total_seconds() if last is not None else float("nan")
    all_done = done == total
    return {
        "scenario": scenario,
        "backend": backend,
        "orders": total,
        "submitted": done,
        "all_submitted": all_done,
        "seconds_to_all": round(span, 1) if all_done else None,
        "watched_s": round(elapsed, 1),
        "orders_per_s": round(done / span, 1) if last is not None and span > 0 else 0.0,
        # Without the worker's start-up (imports, first connections): the steady rate.
        "steady_orders_per_s": round(done / (last - first).total_seconds(), 1)
        if first is not None and last is not None and last > first
        else 0.0,
        "lab_orders": len(view),
        "lab_accepted_once": accepted_once,
        "lab_accepted_total": stats["accepted_total"],
        "lab_submissions": stats["submissions_received"],
        "injected": f"{stats['injected_timeouts']} stalls, {stats['injected_errors']} 503s, "
        f"{stats['injected_drops']} drops",
        "ids_known_to_lab": len({o["order_id"] for o in view} & set(ids)),
        "worker_cpu_ms_per_order": round(worker_cpu * 1000 / max(done, 1), 2),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (what other load on the machine does not inflate)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _database(backend: str, out: Path, admin_url: str, tag: str) -> str:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{out / f'dispatch-{tag}.db'}"
    else:
        url = asyncio.run(recreate_postgres_database(admin_url, BENCH_DB))
    labrec_cli(clean_env(LABREC_DATABASE_URL=url), "migrate")
    return url


def table(rows: list[dict]) -> str:
    lines = [
        "(h) dispatcher, one `labrec worker`, orders placed before it starts "
        "(faults: 10% processed then answered 12 s late, 10% 503 Retry-After: 1, 10% dropped "
        "answers; healthy: 20 ms lab latency)",
        "| lab | backend | orders | submitted | time to all submitted | orders/s "
        "| orders/s first→last acceptance "
        "| worker CPU ms/order | accepted once at the lab | lab submissions | injected |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        when = f"{r['seconds_to_all']} s" if r["all_submitted"] else f"not after {r['watched_s']} s"
        lines.append(
            f"| {r['scenario']} | {r['backend']} | {r['orders']} | {r['submitted']} | {when} "
            f"| {r['orders_per_s']:,.1f} | {r['steady_orders_per_s']:,.1f} "
            f"| {r['worker_cpu_ms_per_order']} "
            f"| {r['lab_accepted_once']} of {r['lab_orders']} "
            f"(total accepted {r['lab_accepted_total']}) | {r['lab_submissions']} "
            f"| {r['injected']} |"
        )
    return "\n".join(lines)


def run(only: list[str], backends: list[str], admin_url: str, out: Path) -> dict[str, Any]:
    rows = []
    for scenario in only:
        for backend in backends:
            print(f"(h) dispatcher: {scenario} lab, {backend}", flush=True)
            url = _database(backend, out, admin_url, scenario)
            row = run_one(scenario, backend, url, out, {})
            print(f"  {json.dumps(row)}", flush=True)
            rows.append(row)
    return {"rows": rows, "text": table(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch_flow", description=__doc__)
    parser.add_argument("--only", default="faults,healthy")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres-admin-url", default=os.environ.get("LABREC_TEST_POSTGRES_URL", DEFAULT_PG)
    )
    args = parser.parse_args(argv)
    out = RESULTS / (dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-dispatch")
    out.mkdir(parents=True)
    report = run(args.only.split(","), args.backends.split(","), args.postgres_admin_url, out)
    (out / "dispatch.json").write_text(json.dumps(report["rows"], indent=2))
    (out / "table.md").write_text(report["text"] + "\n")
    print()
    print(report["text"])
    print(f"\nload average {', '.join(f'{x:.2f}' for x in os.getloadavg())}; logs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
