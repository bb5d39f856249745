"""Orders: idempotent intake, reads, cancel. The organisation always comes from the API key."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from service.api.deps import container_of
from service.api.problems import problem_responses
from service.domain.orders import OrderStatus
from service.domain.principal import Principal
from service.usecases.dto import OrderOut, OrderPage, OrderRequest
from service.usecases.errors import IdempotencyKeyMissing, NotFound, shown

#: 1-255 characters from [A-Za-z0-9_-], optionally quoted (draft-ietf-httpapi-idempotency-key).
_KEY: Final = re.compile(r'^"?([A-Za-z0-9_-]{1,255})"?$')
_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="Required. 1-255 characters from A-Z a-z 0-9 _ -; kept 72 hours. The same key "
        "with the same body replays the first response; with another body it is refused.",
        max_length=257,
    ),
]


def _order_id(order_id: str) -> str:
    """A malformed id cannot name an order: answer 404 without touching the database."""
    if not _UUID.match(order_id):
        raise NotFound(f"No order {shown(order_id)} in your organisation.")
    return order_id


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]

    @post(
        summary="Place an order (idempotent)",
        status_code=201,
        responses=problem_responses(400, 401, 409, 413, 422, 429),
    )
    async def place(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[OrderRequest],
        principal: NamedDependency[Principal],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[OrderOut]:
        match = _KEY.match(idempotency_key or "")
        if match is None:
            raise IdempotencyKeyMissing(
                "Send an Idempotency-Key header (1-255 characters from A-Z a-z 0-9 _ -), e.g. a "
                "UUID, and reuse it when you retry this same order."
            )
        result = await container_of(request).orders.place(principal, match.group(1), data)
        headers = {"Location": f"/v1/orders/{result.body.get('id', '')}"}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(result.body, status_code=result.status, headers=headers)  # type: ignore[arg-type]

    @get(
        summary="List orders, newest first",
        responses=problem_responses(400, 401, 422, 429),
    )
    async def list_orders(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        status: FromQuery[OrderStatus | None] = None,
        patient_reference: Annotated[str | None, QueryParameter(max_length=128)] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> OrderPage:
        return await container_of(request).orders.list(
            principal,
            limit=limit,
            status=status,
            patient_reference=patient_reference,
            cursor=cursor,
        )

    @get(
        "/{order_id:str}",
        summary="One order with its status and attempt history",
        responses=problem_responses(400, 401, 404, 429),
    )
    async def get_order(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        order_id: FromPath[str],
    ) -> OrderOut:
        return await container_of(request).orders.get(principal, _order_id(order_id))

    @post(
        "/{order_id:str}/cancel",
        summary="Cancel an order not yet resulted",
        status_code=200,
        responses=problem_responses(400, 401, 404, 409, 429),
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        order_id: FromPath[str],
    ) -> OrderOut:
        return await container_of(request).orders.cancel(principal, _order_id(order_id))

    @post(
        "/{order_id:str}/requeue",
        summary="Send a failed order to the lab again (admins)",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 429),
    )
    async def requeue(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        order_id: FromPath[str],
    ) -> OrderOut:
        container = container_of(request)
        await container.admin.require_admin(principal, "order.requeue")
        return await container.orders.requeue(_order_id(order_id), principal)
