"""The CDS Hooks routes: discovery, service calls and feedback (CDS Hooks 2.0 conventions).

Every call carries the EHR's JWT; any authentication failure is one generic 401. Other errors
answer a FHIR OperationOutcome (the 3.0 recommendation): 400 for a malformed call, 404 for an
unknown service, 412 when the patient cannot be obtained.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath

from service.api.forwarded import client_host
from service.api.request import UnreadableRequest
from service.cds.answer import answer_hook
from service.cds.auth import CdsCaller
from service.cds.discovery import DISCOVERY, SERVICES
from service.cds.feedback import parse_feedback
from service.cds.runtime import CdsRuntime
from service.cds.wire import MalformedHookRequest, operation_outcome, parse_hook_request
from service.persistence.refusals import client_key
from service.settings import Settings

_JSON: Final = "application/json"
_UNAUTHORIZED: Final = msgspec.json.encode(
    {
        "type": "https://labrec.dev/problems/unauthorized",
        "title": "Authentication required",
        "status": 401,
        "detail": "Send a valid CDS Hooks JWT in the Authorization header.",
    }
)
_ENCODER: Final = msgspec.json.Encoder()


def runtime_of(request: Request[Any, Any, Any]) -> CdsRuntime:
    runtime: CdsRuntime = request.app.state.cds
    return runtime


def _json(status: int, body: Any) -> Response[bytes]:
    return Response(content=_ENCODER.encode(body), status_code=status, media_type=_JSON)


def _unauthorized() -> Response[bytes]:
    return Response(
        content=_UNAUTHORIZED,
        status_code=401,
        media_type="application/problem+json",
        headers={"WWW-Authenticate": 'Bearer realm="cds-services"'},
    )


def _too_many(wait: int) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(
            {
                "type": "https://labrec.dev/problems/too-many-requests",
                "title": "Too many requests",
                "status": 429,
                "detail": "Too many requests without a valid CDS Hooks JWT from your address; "
                f"retry in {wait} s with a valid JWT in the Authorization header.",
            }
        ),
        status_code=429,
        media_type="application/problem+json",
        headers={"Retry-After": str(wait)},
    )


async def _caller(request: Request[Any, Any, Any], *audiences: str) -> CdsCaller | Response[bytes]:
    """The authenticated caller, or the refusal to send: 401, or 429 once the client address has
    spent its refusal budget (LABREC_AUTH_REFUSALS_PER_MINUTE, shared with the REST face).

    Over budget, only tokens from issuers this process holds as registered are verified, so a
    flood of made-up tokens costs no database or JWKS work; refusals are audited in aggregate.
    """
    runtime = runtime_of(request)
    container = runtime.container
    address = client_key(client_host(request, container.settings.trusted_proxies))
    over_budget = container.refusal_limit.wait(address) > 0
    caller = await runtime.authenticator.authenticate(
        request.headers.get("authorization"),
        [runtime.base_url + a for a in audiences],
        known_only=over_budget,
    )
    if caller is not None:
        return caller
    if wait := container.refusal_limit.take(address):
        container.refusals.note(address, "rate_limited")
        return _too_many(wait)
    container.refusals.note(address, "unauthenticated")
    return _unauthorized()


def _unknown_service() -> Response[bytes]:
    return _json(404, operation_outcome("not-found", "No CDS service with this id."))


def _unreadable(_request: Request[Any, Any, Any], exc: UnreadableRequest) -> Response[bytes]:
    """Raised by the app's request checks (service/api/request.py); answered the CDS way."""
    return _json(400, operation_outcome("structure", exc.detail))


_EXCEPTION_HANDLERS: Final[dict[Any, Any]] = {UnreadableRequest: _unreadable}


def cds_route_handlers(settings: Settings) -> list[BaseRouteHandler]:
    body_limit = settings.cds_max_body_bytes

    @get(
        "/cds-services",
        include_in_schema=False,
        cache=False,
        exception_handlers=_EXCEPTION_HANDLERS,
    )
    async def discovery(request: Request[Any, Any, Any]) -> Response[bytes]:
        if isinstance(refused := await _caller(request, "/cds-services"), Response):
            return refused
        return _json(200, DISCOVERY)

    @post(
        "/cds-services/{service_id:str}",
        include_in_schema=False,
        status_code=200,
        request_max_body_size=body_limit,
        exception_handlers=_EXCEPTION_HANDLERS,
    )
    async def call_service(
        request: Request[Any, Any, Any], service_id: FromPath[str]
    ) -> Response[bytes]:
        caller = await _caller(request, f"/cds-services/{service_id}")
        if isinstance(caller, Response):
            return caller
        service = SERVICES.get(service_id)
        if service is None:
            return _unknown_service()
        try:
            call = parse_hook_request(await request.body())
        except MalformedHookRequest as exc:
            return _json(
                400,
                operation_outcome("structure", "Malformed hook request.", diagnostics=str(exc)),
            )
        if call.hook != service.hook:
            return _json(
                400,
                operation_outcome(
                    "not-supported",
                    f"This service answers the {service.hook} hook only.",
                ),
            )
        answer = await answer_hook(runtime_of(request), caller, service_id, call)
        return _json(answer.status, answer.body)

    @post(
        "/cds-services/{service_id:str}/feedback",
        include_in_schema=False,
        status_code=200,
        request_max_body_size=body_limit,
        exception_handlers=_EXCEPTION_HANDLERS,
    )
    async def feedback(
        request: Request[Any, Any, Any], service_id: FromPath[str]
    ) -> Response[bytes]:
        # aud: the feedback URL, as the spec's "endpoint being called"; the service URL is
        # also accepted because some clients reuse it (jti stays single-use either way).
        caller = await _caller(
            request, f"/cds-services/{service_id}/feedback", f"/cds-services/{service_id}"
        )
        if isinstance(caller, Response):
            return caller
        if service_id not in SERVICES:
            return _unknown_service()
        try:
            items = parse_feedback(await request.body())
        except MalformedHookRequest as exc:
            return _json(
                400, operation_outcome("structure", "Malformed feedback.", diagnostics=str(exc))
            )
        runtime = runtime_of(request)
        principal = caller.principal()
        await runtime.feedback.record(principal, service_id, items)
        return _json(200, {})

    return [discovery, call_service, feedback]
