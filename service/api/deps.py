"""Request-scoped values for the REST face: the container and the caller (from the API key)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from service.container import Container
from service.domain.principal import Principal
from service.persistence.organisations import api_key_by_raw


def container_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Container:
    container: Container = connection.app.state.container
    return container


async def require_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard for every /v1 route: a missing, unknown or revoked key is a 401.

    The organisation comes only from the key; the principal is kept in the request state.
    """
    raw = connection.headers.get("x-api-key")
    if not raw or len(raw) > 128:
        raise NotAuthorizedException("Send a valid API key in the X-API-Key header.")
    async with container_of(connection).sessions() as session:
        key = await api_key_by_raw(session, raw)
    if key is None:
        raise NotAuthorizedException("Send a valid API key in the X-API-Key header.")
    state = connection.scope.setdefault("state", {})
    state["organisation_id"] = key.organisation_id  # read by the access log
    state["principal"] = Principal(
        organisation_id=key.organisation_id,
        actor=f"apikey:{key.prefix}",
        role=key.role,  # type: ignore[arg-type]
        request_id=state.get("request_id"),
    )


async def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.scope["state"]["principal"]  # type: ignore[typeddict-item]
    return principal
