"""The sandbox lab as a Litestar app: a real HTTP FHIR endpoint for development, demos and tests.

Routes are relative to the app root, which is the FHIR base, so the same app serves standalone
(``granian --interface asgi --factory service.labs.sandbox:sandbox_app_from_env``) or mounted
inside labrec under ``/sandbox-lab/fhir`` (``sandbox_mount``).

The drop fault ("the lab processed the order, the answer never arrived") is produced by sending
the response head with the full ``Content-Length`` and half of the body, then raising. Granian
2.8 then closes the connection and the client sees a truncated response (httpx
``RemoteProtocolError``). Raising *before* any body bytes would not do: granian holds the response
head back until the first body chunk and answers a plain 500 instead.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException
from litestar.handlers import ASGIRouteHandler, BaseRouteHandler, HTTPRouteHandler, asgi
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send

from service.labs.sandbox_config import FaultSettings, SandboxConfig
from service.labs.sandbox_state import (
    OrderView,
    Reply,
    RequestKind,
    SandboxLab,
    Stats,
    TransitionError,
)
from service.labs.sandbox_webhooks import Delivery
from service.labs.status import LabOrderStatus

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


class ResponseDropped(RuntimeError):
    """Raised on purpose mid-body so the server aborts the connection (drop fault)."""


class _HalfSentResponse(ASGIResponse):
    """Announces the whole body, sends half of it, then fails: a response lost in transit."""

    async def send_body(self, send: Send, receive: Receive) -> None:
        await send(
            {
                "type": "http.response.body",
                "body": self.body[: max(1, len(self.body) // 2)],
                "more_body": True,
            }
        )
        raise ResponseDropped("sandbox lab: injected dropped response")


def create_sandbox_app(
    config: SandboxConfig, *, webhook_transport: httpx.AsyncBaseTransport | None = None
) -> Litestar:
    """A standalone sandbox lab; its lifespan starts progression and webhook delivery."""
    lab = SandboxLab(config, webhook_transport=webhook_transport)
    return Litestar(
        route_handlers=_routes(lab),
        lifespan=[lab_lifespan(lab)],
        state=State({"sandbox_lab": lab}),
        openapi_config=None,
        logging_config=None,  # the host (or granian) owns logging; never reconfigure it
        debug=False,
    )


def sandbox_app_from_env() -> Litestar:
    """Factory for granian ``--factory``; reads ``LABREC_SANDBOX_*`` (see SandboxConfig)."""
    return create_sandbox_app(SandboxConfig.from_env())


@dataclass(frozen=True)
class SandboxMount:
    """What a host app needs to embed the sandbox: a route handler and a lifespan hook.

    A mounted ASGI app gets no lifespan events of its own, so the host must add ``lifespan``.
    """

    handler: ASGIRouteHandler
    lifespan: Lifespan
    lab: SandboxLab


def sandbox_mount(path: str, config: SandboxConfig, *, token: str) -> SandboxMount:
    """Mount the sandbox under ``path`` of another Litestar app (the path is its FHIR base).

    Every route, FHIR and ``_sandbox/*`` alike, needs ``Authorization: Bearer <token>``: the
    sandbox sees every organisation's orders and can move them, so it is never open to whoever
    reaches the host. labrec's own lab client sends the token.
    """
    app = create_sandbox_app(msgspec.structs.replace(config, control_token=token))
    lab: SandboxLab = app.state.sandbox_lab

    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        if not _has_token(scope, token):
            await _UNAUTHORIZED(scope, receive, send)
            return
        # Our own copy with a fresh state: Litestar caches per-request data in scope["state"] and
        # the host already filled it. Hence copy_scope=False below (set explicitly, since leaving
        # it unset is a DeprecationWarning in Litestar 2.x).
        await app({**scope, "state": {}}, receive, send)  # type: ignore[arg-type]

    handler = asgi(path, is_mount=True, copy_scope=False, opt={"exclude_from_auth": True})
    return SandboxMount(handler=handler(mounted), lifespan=lab_lifespan(lab), lab=lab)


def _has_token(scope: Scope, token: str) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>`` (or ``X-Sandbox-Token``)."""
    offered = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            offered = value[7:].strip()
        elif name == b"x-sandbox-token":
            offered = value.strip()
    return bool(offered) and hmac.compare_digest(offered, token.encode())


_UNAUTHORIZED = ASGIResponse(
    body=msgspec.json.encode(
        {
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "The sandbox lab needs its token: send 'Authorization: Bearer <token>' "
            "(printed by `labrec serve` at start, or LABREC_SANDBOX_TOKEN).",
        }
    ),
    status_code=401,
    media_type="application/problem+json",
    headers={"WWW-Authenticate": 'Bearer realm="sandbox-lab"'},
)


def _token_guard(token: str | None) -> list[Any]:
    """Guard for every route, FHIR and ``_sandbox/*`` alike, when a token is set: the FHIR
    routes read and cancel every order (patient data), so they are no more open than control."""
    if token is None:
        return []

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not _has_token(connection.scope, token):
            raise NotAuthorizedException(
                "The sandbox lab needs its token: send 'Authorization: Bearer <token>' "
                "(LABREC_SANDBOX_TOKEN; labrec sends LABREC_LAB_BEARER_TOKEN)."
            )

    return [guard]


def lab_lifespan(lab: SandboxLab) -> Lifespan:
    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await lab.start()
        try:
            yield
        finally:
            await lab.stop()

    return lifespan


def _routes(lab: SandboxLab) -> list[HTTPRouteHandler]:
    control = _token_guard(lab.config.control_token)

    async def serve(
        request: Request[Any, Any, Any],
        kind: RequestKind,
        reply_for: Callable[[], Awaitable[Reply]],
    ) -> ASGIResponse:
        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        return _to_asgi(await lab.handle(kind, reply_for, disconnected))

    @post("/", status_code=200, guards=control)
    async def submit(request: Request[Any, Any, Any]) -> ASGIResponse:
        body = await request.body()
        key = request.headers.get("idempotency-key")
        return await serve(request, "submit", lambda: lab.submit(body, key))

    @post("/ServiceRequest/$cancel-requisition", status_code=200, guards=control)
    async def cancel(request: Request[Any, Any, Any]) -> ASGIResponse:
        body = await request.body()
        key = request.headers.get("idempotency-key")
        return await serve(request, "cancel", lambda: lab.cancel(body, key))

    @get("/Task", guards=control)
    async def search_tasks(request: Request[Any, Any, Any]) -> ASGIResponse:
        identifier = request.query_params.get("identifier")
        return await serve(request, "read", lambda: lab.search_tasks(identifier))

    @post("/_sandbox/faults", status_code=200, guards=control)
    async def set_faults(data: JSONBody[FaultSettings]) -> FaultSettings:
        await lab.set_faults(data)
        return data

    @get("/_sandbox/faults", guards=control)
    async def get_faults() -> FaultSettings:
        return lab.faults.settings

    @get("/_sandbox/orders", guards=control)
    async def orders() -> list[OrderView]:
        return await lab.orders()

    @get("/_sandbox/stats", guards=control)
    async def stats() -> Stats:
        return await lab.stats()

    @get("/_sandbox/webhooks", guards=control)
    async def webhooks() -> list[Delivery]:
        return lab.deliveries()

    @post("/_sandbox/advance/{order_id:str}", status_code=200, guards=control)
    async def advance(
        order_id: FromPath[str],
        to: FromQuery[LabOrderStatus | None] = None,
        message: FromQuery[str | None] = None,
    ) -> OrderView:
        try:
            return await lab.advance(order_id, to, message)
        except KeyError:
            raise NotFoundException("no such order") from None
        except TransitionError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None

    return [
        submit,
        cancel,
        search_tasks,
        set_faults,
        get_faults,
        orders,
        stats,
        webhooks,
        advance,
    ]


def _to_asgi(reply: Reply) -> ASGIResponse:
    response_class = _HalfSentResponse if reply.lost else ASGIResponse
    return response_class(
        body=reply.body,
        status_code=reply.status,
        media_type=reply.content_type,
        headers=reply.headers,
    )
