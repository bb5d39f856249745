"""Sign-in and sign-out pages.

The sign-in form is protected from login CSRF by a double-submit token (cookie + hidden field),
since there is no session yet to hold a synchronizer token.
"""

from __future__ import annotations

import secrets
from typing import Any, Final

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from service.api.forwarded import client_host
from service.domain.text import has_control_characters
from service.ui.context import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Ui,
    accounts_of,
    container_of,
    expired_cookie,
    is_https,
    render,
    session_cookie,
)
from service.ui.throttle import SignInBusy, SignInGate
from service.usecases.accounts import LOCK_DURATION, MAX_FAILED_ATTEMPTS, SignInRefused

HOME: Final = "/ui/recommendations/new"
WRONG: Final = (
    f"The email or password is wrong. After {MAX_FAILED_ATTEMPTS} failed attempts, sign-in is "
    f"paused for {int(LOCK_DURATION.total_seconds() // 60)} minutes."
)


def _safe_next(raw: object) -> str:
    """Only a path inside the UI: never another host (open redirect)."""
    if isinstance(raw, str) and raw.startswith("/ui/") and "//" not in raw and "\\" not in raw:
        return raw[:500]
    return HOME


def _login_form(
    request: Request[Any, Any, Any],
    *,
    status_code: int = 200,
    email: str = "",
    error: str | None = None,
    next_path: str = HOME,
    signed_out: bool = False,
    field_errors: dict[str, str] | None = None,
) -> Template:
    token = secrets.token_urlsafe(32)
    page = render(
        request,
        "login.html",
        status_code,
        user=None,
        login_csrf=token,
        email=email,
        alert=error,
        next_path=next_path,
        signed_out=signed_out,
        errors=field_errors or {},
    )
    page.set_cookie(
        key=LOGIN_CSRF_COOKIE,
        value=token,
        path="/ui/login",
        httponly=True,
        secure=is_https(request),
        samesite="lax",
    )
    return page


@get("/login", name="ui:login")
async def login_page(request: Request[Any, Any, Any]) -> Response[Any]:
    token = request.cookies.get(SESSION_COOKIE, "")
    next_path = _safe_next(request.query_params.get("next"))
    if token and await accounts_of(request).session_for(token) is not None:
        return Redirect(next_path, status_code=303)
    return _login_form(
        request, next_path=next_path, signed_out=request.query_params.get("signed_out") == "1"
    )


@post("/login", name="ui:login-submit")
async def login_submit(
    request: Request[Any, Any, Any], sign_in_gate: NamedDependency[SignInGate]
) -> Response[Any]:
    form = await request.form()
    email = str(form.get("email") or "").strip()[:254]
    password = str(form.get("password") or "")[:1024]
    next_path = _safe_next(form.get("next"))
    sent = str(form.get("login_csrf") or "")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not (sent and expected and secrets.compare_digest(sent.encode(), expected.encode())):
        return _login_form(
            request,
            status_code=403,
            email=email,
            error="The sign-in form expired. Please sign in again.",
            next_path=next_path,
        )
    errors = {}
    if not email or has_control_characters(email):
        errors["email"] = "Enter your email address."
    if not password:
        errors["password"] = "Enter your password."  # noqa: S105 (a message, not a secret)
    if errors:
        return _login_form(
            request, status_code=422, email=email, next_path=next_path, field_errors=errors
        )
    address = client_host(request, container_of(request).settings.trusted_proxies) or "unknown"
    if not sign_in_gate.failures.reserve(address):
        return _login_form(
            request,
            status_code=429,
            email=email,
            error="Too many failed sign-ins from your network. Wait a few minutes and try again.",
            next_path=next_path,
        )
    failed = True
    try:
        async with sign_in_gate.turn(address, email):
            signed, _user = await accounts_of(request).sign_in(email, password)
        failed = False
    except SignInRefused:
        return _login_form(request, status_code=401, email=email, error=WRONG, next_path=next_path)
    except SignInBusy:
        failed = False  # never evaluated
        return _login_form(
            request,
            status_code=429,
            email=email,
            error="Too many sign-ins are in progress for this account or from your network. "
            "Wait a moment and try again.",
            next_path=next_path,
        )
    finally:
        sign_in_gate.failures.settle(address, failed=failed)
    return Redirect(
        next_path,
        status_code=303,
        cookies=[
            session_cookie(request, signed.token),
            expired_cookie(request, LOGIN_CSRF_COOKIE, "/ui/login"),
        ],
    )


@get("/logout", name="ui:logout")
async def logout_page(ui: Ui) -> Template:
    return ui.page("logout.html")


@post("/logout", name="ui:logout-submit")
async def logout_submit(request: Request[Any, Any, Any], ui: Ui) -> Response[Any]:
    await accounts_of(request).sign_out(request.cookies.get(SESSION_COOKIE, ""))
    return Redirect(
        "/ui/login?signed_out=1",
        status_code=303,
        cookies=[expired_cookie(request, SESSION_COOKIE, "/ui")],
    )
