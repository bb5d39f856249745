"""Running the app for tests: Litestar's AsyncTestClient over the real ASGI app and database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.container import Container
from service.settings import Settings


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, **kwargs: Any
) -> AsyncIterator[tuple[AsyncTestClient[Litestar], Container]]:
    app = create_app(settings, configure_logs=False, **kwargs)
    async with AsyncTestClient(app=app) as client:
        yield client, app.state.container


def mock_lab(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)
