"""Real servers on loopback for the lab tests: granian subprocesses and a webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import httpx

REPO = Path(__file__).resolve().parents[2]
GRANIAN = str(Path(sys.executable).with_name("granian"))


async def poll_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for state another thread or process changes; there is no event to await."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the state changes outside this event loop
            await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def granian(
    factory: str, env: dict[str, str], ready_path: str, ready_headers: dict[str, str] | None = None
) -> Iterator[str]:
    """Serve ``factory`` under granian on a free loopback port until the block ends.

    Yields the base URL once ``ready_path`` answers 200. The process is always terminated (then
    killed with its process group if it does not stop) and its log is shown on failure.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        GRANIAN,
        "--interface", "asgi",
        "--factory", factory,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--no-ws",
        "--log-level", "warning",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(base + ready_path, process, log, headers=ready_headers or {})
            yield base
        finally:
            _stop(process)


def _wait_ready(
    url: str,
    process: subprocess.Popen[bytes],
    log: IO[bytes],
    timeout: float = 20,
    headers: dict[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=0.5, headers=headers) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.05)
    raise RuntimeError(f"granian did not become ready at {url}:\n{_read(log)}")


def _read(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-4000:]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class WebhookReceiver:
    """A tiny HTTP server in a thread that records every webhook attempt.

    ``fail_next(n)`` makes the next n attempts answer 500, to exercise the sender's retries.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[dict[str, str], bytes, int]] = []
        self._failures = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    status = 500 if receiver._failures > 0 else 204
                    receiver._failures = max(0, receiver._failures - 1)
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.attempts.append((headers, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failures = count

    def snapshot(self) -> list[tuple[dict[str, str], bytes, int]]:
        with self._lock:
            return list(self.attempts)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
