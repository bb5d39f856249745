"""UI fixtures: the real app and database (SQLite and PostgreSQL), a clock tests can move."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.support.app import running_app


class MovableClock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def ui(database_url: str, clock: MovableClock) -> AsyncIterator[tuple[Any, Any]]:
    """(client, container) for the app over a fresh database; no dispatcher running."""
    async with running_app(make_settings(database_url), run_worker=False, clock=clock) as app:
        yield app
