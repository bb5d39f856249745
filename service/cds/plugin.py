"""Wires the CDS Hooks face into the app: routes, CORS for the CDS paths, and the runtime."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin

from service.cds.cors import cds_cors_middleware
from service.cds.routes import cds_route_handlers
from service.cds.runtime import CdsRuntime
from service.settings import Settings


class CdsHooksPlugin(InitPlugin):
    """``Litestar(plugins=[CdsHooksPlugin(settings)])``: everything under ``/cds-services``."""

    __slots__ = ("_settings",)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend(cds_route_handlers(self._settings))
        app_config.middleware.append(cds_cors_middleware)
        app_config.lifespan.append(_cds_runtime)
        return app_config


@contextlib.asynccontextmanager
async def _cds_runtime(app: Litestar) -> AsyncIterator[None]:
    """Built after the app's own lifespan has migrated the database; closed before it ends."""
    runtime = CdsRuntime.build(app.state.container)
    app.state.cds = runtime
    try:
        yield
    finally:
        await runtime.aclose()
