"""Lab status webhooks, signed the Standard Webhooks way (``webhook-id/-timestamp/-signature``).

Thin wrappers around ``standardwebhooks.Webhook`` that fix its sharp edges: a malformed signature
header raises ``ValueError`` in the library (here: ``InvalidSignature``), ``sign`` silently
misreads non-UTC datetimes (here: converted first), and the payload is decoded into a strict
Struct only *after* the signature over the raw bytes checked out. The library enforces a ±5 minute
timestamp window; receivers must still dedupe on ``webhook-id`` because a replay inside the window
verifies.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import msgspec
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from service.domain.text import TEXT_PATTERN, TOKEN_PATTERN
from service.labs.status import LabEventStatus

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format prefix, not a secret
#: Standard Webhooks asks for 24-64 random bytes per endpoint.
MIN_SECRET_BYTES: Final = 24


class InvalidSignature(Exception):
    """Missing, malformed, wrong or out-of-window signature: answer 401 and ignore the body."""


class InvalidEventPayload(ValueError):
    """Correctly signed, but not a lab event we understand: answer 400."""


class InvalidWebhookId(ValueError):
    """The ``webhook-id`` header is not a short visible token: answer 400, store nothing."""


#: Standard Webhooks ids are short tokens (``msg_...``); the id is the dedupe key we store.
_WEBHOOK_ID: Final = re.compile(r"[!-~]{1,255}")
_Token = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=TOKEN_PATTERN)]


class LabEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    type: Literal["order.status"]
    order_id: _Token
    lab_order_id: _Token
    status: LabEventStatus
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]
    message: Annotated[str, msgspec.Meta(max_length=4000, pattern=TEXT_PATTERN)] | None = None


def new_secret() -> str:
    """A fresh ``whsec_`` secret with 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def encode_event(event: LabEvent) -> bytes:
    return msgspec.json.encode(event)


def sign_event(secret: str, msg_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """Headers for one delivery attempt; sign the exact bytes you send."""
    if not msg_id or "." in msg_id or not msg_id.isprintable():
        raise ValueError("webhook id must be non-empty, printable and contain no '.'")
    if timestamp.tzinfo is None:
        raise ValueError("webhook timestamp must be timezone-aware")
    # The library does ``timestamp.replace(tzinfo=UTC)``: hand it UTC or it signs another instant.
    utc = timestamp.astimezone(UTC)
    signature = _webhook(secret).sign(msg_id=msg_id, timestamp=utc, data=body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(utc.timestamp())),
        "webhook-signature": signature,
    }


def verify_event(secret: str, headers: Mapping[str, str], body: bytes) -> LabEvent:
    """Verify the signature over the raw body, then decode it; never parse before verifying."""
    hook = _webhook(secret)
    msg_id = headers.get("webhook-id")
    if msg_id is not None and not _WEBHOOK_ID.fullmatch(msg_id):
        raise InvalidWebhookId("webhook-id must be 1 to 255 visible ASCII characters")
    try:
        hook.verify(body.decode(), dict(headers.items()), json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidSignature(_reason(exc)) from None
    try:
        return msgspec.json.decode(body, type=LabEvent)
    except msgspec.DecodeError as exc:
        raise InvalidEventPayload(str(exc)) from None


def validate_secret(secret: str) -> None:
    """Fail at start-up, not at the first webhook, when a configured secret is unusable."""
    _webhook(secret)


def _webhook(secret: str) -> Webhook:
    """A misconfigured secret is our bug, not the sender's: ``ValueError``, not InvalidSignature."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secret must start with 'whsec_'")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :] + "==", validate=False)
    except binascii.Error:
        raise ValueError("webhook secret is not base64") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"webhook secret must hold at least {MIN_SECRET_BYTES} bytes")
    return Webhook(raw)


def _reason(exc: Exception) -> str:
    if isinstance(exc, WebhookVerificationError):
        return str(exc)
    return "malformed webhook signature headers"
