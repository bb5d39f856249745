"""Shared fixtures: databases (SQLite always, PostgreSQL when configured), settings, the app.

PostgreSQL tests use ``LABREC_TEST_POSTGRES_URL`` (``.ci/run`` sets it). Without it they skip
locally with a reason, and fail in CI (``CI=true``): nothing is skipped silently there.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.postgres import PostgresDatabases

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _postgres_url() -> str | None:
    url = os.environ.get("LABREC_TEST_POSTGRES_URL")
    if url is None and os.environ.get("CI") == "true":
        pytest.fail("CI must set LABREC_TEST_POSTGRES_URL: PostgreSQL tests may not be skipped")
    return url


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases | None]:
    url = _postgres_url()
    if url is None:
        yield None
        return
    databases = PostgresDatabases(url)
    try:
        asyncio.run(databases.prepare_template())
    except OSError as exc:
        pytest.fail(f"cannot reach PostgreSQL at LABREC_TEST_POSTGRES_URL: {exc}")
    yield databases
    asyncio.run(databases.drop_all())


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresDatabases | None
) -> AsyncIterator[str]:
    """A fresh, migrated database per test, on each backend."""
    if request.param == "sqlite":
        from service.persistence.database import migrate_async

        url = f"sqlite+aiosqlite:///{tmp_path / 'labrec.db'}"
        await migrate_async(url)
        yield url
        return
    if postgres is None:
        pytest.skip("PostgreSQL: set LABREC_TEST_POSTGRES_URL (CI sets it and never skips)")
    name = f"labrec_t_{uuid.uuid4().hex[:12]}"
    yield await postgres.create_from_template(name)
    await postgres.drop(name)


@pytest.fixture
async def postgres_url(postgres: PostgresDatabases | None) -> AsyncIterator[str]:
    """A fresh PostgreSQL database, for tests of what only PostgreSQL does (SKIP LOCKED)."""
    if postgres is None:
        pytest.skip("PostgreSQL: set LABREC_TEST_POSTGRES_URL (CI sets it and never skips)")
    name = f"labrec_t_{uuid.uuid4().hex[:12]}"
    yield await postgres.create_from_template(name)
    await postgres.drop(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'labrec.db'}"


def make_settings(database_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "database_url": database_url,
        "demo": False,
        "dispatch_in_process": False,
        "dispatch_backoff_base": 0.01,
        "dispatch_backoff_max": 0.2,
        "dispatch_poll_interval": 0.05,
        "sandbox_step_seconds": 0.0,
        "log_level": "WARNING",
    }
    # The built-in sandbox lab only when asked for: tests without a lab URL ask for it explicitly.
    base["sandbox"] = "lab_base_url" not in overrides
    base.update(overrides)
    import msgspec

    return msgspec.convert(base, Settings, strict=False)
