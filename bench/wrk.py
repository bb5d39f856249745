"""Run ``wrk`` with one of the Lua scripts in bench/lua and read its summary line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import msgspec

LUA = Path(__file__).resolve().parent / "lua"


class WrkResult(msgspec.Struct):
    name: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    note: str = ""
    p95_ms: float = 0.0
    #: CPU time of the server's worker processes per request (set by the caller), microseconds
    cpu_us: int | None = None


def run_wrk(
    name: str,
    url: str,
    script: str,
    script_args: list[str],
    *,
    duration: float,
    connections: int,
    threads: int,
    log: Path,
) -> WrkResult:
    """Loopback only (the URL is always one of ours on 127.0.0.1); bounded by ``duration``."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("the bench drives only servers it started on 127.0.0.1")
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA / script),
        url,
        "--",
        *script_args,
    ]
    done = subprocess.run(
        args, cwd=LUA, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    log.write_text(" ".join(args[: -len(script_args) or None]) + "\n" + done.stdout + done.stderr)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}); see {log}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    errors = (
        sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors"))
        + raw["timeouts"]
    )
    return WrkResult(
        name=name,
        requests=raw["requests"],
        seconds=round(seconds, 2),
        rps=round(raw["requests"] / seconds, 1),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=errors,
        p95_ms=raw.get("p95_us", 0) / 1000,
    )
