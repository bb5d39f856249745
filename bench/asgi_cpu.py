"""CPU cost per request, in-process, without a server or a network: a profiling aid.

``python -m bench.asgi_cpu [--profile] [--requests N] [--concurrency C] [recommendations|orders|
catalog|cds|trivial]`` drives the ASGI app directly (the same app factory ``labrec serve`` uses,
with its start-up heap frozen as in ``serve``) and reports the process CPU time per request
(``time.process_time``: all threads, so aiosqlite's worker threads count). It is immune to other
load on the machine, unlike wall-clock benchmarks, which is why the optimisation figures in
bench/README.md quote it next to the wrk runs. ``--profile`` prints a cProfile of the event-loop
thread by its CPU time. ``cds`` is order-select with the 30 KiB prefetch of ``bench.cds_latency``
and one pre-signed token per call (signing, the EHR's work, is not counted)."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from bench.contexts import SEARCHES, TRIVIAL_BODIES, order_bodies, recommendation_bodies

Scope = dict[str, Any]


async def call(app: Any, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    """One request through the ASGI app; returns the status."""
    raw_path, _, query = path.partition("?")
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-length", str(len(body)).encode()), (b"host", b"bench")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def lifespan(app: Any) -> Callable[[], Awaitable[None]]:
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


async def run(kind: str, requests: int, concurrency: int, profile: bool, database: str) -> None:
    from service.app import create_app
    from service.settings import load_settings

    tmp = Path(tempfile.mkdtemp())
    url = database or f"sqlite+aiosqlite:///{tmp / 'cpu.db'}"
    env = {
        "LABREC_DATABASE_URL": url,
        "LABREC_DEMO": "false",
        "LABREC_DISPATCH_IN_PROCESS": "false",
        "LABREC_LAB_BASE_URL": "http://127.0.0.1:9/fhir",
        "LABREC_LAB_WEBHOOK_SECRET": "whsec_" + "YmVuY2hiZW5jaGJlbmNoYmVuY2hiZW5jaGJlbmNoYmU=",
        "LABREC_RATE_LIMIT_PER_SECOND": "1000000000",
        "LABREC_RATE_LIMIT_BURST": "1000000000",
        "LABREC_LOG_LEVEL": "INFO",
    }
    if kind == "trivial":
        from bench.trivial_app import create_app as trivial_app

        app: Any = trivial_app()
    else:
        from service.persistence.database import migrate_async

        await migrate_async(url)
        app = create_app(load_settings(env), configure_logs=True, settle_heap=True)
    stop = await lifespan(app)
    key = ""
    if kind != "trivial":
        from tests.support.builders import tenant

        key = await tenant(app.state.container)
    cds_calls: list[tuple[str, str, bytes, dict[str, str]]] = []
    if kind == "cds":
        cds_calls = await _cds_calls(app, requests + min(200, requests))
    json = {"Content-Type": "application/json", "X-API-Key": key}
    makers: dict[str, Callable[[int], tuple[str, str, bytes, dict[str, str]]]] = {
        "trivial": lambda i: ("POST", "/echo", TRIVIAL_BODIES[i % 10].encode(), json),
        "recommendations": lambda i: (
            "POST",
            "/v1/recommendations",
            recs[i % len(recs)].encode(),
            json,
        ),
        "catalog": lambda i: ("GET", f"/v1/catalog/panels?q={SEARCHES[i % 9]}", b"", json),
        "cds": lambda i: cds_calls[i],
        "orders": lambda i: (
            "POST",
            "/v1/orders",
            orders[i % len(orders)].encode(),
            {**json, "Idempotency-Key": f"{run_id}-{i}"},
        ),
    }
    recs, orders, run_id = recommendation_bodies(), order_bodies(), uuid.uuid4().hex[:8]
    make = makers[kind]
    counter = iter(range(10**9))
    statuses: dict[int, int] = {}

    async def client() -> None:
        for i in counter:
            if i >= requests:
                return
            status = await call(app, *make(i))
            statuses[status] = statuses.get(status, 0) + 1

    for i in range(min(200, requests)):  # warm-up
        await call(app, *make(requests + i))
    if kind == "cds":
        await _drain(app.state.cds)
    profiler = cProfile.Profile(time.thread_time) if profile else None
    cpu, main_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    if kind == "cds":
        await _drain(app.state.cds)  # work moved off the request path still counts
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    main_cpu = time.thread_time() - main_cpu
    await stop()
    print(
        msgspec.json.encode(
            {
                "kind": kind,
                "requests": requests,
                "statuses": statuses,
                "cpu_us_per_request": round(cpu / requests * 1e6, 1),
                "loop_thread_cpu_us_per_request": round(main_cpu / requests * 1e6, 1),
                "wall_us_per_request": round(wall / requests * 1e6, 1),
            }
        ).decode()
    )
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
        print(out.getvalue())


async def _cds_calls(app: Any, count: int) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """Register a bench EHR (P-384 key in a JWKS document) and sign ``count`` tokens for it."""
    import json as stdjson

    from bench.cds_latency import PATH, register_bench_ehr, request_body, sign_token

    container = app.state.container
    key = await register_bench_ehr(container, "cpu")
    aud = container.settings.public_url.rstrip("/") + PATH
    body = stdjson.dumps(request_body()).encode()
    calls = []
    for _ in range(count):
        token = sign_token(key, aud)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        calls.append(("POST", PATH, body, headers))
    return calls


async def _drain(runtime: Any) -> None:
    """Wait for writes the CDS face finishes after answering (none before issue 15's change)."""
    drain = getattr(runtime, "drain", None)
    if drain is not None:
        await drain()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_cpu")
    parser.add_argument(
        "kind", choices=["recommendations", "orders", "catalog", "cds", "trivial"], nargs="?"
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--database", default="", help="SQLAlchemy URL (default: a new SQLite)")
    args = parser.parse_args()
    import logging

    logging.disable(logging.NOTSET)
    import uvloop  # what Granian's loop=auto picks when it is installed (it is: litestar needs it)

    uvloop.run(
        run(
            args.kind or "recommendations",
            args.requests,
            args.concurrency,
            args.profile,
            args.database,
        )
    )


if __name__ == "__main__":
    main()
