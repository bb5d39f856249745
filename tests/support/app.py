"""Running the app for tests: the real ASGI app, its lifespan and database, in the test's loop.

``httpx.ASGITransport`` (rather than Litestar's AsyncTestClient, which runs the app in a portal
thread with its own event loop) keeps one loop, so tests can also use the app's database pool.
The ASGI lifespan runs in its own task, so fixtures may start and stop it from different tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from service.app import create_app
from service.container import Container
from service.settings import Settings


@contextlib.asynccontextmanager
async def lifespan_of(app: Any) -> AsyncIterator[None]:
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"app failed to start: {started}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, **kwargs: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Container]]:
    app = create_app(settings, configure_logs=False, **kwargs)
    async with (
        lifespan_of(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        yield client, app.state.container
