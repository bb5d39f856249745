"""One mapping of every error to RFC 9457 problem+json.

Validation messages name the field and what is allowed, never echo submitted values (they may be
patient data). Unexpected errors are logged by type only and answered with a generic 500.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any, Final

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from service.domain.text import LINE_PATTERN, TEXT_PATTERN, TOKEN_PATTERN
from service.usecases.errors import IdempotencyInProgress, RateLimited, UseCaseError

log = logging.getLogger("labrec.errors")

PROBLEM_BASE: Final = "https://labrec.dev/problems/"
_PROBLEM_JSON: Final = "application/problem+json"
_TITLES: Final = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "The request has values labrec cannot use",
    429: "Too many requests",
}
_SLUGS: Final = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    429: "rate-limited",
}
#: msgspec messages quote the offending value after "got"/"Invalid enum value"; keep the shape only.
_VALUE_QUOTES: Final = re.compile(r"(Invalid enum value|Invalid value) '[^']*'")
#: An unknown field is named only when it looks like a field name (not free text).
_UNKNOWN_FIELD: Final = re.compile(r"unknown field `(?![A-Za-z_][A-Za-z0-9_]{0,40}`)[^`]*`")
#: msgspec quotes the whole regex a string failed; say what it means instead.
_PATTERNS: Final = {
    LINE_PATTERN: "one line of text without control characters",
    TEXT_PATTERN: "text without control characters (line breaks and tabs are fine)",
    TOKEN_PATTERN: "an id without spaces or control characters",
}
_ANY_PATTERN: Final = re.compile(r"`str` matching regex '.*'(?= - at |$)")


def problem(
    request: Request[Any, Any, Any],
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _SLUGS.get(status, "error")),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        # The request id; never the path, which can hold whatever the client put there.
        "instance": request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex,
    }
    if errors:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=_PROBLEM_JSON, headers=headers)


def _items(exc: ValidationException) -> list[dict[str, Any]]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    return [item for item in extra if isinstance(item, dict)]


def _validation_errors(exc: ValidationException) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for item in _items(exc):
        message = _VALUE_QUOTES.sub(r"\1", str(item.get("message", "invalid")))
        message = _UNKNOWN_FIELD.sub("unknown field", message)
        for pattern, meaning in _PATTERNS.items():
            message = message.replace(f"`str` matching regex '{pattern}'", meaning)
        message = _ANY_PATTERN.sub(
            "text in the documented format (see the OpenAPI schema)", message
        )
        key = str(item.get("key") or "")
        source = item.get("source")
        field = key.removeprefix("$.").removeprefix("$") if key else (source or "body")
        errors.append({"field": field or "body", "message": message})
    return errors


def handle_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    errors = _validation_errors(exc)
    detail = str(exc.detail or "")
    if "decode" in detail.lower() or "malformed" in detail.lower() or "JSON" in detail:
        return problem(
            request, 400, "The body is not valid JSON.", slug="malformed-json", errors=errors
        )
    if not errors:
        return problem(request, 400, detail or "The request is malformed.")
    if all(item.get("source") not in (None, "body") for item in _items(exc)):
        return problem(
            request,
            400,
            "A query, path or header parameter is invalid; see errors[].",
            errors=errors,
        )
    return problem(
        request,
        422,
        "The request does not match the expected shape; see errors[] for each field.",
        errors=errors,
    )


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    detail = exc.detail if status < 500 else "Something went wrong on our side."
    if status == 413:
        detail = "The request body is larger than labrec accepts."
    return problem(request, status, detail, headers=exc.headers)


def handle_usecase(request: Request[Any, Any, Any], exc: UseCaseError) -> Response[dict[str, Any]]:
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, IdempotencyInProgress):
        headers = {"Retry-After": "1"}
    return problem(
        request,
        exc.status,
        exc.detail,
        slug=exc.type_slug,
        title=exc.title,
        errors=exc.errors,
        headers=headers,
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("unhandled %s on %s", type(exc).__name__, request.scope.get("path_template", "?"))
    return problem(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Something went wrong on our side; the request id is in 'instance'.",
    )


EXCEPTION_HANDLERS: Final = {
    ValidationException: handle_validation,
    UseCaseError: handle_usecase,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True):
    """RFC 9457 problem details as labrec sends them."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = None


_DESCRIPTIONS: Final = {
    400: "Malformed request (JSON, parameters or headers)",
    401: "Missing, unknown or revoked credential",
    403: "The credential's role may not do this",
    404: "No such object in your organisation",
    409: "Conflicts with the current state (or an Idempotency-Key still in flight)",
    413: "Request body too large",
    422: "Values labrec cannot use; errors[] names each field",
    429: "Rate limit exceeded; see Retry-After",
}


def problem_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem+json answers an operation can give."""
    return {
        code: ResponseSpec(
            data_container=Problem,
            media_type=_PROBLEM_JSON,
            description=_DESCRIPTIONS[code],
            generate_examples=False,
        )
        for code in codes
    }
