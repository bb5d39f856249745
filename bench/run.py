"""labrec benchmark: ``.venv/bin/python -m bench.run`` (see bench/README.md).

Starts every server itself on 127.0.0.1, drives it with ``wrk`` for a bounded time, stops it, and
prints one table (also written to bench/results/<timestamp>/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.contexts import (
    SEARCHES,
    TRIVIAL_BODIES,
    order_bodies,
    recommendation_bodies,
    write_lines,
)
from bench.procs import (
    DEFAULT_PG,
    LABREC,
    RESULTS,
    SECRET,
    Proc,
    clean_env,
    create_tenant,
    free_port,
    labrec_cli,
    recreate_postgres_database,
    running,
)
from bench.wrk import WrkResult, run_wrk

BENCH_DB = "labrec_bench"
#: (e) CDS runs: issue 15's targets are stated at 32 connections.
CDS_CONNECTIONS = 32
CDS_TOKEN_RATE = 1800


class Bench:
    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.rows: list[WrkResult] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        #: resident memory per process: (process, idle MiB per worker, after load MiB per worker)
        self.memory: list[tuple[str, list[float], list[float]]] = []
        #: the server the wrk runs drive (for its CPU time per request)
        self.server: Proc | None = None
        self.bodies = out / "bodies"
        self.bodies.mkdir()
        self.rec_file = write_lines(self.bodies / "recommendations.jsonl", recommendation_bodies())
        self.order_file = write_lines(self.bodies / "orders.jsonl", order_bodies())
        self.trivial_file = write_lines(self.bodies / "trivial.jsonl", TRIVIAL_BODIES)
        self.search_file = write_lines(
            self.bodies / "searches.txt",
            [f"/v1/catalog/panels?q={urllib.parse.quote_plus(q)}" for q in SEARCHES],
        )

    # --- plumbing -----------------------------------------------------------------------------

    def wrk(
        self,
        name: str,
        url: str,
        script: str,
        script_args: list[str],
        connections: int | None = None,
        warmup_args: list[str] | None = None,
        duration: float | None = None,
        threads: int | None = None,
    ) -> WrkResult:
        slug = name.split()[0].strip("()")
        connections = connections or self.args.connections
        threads = threads or min(self.args.threads, connections)
        if self.args.warmup > 0:
            run_wrk(
                name,
                url,
                script,
                warmup_args
                or (
                    script_args
                    if script != "orders.lua"
                    else [*script_args[:2], f"w{uuid.uuid4().hex[:6]}"]
                ),
                duration=self.args.warmup,
                connections=connections,
                threads=threads,
                log=self.out / f"wrk-{slug}-warmup-{len(self.rows)}.log",
            )
        cpu_before = self.server.worker_cpu_seconds() if self.server else None
        result = run_wrk(
            name,
            url,
            script,
            script_args,
            duration=duration or self.args.duration,
            connections=connections,
            threads=threads,
            log=self.out / f"wrk-{slug}-{len(self.rows)}.log",
        )
        if self.server is not None and cpu_before is not None and result.requests:
            used = self.server.worker_cpu_seconds() - cpu_before
            result.cpu_us = round(used / result.requests * 1e6)
        self.rows.append(result)
        print(
            f"  {name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
            f"p95 {result.p95_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, errors {result.errors}, "
            f"server CPU {result.cpu_us} us/req",
            flush=True,
        )
        return result

    def labrec_env(self, database_url: str, **extra: str) -> dict[str, str]:
        env = {
            "LABREC_DATABASE_URL": database_url,
            "LABREC_DEMO": "false",
            "LABREC_DISPATCH_IN_PROCESS": "false",
            "LABREC_LAB_BASE_URL": "http://127.0.0.1:9/fhir",  # never called: dispatch is off
            "LABREC_LAB_WEBHOOK_SECRET": SECRET,
            # The per-key rate limit (50/s by default) is a guard, not what is measured here.
            "LABREC_RATE_LIMIT_PER_SECOND": "1000000",
            "LABREC_RATE_LIMIT_BURST": "1000000",
        }
        env.update(extra)
        return clean_env(**env)

    @contextlib.contextmanager
    def labrec(self, env: dict[str, str], workers: int, tag: str) -> Iterator[str]:
        port = free_port()
        env = {**env, "LABREC_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        args = [*LABREC, "serve", "--port", str(port), "--workers", str(workers)]
        base = f"http://127.0.0.1:{port}"
        with running(args, env, self.out / f"labrec-{tag}.log", f"{base}/health/ready") as proc:
            idle = proc.worker_rss_mib()
            self.server = proc
            try:
                yield base
            finally:
                self.server = None
            self.memory.append((f"`labrec serve` {tag}", idle, proc.worker_rss_mib()))

    def sqlite_url(self, tag: str) -> str:
        path = self.out / f"labrec-{tag}.db"
        return f"sqlite+aiosqlite:///{path}"

    def postgres_url(self) -> str:
        url = asyncio.run(recreate_postgres_database(self.args.postgres_admin_url, BENCH_DB))
        labrec_cli(clean_env(LABREC_DATABASE_URL=url), "migrate")
        return url

    # --- sections -----------------------------------------------------------------------------

    def trivial(self) -> None:
        print("(a) trivial Litestar POST handler", flush=True)
        port = free_port()
        args = [sys.executable, "-m", "bench.trivial_app", "--port", str(port), "--workers", "1"]
        base = f"http://127.0.0.1:{port}"
        with running(args, clean_env(), self.out / "trivial.log", f"{base}/nothing") as proc:
            self.server = proc
            check = httpx.post(f"{base}/echo", content=TRIVIAL_BODIES[0])
            assert check.status_code == 200, check.text
            self.wrk(
                "(a) trivial POST", f"{base}/echo", "post_bodies.lua", [str(self.trivial_file)]
            )
            self.server = None

    def api_sqlite(self) -> None:
        print("(b, c, d) labrec on SQLite, 1 worker", flush=True)
        env = self.labrec_env(self.sqlite_url("api"))
        key = create_tenant(env)
        with self.labrec(env, 1, "sqlite") as base:
            self._check(base, key)
            self.wrk(
                "(b) POST /v1/recommendations",
                f"{base}/v1/recommendations",
                "post_bodies.lua",
                [str(self.rec_file), key],
            )
            self.wrk(
                "(c) GET /v1/catalog/panels?q=",
                base,
                "get_paths.lua",
                [str(self.search_file), key],
            )
            self.wrk(
                "(d) POST /v1/orders SQLite 1w",
                base,
                "orders.lua",
                [str(self.order_file), key, f"s{uuid.uuid4().hex[:8]}"],
            )
            self._cds(base, env, "SQLite 1w", "-sqlite")

    def api_postgres(self) -> None:
        for workers in (1, 2):
            print(f"(d) labrec on PostgreSQL, {workers} worker(s)", flush=True)
            env = self.labrec_env(self.postgres_url())
            key = create_tenant(env)
            with self.labrec(env, workers, f"pg{workers}") as base:
                self._check(base, key)
                self.wrk(
                    f"(d) POST /v1/orders PostgreSQL {workers}w",
                    base,
                    "orders.lua",
                    [str(self.order_file), key, f"p{uuid.uuid4().hex[:8]}"],
                )
                if workers == 2:
                    self.wrk(
                        "(b) POST /v1/recommendations PostgreSQL 2w",
                        f"{base}/v1/recommendations",
                        "post_bodies.lua",
                        [str(self.rec_file), key],
                    )
                    self._cds(base, env, "PostgreSQL 2w", "-pg2")

    def _check(self, base: str, key: str) -> None:
        """Every body answers as expected before it is measured (a bench of 401s proves nothing)."""
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        for body in self.rec_file.read_text().splitlines()[:7]:
            r = httpx.post(f"{base}/v1/recommendations", content=body, headers=headers)
            assert r.status_code == 200, r.text
        r = httpx.post(
            f"{base}/v1/orders",
            content=self.order_file.read_text().splitlines()[0],
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text

    def _cds(self, base: str, env: dict[str, str], backend: str, tag: str) -> None:
        """(e) order-select at 32 connections, then (SQLite) one client alone for its p95."""
        from bench.cds import SERVICE, prepare

        if not (Path(__file__).resolve().parents[1] / "service" / "cds" / "routes.py").exists():
            self.notes.append("(e) CDS order-select: skipped, service/cds has no routes yet.")
            print("  " + self.notes[-1], flush=True)
            return
        runs = [(f"(e) CDS order-select 30 KiB, {backend}, c{CDS_CONNECTIONS}", CDS_CONNECTIONS)]
        if backend.startswith("SQLite"):
            runs.append((f"(e) CDS order-select 30 KiB, {backend}, single client", 1))
        # Tokens per second of wrk: above what each run serves (a token is good once; running
        # out would show as 401 errors in the table).
        counts = []
        for _, connections in runs:
            rate = CDS_TOKEN_RATE if connections > 1 else 250
            counts += [int(self.args.warmup * rate) + 1, int(self.args.duration * rate)]
        files, bodies = prepare(self, env, base, [1, *counts], tag)
        probe = httpx.post(
            base + SERVICE,
            content=bodies.read_text().splitlines()[0],
            headers={
                "Authorization": "Bearer " + files[0].read_text().strip(),
                "Content-Type": "application/json",
            },
            timeout=10,
        )
        if probe.status_code != 200 or len(probe.json().get("cards", [])) != 1:
            self.notes.append(
                f"(e) CDS order-select: skipped, a signed call answered {probe.status_code}."
            )
            print("  " + self.notes[-1], flush=True)
            return
        for n, (name, connections) in enumerate(runs):
            warm, tokens = files[1 + 2 * n], files[2 + 2 * n]
            threads = min(self.args.threads, connections)
            self.wrk(
                name,
                base,
                "cds.lua",
                [str(tokens), str(bodies), SERVICE, str(threads)],
                warmup_args=[str(warm), str(bodies), SERVICE, str(threads)],
                connections=connections,
                threads=threads,
            )

    def engine_scale(self) -> None:
        print("(f) engine scaling on generated catalogs (in-process)", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "bench.engine_scale", "--json", "--calls", "3000"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        (self.out / "engine_scale.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"engine scale run failed; see {self.out / 'engine_scale.log'}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        self.extra["engine_scale"] = report
        print(report["text"], flush=True)

    def orders_end_to_end(self) -> None:
        from bench.orders_e2e import run_end_to_end

        print("(g) orders end to end: intake with the dispatcher and the sandbox lab", flush=True)
        report = run_end_to_end(self)
        self.extra["orders_end_to_end"] = report

    def dispatch_flow(self) -> None:
        from bench.dispatch_flow import run

        print("(h) the dispatcher alone: a stalling lab and a healthy one", flush=True)
        report = run(
            ["faults", "healthy"], ["sqlite", "postgres"], self.args.postgres_admin_url, self.out
        )
        self.extra["dispatch_flow"] = report

    # --- output -------------------------------------------------------------------------------

    def table(self) -> str:
        trivial = next((r for r in self.rows if r.name.startswith("(a)")), None)
        lines = [
            f"labrec bench {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; wrk -t{self.args.threads} "
            f"-c{self.args.connections} -d{self.args.duration:g}s (after a {self.args.warmup:g} s "
            "warm-up), loopback",
            machine(),
            "",
            "| run | req/s | p50 ms | p95 ms | p99 ms | x trivial req/s | x trivial p99 "
            "| server CPU µs/req | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in self.rows:
            ratio = f"{r.rps / trivial.rps:.2f}" if trivial else "-"
            p99 = f"{r.p99_ms / trivial.p99_ms:.2f}" if trivial else "-"
            lines.append(
                f"| {r.name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | {r.p99_ms:.2f} "
                f"| {ratio} | {p99} | {r.cpu_us or '-'} | {r.errors} |"
            )
        failed = [r.name for r in self.rows if r.errors]
        if failed:
            lines.append(f"- WARNING: runs with errors (see the wrk logs): {', '.join(failed)}")
        lines += [f"- {n}" for n in self.notes]
        if self.memory:
            lines += [
                "",
                "Resident memory (VmRSS, MiB) per worker process: idle = when ready, after = when "
                "its runs are done",
                "| process | idle | after load |",
                "| --- | ---: | ---: |",
            ]
            for process, idle, after in self.memory:
                lines.append(
                    f"| {process} | {' / '.join(f'{m:.0f}' for m in idle)} "
                    f"| {' / '.join(f'{m:.0f}' for m in after)} |"
                )
        if "engine_scale" in self.extra:
            lines += ["", self.extra["engine_scale"]["text"]]
        if "orders_end_to_end" in self.extra:
            lines += ["", self.extra["orders_end_to_end"]["text"]]
        if "dispatch_flow" in self.extra:
            lines += ["", self.extra["dispatch_flow"]["text"]]
        return "\n".join(lines)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: nproc {os.cpu_count()}, {model}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at the end {load} "
        "(other work on the machine shares the 2 cores)"
    )


SECTIONS = {
    "a": "trivial",
    "bcd": "api_sqlite",
    "pg": "api_postgres",
    "f": "engine_scale",
    "g": "orders_end_to_end",
    "h": "dispatch_flow",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {list(SECTIONS)}"
    )
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get("LABREC_TEST_POSTGRES_URL", DEFAULT_PG),
        help=f"server for the '{BENCH_DB}' database (dropped and recreated)",
    )
    args = parser.parse_args(argv)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / stamp
    out.mkdir(parents=True)
    bench = Bench(args, out)
    started = time.monotonic()
    for section in args.only.split(","):
        getattr(bench, SECTIONS[section.strip()])()
    table = bench.table()
    table += f"\n\nwhole bench: {time.monotonic() - started:.0f} s; logs in {out}"
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "rows": [msgspec.to_builtins(r) for r in bench.rows],
                "notes": bench.notes,
                "memory_mib": [
                    {"process": p, "idle": idle, "after": after} for p, idle, after in bench.memory
                ],
            }
            | bench.extra,
            indent=2,
        )
    )
    print()
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
