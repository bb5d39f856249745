"""Processes the bench starts (labrec, the trivial app, the sandbox lab) and its PG database.

Every process is started here, on 127.0.0.1, and stopped by its own pid when the run is over.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LABREC = [sys.executable, "-m", "service.cli"]
RESULTS = ROOT / "bench" / "results"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
#: A valid Standard Webhooks secret for the bench's labrec and sandbox lab.
SECRET = "whsec_" + "YmVuY2hiZW5jaGJlbmNoYmVuY2hiZW5jaGJlbmNoYmU="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any LABREC_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABREC_")}
    env.update(extra)
    return env


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.popen.args} exited early; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{url} not ready after {timeout} s; see {self.log}")

    def worker_rss_mib(self) -> list[float]:
        """Resident memory of each worker process (Granian's children), or of this process when
        it has none (``labrec worker``, the sandbox lab)."""
        pids = child_pids(self.popen.pid) or [self.popen.pid]
        return [mib for mib in (rss_mib(pid) for pid in pids) if mib is not None]

    def worker_cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the worker processes (see worker_rss_mib)."""
        pids = child_pids(self.popen.pid) or [self.popen.pid]
        return sum(cpu_seconds(pid) for pid in pids)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._file.close()


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[Proc]:
    proc = Proc(args, env, log)
    try:
        proc.wait_ready(ready_url)
        yield proc
    finally:
        proc.stop()


def rss_mib(pid: int) -> float | None:
    """VmRSS of a process in MiB (None when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/*/stat)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return sorted(children)


def labrec_cli(env: dict[str, str], *args: str) -> str:
    """Run a ``labrec`` command to completion; returns its stdout."""
    done = subprocess.run(
        [*LABREC, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"labrec {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def create_tenant(env: dict[str, str], name: str = "bench") -> str:
    """``labrec org create`` + ``labrec apikey create``; returns the key (the last line)."""
    labrec_cli(env, "org", "create", name)
    return labrec_cli(env, "apikey", "create", "--org", name).strip().splitlines()[-1]


async def recreate_postgres_database(admin_url: str, name: str) -> str:
    """Drop and create ``name`` on the server of ``admin_url``; returns its SQLAlchemy URL."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    conn = await asyncpg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)
