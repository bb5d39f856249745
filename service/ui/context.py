"""Who is signed in, for every UI page: one composite dependency (session, CSRF, principal).

The session cookie holds a random token; the server keeps its hash, the user and a per-session
CSRF token (synchronizer pattern): every form POST carries ``_csrf`` and must match it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final

from litestar import Request
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.response import Template

from service.container import Container
from service.domain.principal import Principal
from service.usecases.accounts import SESSION_LIFETIME, AccountService, SessionUser

SESSION_COOKIE: Final = "labrec_session"
LOGIN_CSRF_COOKIE: Final = "labrec_login_csrf"
CSRF_FIELD: Final = "_csrf"
NO_STORE: Final = {"Cache-Control": "no-store"}


class LoginRequired(Exception):
    """No valid session: the UI's exception handler sends the browser to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path


class CsrfRejected(Exception):
    """A form POST without the session's CSRF token (stale page or a forged request)."""


def container_of(request: Request[Any, Any, Any]) -> Container:
    container: Container = request.app.state.container
    return container


def accounts_of(request: Request[Any, Any, Any]) -> AccountService:
    container = container_of(request)
    return AccountService(container.sessions, container.clock)


def is_https(request: Request[Any, Any, Any]) -> bool:
    return container_of(request).settings.public_url.startswith("https://")


@dataclass(frozen=True, slots=True)
class UiContext:
    request: Request[Any, Any, Any]
    container: Container
    user: SessionUser
    principal: Principal

    def page(
        self,
        template: str,
        status_code: int = 200,
        **context: Any,
    ) -> Template:
        """Render a full page with what every page needs (user, CSRF token, navigation)."""
        return render(self.request, template, status_code, user=self.user, **context)


#: How a handler asks for the signed-in user: ``ui: Ui``.
Ui = NamedDependency[UiContext]


def render(
    request: Request[Any, Any, Any],
    template: str,
    status_code: int = 200,
    *,
    user: SessionUser | None,
    **context: Any,
) -> Template:
    return Template(
        template_name=template,
        context={
            "user": user,
            "csrf": user.csrf_token if user else "",
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
        headers=NO_STORE,
    )


async def provide_ui(request: Request[Any, Any, Any]) -> UiContext:
    """The signed-in user, or LoginRequired; on POST also the CSRF check."""
    token = request.cookies.get(SESSION_COOKIE, "")
    user = await accounts_of(request).session_for(token) if token else None
    if user is None:
        # After sign-in, come back to the page, but never replay a POST.
        raise LoginRequired(request.url.path if request.method == "GET" else "")
    if request.method == "POST":
        form = await request.form()
        sent = form.get(CSRF_FIELD)
        if not isinstance(sent, str) or not secrets.compare_digest(
            sent.encode(), user.csrf_token.encode()
        ):
            raise CsrfRejected
    state = request.scope.setdefault("state", {})  # read by the access log
    state["organisation_id"] = user.organisation_id
    return UiContext(
        request=request,
        container=container_of(request),
        user=user,
        principal=user.principal(state.get("request_id")),
    )


def session_cookie(request: Request[Any, Any, Any], token: str) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/ui",
        httponly=True,
        secure=is_https(request),
        samesite="lax",
    )


def expired_cookie(request: Request[Any, Any, Any], key: str, path: str) -> Cookie:
    return Cookie(
        key=key,
        value="",
        max_age=0,
        expires=0,
        path=path,
        httponly=True,
        secure=is_https(request),
        samesite="lax",
    )
