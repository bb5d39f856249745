"""Request-scoped values for the REST face: the container and the caller (from the API key)."""

from __future__ import annotations

from typing import Any, NoReturn

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from service.api.forwarded import client_host
from service.container import Container
from service.domain.principal import Principal
from service.persistence.refusals import client_key
from service.usecases.errors import RateLimited


def container_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Container:
    container: Container = connection.app.state.container
    return container


async def require_api_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard for every /v1 route: a missing, unknown or revoked key is a 401.

    The organisation comes only from the key; the principal is kept in the request state.
    Refusals are limited per client address (behind ``LABREC_TRUSTED_PROXIES``, the forwarded
    one): once an address has spent its budget, a key this process does not hold as valid is
    looked up only if its prefix is one of an unrevoked key (persistence/key_cache.py), so a
    flood of bogus keys gets 429 without database work while a valid key from the same address
    (NAT, a shared proxy) still works. Every refusal is audited as part of a per-minute aggregate
    (persistence/refusals.py).
    """
    container = container_of(connection)
    address = client_key(client_host(connection, container.settings.trusted_proxies))
    raw = connection.headers.get("x-api-key")
    key = None
    if raw and len(raw) <= 128:
        key = container.api_keys.cached(raw)
        if key is None:
            wait = container.refusal_limit.wait(address)
            if wait and not await container.api_keys.known_prefix(raw):
                _refuse(container, address, wait)
            key = await container.api_keys.find(raw)  # cached briefly: see persistence/key_cache
    if key is None:
        _refuse(container, address, container.refusal_limit.take(address))
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


def _refuse(container: Container, address: str, wait: int) -> NoReturn:
    """401, or 429 once the address's refusal budget is spent; counted, never written here."""
    if wait:
        container.refusals.note(address, "rate_limited")
        raise RateLimited(
            "Too many requests without a valid API key from your address; retry in "
            f"{wait} s with a valid key in the X-API-Key header.",
            retry_after=wait,
        )
    container.refusals.note(address, "unauthenticated")
    raise NotAuthorizedException("Send a valid API key in the X-API-Key header.")


async def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.scope["state"]["principal"]
    return principal
