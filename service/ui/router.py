"""Wires the practitioner UI: ``ui_handlers()`` for the app factory, plus security headers.

Everything here stays out of the OpenAPI document; errors on these routes are HTML pages.
"""

from __future__ import annotations

from typing import Any, Final

from litestar import Litestar, Request, Router, get
from litestar.datastructures import CacheControlHeader, MutableScopeHeaders
from litestar.di import Provide
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.ui import auth_views, catalog_views, order_views, recommend_views
from service.ui.context import SESSION_COOKIE, accounts_of, provide_ui
from service.ui.errors import UI_EXCEPTION_HANDLERS, error_page
from service.ui.templating import STATIC, STATIC_PATH
from service.ui.throttle import SignInGate

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
_HSTS: Final = b"max-age=31536000; includeSubDomains"


def security_headers(app: ASGIApp) -> ASGIApp:
    """Adds CSP and friends to every UI response, error pages included; HSTS over https."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        https = Litestar.from_scope(scope).state.container.settings.public_url.startswith("https")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in _HEADERS:
                    headers[name.decode()] = value.decode()
                if https:
                    headers["strict-transport-security"] = _HSTS.decode()
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


@get("/", name="ui:home")
async def ui_home(request: Request[Any, Any, Any]) -> Redirect:
    token = request.cookies.get(SESSION_COOKIE, "")
    signed_in = bool(token) and await accounts_of(request).session_for(token) is not None
    return Redirect(auth_views.HOME if signed_in else "/ui/login", status_code=303)


@get("/{path:path}", name="ui:not-found")
async def ui_not_found(request: Request[Any, Any, Any]) -> Template:
    """Any other /ui address: an HTML 404 rather than the API's problem+json."""
    return error_page(request, 404)


@get("/", include_in_schema=False, name="root")
async def root() -> Redirect:
    return Redirect("/ui/", status_code=303)


def ui_router() -> Router:
    gate = SignInGate()

    def provide_sign_in_gate() -> SignInGate:
        return gate

    return Router(
        path="/ui",
        route_handlers=[
            ui_home,
            auth_views.login_page,
            auth_views.login_submit,
            auth_views.logout_page,
            auth_views.logout_submit,
            recommend_views.new_recommendation,
            recommend_views.create_recommendation,
            recommend_views.show_recommendation,
            recommend_views.review_order,
            recommend_views.edit_order,
            recommend_views.place_order,
            order_views.list_orders,
            order_views.show_order,
            order_views.order_status,
            order_views.cancel_order,
            catalog_views.catalog_page,
            catalog_views.panel_page,
            ui_not_found,
        ],
        dependencies={
            "ui": Provide(provide_ui),
            "sign_in_gate": Provide(provide_sign_in_gate, sync_to_thread=False),
        },
        exception_handlers=UI_EXCEPTION_HANDLERS,
        middleware=[security_headers],
        include_in_schema=False,
    )


def ui_handlers() -> list[Any]:
    """The UI router, its static files and the ``/`` redirect, for ``Litestar(route_handlers=)``."""
    static = create_static_files_router(
        path=STATIC_PATH,
        directories=[STATIC],
        name="ui-static",
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=3600, public=True),
        middleware=[security_headers],
    )
    return [ui_router(), static, root]
