"""Use-case errors. Each face maps them to its own error format (problem+json for REST)."""

from __future__ import annotations

import re
from typing import Any, Final

#: What an echoed value must look like: a lower-case catalog id or UUID, or an upper-case code
#: with a digit in it (ICD-10 ``F33.2``, LOINC ``24356-8``, RxNorm ``6130``). Free text (a name
#: typed into the wrong field, a note, markup) is never repeated back: it may be patient data,
#: and it would land in logs, proxies and screens that were never meant to hold it.
_IDENTIFIER: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}|(?=.*[0-9])[A-Z0-9][A-Z0-9.-]{0,19}")


class UseCaseError(Exception):
    """Base: ``status`` is the HTTP status a REST face should answer with."""

    status = 400
    type_slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class InvalidInput(UseCaseError):
    status = 422
    type_slug = "invalid-input"
    title = "The request has values labrec cannot use"


class NotFound(UseCaseError):
    status = 404
    type_slug = "not-found"
    title = "Not found"


class Conflict(UseCaseError):
    status = 409
    type_slug = "conflict"
    title = "Conflict with the current state"


class IdempotencyKeyMissing(UseCaseError):
    status = 400
    type_slug = "idempotency-key-missing"
    title = "Idempotency-Key header required"


class IdempotencyKeyReused(UseCaseError):
    status = 422
    type_slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class IdempotencyInProgress(UseCaseError):
    status = 409
    type_slug = "idempotency-request-in-progress"
    title = "A request with this Idempotency-Key is still being processed"


def shown(value: object) -> str:
    """A submitted value as an error message may show it: quoted if identifier-shaped, else not."""
    text = str(value)
    return f"'{text}'" if _IDENTIFIER.fullmatch(text) else "(a value that is not an id)"


def field_error(path: str, message: str) -> dict[str, Any]:
    return {"field": path, "message": message}


class Forbidden(UseCaseError):
    status = 403
    type_slug = "forbidden"
    title = "Your role may not do this"


class RateLimited(UseCaseError):
    status = 429
    type_slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
