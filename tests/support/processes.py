"""Real servers for tests: start a command on a free loopback port, wait for it, stop it."""

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

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LABREC_")}
        full_env.update(env)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            cwd=ROOT,
            env=full_env,
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye — what a crash looks like."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._file.close()

    def output(self) -> str:
        if not self._file.closed:
            self._file.flush()
        return self.log.read_text(errors="replace")


def wait_until_ready(url: str, process: Process, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{url} process exited early:\n{process.output()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready:\n{process.output()[-3000:]}")


@contextlib.contextmanager
def sandbox_lab(tmp: Path, **env: str) -> Iterator[str]:
    """The sandbox lab on its own port; yields its FHIR base URL."""
    port = free_port()
    settings = {f"LABREC_SANDBOX_{k.upper()}": v for k, v in env.items()}
    settings.setdefault("LABREC_SANDBOX_STEP_DELAY", "0")
    process = Process(["sandbox-lab", "--port", str(port)], settings, tmp / f"sandbox-{port}.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/_sandbox/stats", process)
        yield base
    finally:
        process.stop()


@contextlib.contextmanager
def worker(tmp: Path, env: dict[str, str], name: str = "worker") -> Iterator[Process]:
    process = Process(["worker"], env, tmp / f"{name}.log")
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def labrec_server(tmp: Path, env: dict[str, str], name: str = "serve") -> Iterator[str]:
    """``labrec serve`` on its own port; yields its base URL once /health/ready answers."""
    port = free_port()
    settings = {"LABREC_PUBLIC_URL": f"http://127.0.0.1:{port}", **env}
    process = Process(["serve", "--port", str(port)], settings, tmp / f"{name}-{port}.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/health/ready", process)
        yield base
    finally:
        process.stop()
