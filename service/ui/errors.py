"""Errors on UI routes are HTML pages in plain words (REST keeps problem+json).

Registered on the UI router only. Like the REST handlers, nothing here echoes submitted values or
logs more than the error's type.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect, Template
from litestar.types import ExceptionHandlersMap

from service.ui.context import CsrfRejected, LoginRequired, render
from service.usecases.errors import UseCaseError

log = logging.getLogger("labrec.ui")

_MESSAGES: Final = {
    400: ("The request could not be read", "Something in the address or form was not valid."),
    401: ("Please sign in", "Sign in to continue."),
    403: ("Not allowed", "You are not allowed to do this."),
    404: ("Not found", "There is nothing here, or it belongs to another organisation."),
    405: ("Not allowed", "This page does not accept that kind of request."),
    409: ("Cannot do that now", "The item changed in the meantime; reload and try again."),
    413: ("Too much data", "The form sent more data than labrec accepts."),
    422: ("Please check the values", "Some values cannot be used."),
    429: ("Too many attempts", "Wait a few minutes and try again."),
}


def error_page(
    request: Request[Any, Any, Any], status: int, message: str | None = None
) -> Template:
    title, default = _MESSAGES.get(status, ("Something went wrong", "Please try again."))
    return render(
        request,
        "error.html",
        status,
        user=None,
        title=title,
        message=message or default,
        status=status,
    )


def _login_required(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    query = urlencode({"next": exc.next_path}) if exc.next_path.startswith("/ui/") else ""
    return Redirect(f"/ui/login?{query}" if query else "/ui/login", status_code=303)


def _csrf(request: Request[Any, Any, Any], _exc: CsrfRejected) -> Response[Any]:
    return error_page(
        request,
        403,
        "This form has expired or did not come from labrec. Go back, reload the page and try "
        "again.",
    )


def _usecase(request: Request[Any, Any, Any], exc: UseCaseError) -> Response[Any]:
    return error_page(request, exc.status, exc.detail if exc.status != 404 else None)


def _validation(request: Request[Any, Any, Any], _exc: ValidationException) -> Response[Any]:
    return error_page(request, 400)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        log.error("ui: HTTP %s on %s", status, request.scope.get("path_template", "?"))
    return error_page(request, status)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("ui: unhandled %s on %s", type(exc).__name__, request.scope.get("path_template", "?"))
    return error_page(request, 500, "Something went wrong on our side. Please try again.")


UI_EXCEPTION_HANDLERS: Final[ExceptionHandlersMap] = {
    LoginRequired: _login_required,
    CsrfRejected: _csrf,
    UseCaseError: _usecase,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unexpected,
}
