"""Request-scoped values for the REST face: the container and the caller (from the API key)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import NotAuthorizedException

from service.container import Container
from service.domain.principal import Principal
from service.persistence.organisations import api_key_by_raw


def container_of(request: Request[Any, Any, Any]) -> Container:
    container: Container = request.app.state.container
    return container


async def principal_from_api_key(request: Request[Any, Any, Any]) -> Principal:
    """The organisation comes only from the key; a missing, unknown or revoked key is a 401."""
    raw = request.headers.get("x-api-key")
    if not raw or len(raw) > 128:
        raise NotAuthorizedException("Send a valid API key in the X-API-Key header.")
    container = container_of(request)
    async with container.sessions() as session:
        key = await api_key_by_raw(session, raw)
    if key is None:
        raise NotAuthorizedException("Send a valid API key in the X-API-Key header.")
    state = request.scope.setdefault("state", {})  # read by the access log
    state["organisation_id"] = key.organisation_id
    return Principal(
        organisation_id=key.organisation_id,
        actor=f"apikey:{key.prefix}",
        role=key.role,  # type: ignore[arg-type]
        request_id=state.get("request_id"),
    )
