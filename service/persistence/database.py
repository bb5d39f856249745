"""Engine and session factory for SQLite (default) and PostgreSQL, plus migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_JSON_ENCODER = msgspec.json.Encoder()


def _json_serializer(value: Any) -> str:
    """JSON columns: msgspec instead of the stdlib (same JSON, several times faster)."""
    return _JSON_ENCODER.encode(value).decode()


_JSON = {"json_serializer": _json_serializer, "json_deserializer": msgspec.json.decode}


def create_engine(url: str) -> AsyncEngine:
    """One engine per process. SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **_JSON)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # 20 pooled connections: a dispatcher batch (20 deliveries) never opens and closes
    # overflow connections on every claim, and API writes are batched (group_insert.py).
    return create_async_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True, **_JSON)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (safe to run on every start)."""
    command.upgrade(alembic_config(url), "head")


async def migrate_async(url: str) -> None:
    await asyncio.to_thread(migrate, url)
