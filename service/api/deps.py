"""Request-scoped values for the REST face: the container and the caller (from the API key)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from service.container import Container
from service.domain.principal import Principal
from service.persistence.audit import record_audit
from service.usecases.errors import RateLimited


def container_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Container:
    container: Container = connection.app.state.container
    return container


async def require_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard for every /v1 route: a missing, unknown or revoked key is a 401.

    The organisation comes only from the key; the principal is kept in the request state.
    """
    container = container_of(connection)
    raw = connection.headers.get("x-api-key")
    key = None
    if raw and len(raw) <= 128:
        key = await container.api_keys.find(raw)  # cached briefly: see persistence/key_cache.py
    if key is None:
        await _audit_denied(container, connection)
        raise NotAuthorizedException("Send a valid API key in the X-API-Key header.")
    if wait := container.api_rate_limit.take(key.id):
        raise RateLimited(
            f"This API key is limited to {container.settings.rate_limit_per_second:g} requests "
            f"per second; retry in {wait} s.",
            retry_after=wait,
        )
    state = connection.scope.setdefault("state", {})
    state["organisation_id"] = key.organisation_id  # read by the access log
    state["principal"] = Principal(
        organisation_id=key.organisation_id,
        actor=f"apikey:{key.prefix}",
        role=key.role,  # type: ignore[arg-type]
        request_id=state.get("request_id"),
    )


async def _audit_denied(
    container: Container, connection: ASGIConnection[Any, Any, Any, Any]
) -> None:
    """A refused credential is audited without an organisation (none could be known)."""
    async with container.sessions() as session, session.begin():
        record_audit(
            session,
            principal=None,
            actor="anonymous",
            action="auth.denied",
            object_type="route",
            object_id=str(connection.scope.get("path_template", ""))[:64] or None,
            patient_reference=None,
            outcome="unauthenticated",
            now=container.clock(),
        )


async def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.scope["state"]["principal"]
    return principal
