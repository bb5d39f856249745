"""Standard Webhooks signing and verification of lab status events."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from service.labs.webhooks import (
    InvalidEventPayload,
    InvalidSignature,
    LabEvent,
    encode_event,
    new_secret,
    sign_event,
    verify_event,
)

SECRET = new_secret()
EVENT = LabEvent(
    type="order.status",
    order_id="0b6f3c5e-2f7a-4c1d-8e9b-1a2b3c4d5e6f",
    lab_order_id="SBX-1",
    status="in_progress",
    occurred_at=datetime(2026, 11, 4, 8, 0, tzinfo=UTC),
)
BODY = encode_event(EVENT)


def signed(
    body: bytes = BODY, *, at: datetime | None = None, secret: str = SECRET
) -> dict[str, str]:
    return sign_event(secret, "msg_1", at or datetime.now(UTC), body)


def test_valid_event_verifies_and_decodes() -> None:
    assert verify_event(SECRET, signed(), BODY) == EVENT


def test_payload_wire_format() -> None:
    assert msgspec.json.decode(BODY) == {
        "type": "order.status",
        "order_id": EVENT.order_id,
        "lab_order_id": "SBX-1",
        "status": "in_progress",
        "occurred_at": "2026-11-04T08:00:00Z",
    }


def test_optional_message_round_trips() -> None:
    event = msgspec.structs.replace(EVENT, status="rejected", message="specimen hemolysed")
    body = encode_event(event)

    assert verify_event(SECRET, signed(body), body) == event


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in signed().items()}

    assert verify_event(SECRET, headers, BODY) == EVENT


def test_tampered_body_is_rejected() -> None:
    tampered = BODY.replace(b"in_progress", b"resulted")

    with pytest.raises(InvalidSignature):
        verify_event(SECRET, signed(), tampered)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_event(new_secret(), signed(), BODY)


def test_tampered_id_is_rejected() -> None:
    headers = signed() | {"webhook-id": "msg_2"}

    with pytest.raises(InvalidSignature):
        verify_event(SECRET, headers, BODY)


@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (timedelta(minutes=-6), False),
        (timedelta(minutes=-4), True),
        (timedelta(minutes=4), True),
        (timedelta(minutes=6), False),
    ],
    ids=["stale", "recent", "slightly-ahead", "future"],
)
def test_timestamp_window_is_five_minutes(offset: timedelta, ok: bool) -> None:
    headers = signed(at=datetime.now(UTC) + offset)

    if ok:
        assert verify_event(SECRET, headers, BODY) == EVENT
    else:
        with pytest.raises(InvalidSignature, match="timestamp"):
            verify_event(SECRET, headers, BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(missing: str) -> None:
    headers = signed()
    del headers[missing]

    with pytest.raises(InvalidSignature):
        verify_event(SECRET, headers, BODY)


@pytest.mark.parametrize(
    "signature", ["garbage", "v1,not-base64!!", "v2,abc", "", "v1a,AAAA"], ids=repr
)
def test_malformed_signature_header_is_invalid_signature_not_a_crash(signature: str) -> None:
    headers = signed() | {"webhook-signature": signature}

    with pytest.raises(InvalidSignature):
        verify_event(SECRET, headers, BODY)


def test_non_numeric_timestamp_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_event(SECRET, signed() | {"webhook-timestamp": "yesterday"}, BODY)


def test_non_utf8_body_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        verify_event(SECRET, signed(), b"\xff\xfe")


def test_one_matching_signature_among_several_verifies() -> None:
    # During secret rotation a sender signs with the old and the new secret.
    old, new = signed(secret=new_secret()), signed()
    headers = new | {"webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}

    assert verify_event(SECRET, headers, BODY) == EVENT


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "order.status"}',
        encode_event(EVENT).replace(b'"in_progress"', b'"submitted"'),
        encode_event(EVENT)[:-1] + b',"extra":1}',
        encode_event(EVENT).replace(b"2026-11-04T08:00:00Z", b"2026-11-04T08:00:00"),
        b"not json",
    ],
    ids=["incomplete", "unknown-status", "unknown-field", "naive-time", "not-json"],
)
def test_signed_but_invalid_payload_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(InvalidEventPayload):
        verify_event(SECRET, signed(body), body)


def test_timestamp_header_is_true_unix_time_for_non_utc_datetimes() -> None:
    # standardwebhooks' sign() replaces the tzinfo instead of converting; we convert first.
    now = datetime.now(UTC).replace(microsecond=0)
    local = now.astimezone(timezone(timedelta(hours=5)))

    headers = sign_event(SECRET, "msg_1", local, BODY)

    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert verify_event(SECRET, headers, BODY) == EVENT


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg\n1"])
def test_sign_rejects_unusable_ids(msg_id: str) -> None:
    with pytest.raises(ValueError):
        sign_event(SECRET, msg_id, datetime.now(UTC), BODY)


def test_sign_rejects_naive_timestamps() -> None:
    with pytest.raises(ValueError):
        sign_event(SECRET, "msg_1", datetime(2026, 11, 4, 8, 0), BODY)


def test_new_secret_format() -> None:
    secrets = {new_secret() for _ in range(5)}

    assert len(secrets) == 5
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


@pytest.mark.parametrize(
    "secret",
    ["", "c2VjcmV0", "whsec_", "whsec_c2hvcnQ=", "whsec_!!!!"],
    ids=["empty", "no-prefix", "prefix-only", "too-short", "not-base64"],
)
def test_unusable_secrets_are_configuration_errors(secret: str) -> None:
    with pytest.raises(ValueError):
        verify_event(secret, signed(), BODY)
    with pytest.raises(ValueError):
        sign_event(secret, "msg_1", datetime.now(UTC), BODY)
