"""Liveness (the process answers) and readiness (the database answers)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from sqlalchemy import text

from service.api.deps import container_of


class Health(msgspec.Struct, frozen=True, omit_defaults=True):
    status: str
    catalog_version: str | None = None


@get("/health/live", tags=["health"], summary="Process is up")
async def live() -> Health:
    return Health(status="ok")


@get("/health/ready", tags=["health"], summary="Database reachable and catalog loaded")
async def ready(request: Request[Any, Any, Any]) -> Response[Health]:
    container = container_of(request)
    try:
        async with container.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        return Response(Health(status="database unavailable"), status_code=503)
    return Response(Health(status="ok", catalog_version=container.catalog.version))
