"""Orders list, order detail with live status (a fragment polled every 2 s), and cancel."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, get_args

from litestar import Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from service.domain.orders import TERMINAL, OrderStatus
from service.ui.context import NO_STORE, Ui
from service.usecases.dto import OrderOut
from service.usecases.errors import Conflict, NotFound

_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STATUSES: Final = get_args(OrderStatus)
PAGE_SIZE: Final = 25


def _order_id(order_id: str) -> str:
    """A malformed id cannot name an order: 404 without touching the database."""
    if not _UUID.match(order_id):
        raise NotFound("No such order.")
    return order_id


@get("/orders", name="ui:orders")
async def list_orders(
    ui: Ui,
    status: Annotated[str | None, QueryParameter(max_length=20)] = None,
    cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
) -> Template:
    chosen = status if status in STATUSES else None
    page = await ui.container.orders.list(
        ui.principal, limit=PAGE_SIZE, status=chosen, patient_reference=None, cursor=cursor
    )
    return ui.page(
        "orders.html",
        orders=page.items,
        next_cursor=page.next_cursor,
        status=chosen or "",
        statuses=STATUSES,
        unknown_status=bool(status) and chosen is None,
    )


def _detail(ui: Ui, order: OrderOut, error: str | None = None, status_code: int = 200) -> Template:
    return ui.page(
        "order.html",
        status_code,
        order=order,
        final=order.status in TERMINAL,
        placed=ui.request.query_params.get("placed") == "1",
        cancelled=ui.request.query_params.get("cancelled") == "1",
        alert=error,
    )


@get("/orders/{order_id:str}", name="ui:order")
async def show_order(ui: Ui, order_id: FromPath[str]) -> Template:
    order = await ui.container.orders.get(ui.principal, _order_id(order_id))
    return _detail(ui, order)


@get("/orders/{order_id:str}/status", name="ui:order-status")
async def order_status(ui: Ui, order_id: FromPath[str]) -> Template:
    """The live part of the order page, polled by static/ui.js."""
    order = await ui.container.orders.get(ui.principal, _order_id(order_id))
    return Template(
        template_name="_order_status.html",
        context={"order": order, "final": order.status in TERMINAL},
        headers=NO_STORE,
    )


@post("/orders/{order_id:str}/cancel", name="ui:order-cancel")
async def cancel_order(ui: Ui, order_id: FromPath[str]) -> Response[Any]:
    orders = ui.container.orders
    try:
        await orders.cancel(ui.principal, _order_id(order_id))
    except Conflict:
        order = await orders.get(ui.principal, order_id)
        message = f"This order can no longer be cancelled: it is {order.status.replace('_', ' ')}."
        return _detail(ui, order, message, 409)
    return Redirect(f"/ui/orders/{order_id}?cancelled=1", status_code=303)
