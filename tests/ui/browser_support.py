"""Browser-test support: a real `labrec serve`, Debian's Chromium, screenshots and a stopwatch."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ROOT, Process, free_port, wait_until_ready

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
ORG = "Browser Clinic"
EMAIL = "dr.test@clinic.test"
PASSWORD = "browser test passphrase"


def require_chromium() -> None:
    """Skip without Chromium locally; in CI (CI=true) a missing browser is a failure."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium (apt-get)")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); CI never skips this")


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LABREC_")}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env={**clean, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@contextlib.contextmanager
def labrec_server(folder: Path) -> Iterator[tuple[str, Process]]:
    """`labrec serve` on a free port over a fresh SQLite file, with one organisation and user."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "LABREC_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'browser.db'}",
        "LABREC_DEMO": "false",
        "LABREC_SANDBOX": "true",  # the built-in sandbox lab, asked for explicitly
        "LABREC_SANDBOX_STEP_SECONDS": "1",
        "LABREC_PUBLIC_URL": base,
        "LABREC_LOG_LEVEL": "INFO",
    }
    _cli(env, "org", "create", ORG)
    _cli(
        env,
        "user", "create", "--org", ORG, "--email", EMAIL,
        "--name", "Dr Robin Test", "--npi", "1234567893", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    process = Process(["serve", "--port", str(port)], env, folder / "server.log")
    try:
        wait_until_ready(f"{base}/health/ready", process)
        yield base, process
    finally:
        process.stop()


class Screenshots:
    """Full-page PNGs of each page at desktop and phone widths."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[Path] = []

    def take(self, page: Any, name: str) -> None:
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(size)
            path = self.folder / f"{name}-{label}.png"
            page.screenshot(path=str(path), full_page=True)
            assert path.stat().st_size > 0, f"{path} is empty"
            self.taken.append(path)
        page.set_viewport_size(DESKTOP)


class Stopwatch:
    """Seconds spent on the practitioner's path, with screenshot time left out."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._since: float | None = None

    def start(self) -> None:
        self._since = time.perf_counter()

    def stop(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()


class Actions:
    """Counts what a person does: clicks (a select counts as one) and fields typed into."""

    def __init__(self) -> None:
        self.clicks = 0
        self.typed_fields = 0

    def click(self, locator: Any) -> None:
        self.clicks += 1
        locator.click()

    def check(self, locator: Any) -> None:
        self.clicks += 1
        locator.check()

    def select(self, locator: Any, **option: str) -> None:
        self.clicks += 1
        locator.select_option(**option)

    def type(self, locator: Any, text: str) -> None:
        self.typed_fields += 1
        locator.fill(text)
