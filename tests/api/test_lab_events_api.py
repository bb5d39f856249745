"""POST /v1/lab-events: the Standard Webhooks signature matrix and in-order, idempotent status."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from service.labs.webhooks import LabEvent, encode_event, new_secret, sign_event
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import new_key, order_body, tenant

SECRET = new_secret()


@pytest.fixture
async def api(database_url: str):
    settings = make_settings(
        database_url, lab_base_url="http://lab.invalid/fhir", lab_webhook_secret=SECRET
    )
    async with running_app(settings, run_worker=False) as (client, container):
        client.headers["X-API-Key"] = await tenant(container)
        order = (await client.post("/v1/orders", json=order_body(), headers=new_key())).json()
        yield client, order["id"]


def _event(order_id: str, status: str, **kw: object) -> bytes:
    return encode_event(
        LabEvent(
            type="order.status",
            order_id=order_id,
            lab_order_id="ACC-1",
            status=status,  # type: ignore[arg-type]
            occurred_at=dt.datetime.now(dt.UTC),
            **kw,  # type: ignore[arg-type]
        )
    )


async def _deliver(
    client,
    body: bytes,
    *,
    secret: str = SECRET,
    msg_id: str | None = None,
    at: dt.datetime | None = None,
    skew: dt.timedelta | None = None,
    tamper: bool = False,
):
    headers = sign_event(
        secret,
        msg_id or f"msg_{uuid.uuid4().hex}",
        at or dt.datetime.now(dt.UTC) + (skew or dt.timedelta()),
        body,
    )
    sent = body.replace(b"ACC-1", b"ACC-2") if tamper else body
    return await client.post(
        "/v1/lab-events",
        content=sent,
        headers={**headers, "content-type": "application/json", "X-API-Key": ""},
    )


async def _status(client, order_id: str) -> str:
    return (await client.get(f"/v1/orders/{order_id}")).json()["status"]


async def test_valid_event_moves_the_order(api) -> None:
    client, order_id = api
    response = await _deliver(client, _event(order_id, "received"))
    assert response.status_code == 200
    assert response.json() == {"outcome": "applied"}
    assert await _status(client, order_id) == "received"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tamper": True},
        {"secret": new_secret()},
        {"skew": dt.timedelta(minutes=-6)},  # from the moment of sending, not of collection
        {"skew": dt.timedelta(minutes=6)},
    ],
    ids=["tampered-body", "wrong-secret", "stale", "future"],
)
async def test_bad_signatures_are_401_and_change_nothing(api, kwargs: dict) -> None:
    client, order_id = api
    response = await _deliver(client, _event(order_id, "received"), **kwargs)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await _status(client, order_id) == "queued"


async def test_missing_signature_is_401(api) -> None:
    client, order_id = api
    response = await client.post(
        "/v1/lab-events",
        content=_event(order_id, "received"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 401


async def test_replayed_webhook_id_is_acknowledged_and_ignored(api) -> None:
    client, order_id = api
    body = _event(order_id, "received")
    first = await _deliver(client, body, msg_id="msg_same")
    again = await _deliver(client, body, msg_id="msg_same")
    assert first.json()["outcome"] == "applied"
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"


async def test_out_of_order_events_never_move_backwards(api) -> None:
    client, order_id = api
    assert (await _deliver(client, _event(order_id, "in_progress"))).json()["outcome"] == "applied"
    late = await _deliver(client, _event(order_id, "received"))
    assert late.json()["outcome"] == "ignored"
    assert await _status(client, order_id) == "in_progress"
    await _deliver(client, _event(order_id, "resulted"))
    assert await _status(client, order_id) == "resulted"
    history = (await client.get(f"/v1/orders/{order_id}")).json()["attempts"]
    assert [a["outcome"] for a in history if a["kind"] == "lab_event"] == [
        "applied",
        "ignored",
        "applied",
    ]


async def test_unknown_order_is_acknowledged(api) -> None:
    client, _ = api
    response = await _deliver(client, _event(str(uuid.uuid4()), "received"))
    assert response.status_code == 200 and response.json()["outcome"] == "unknown_order"


async def test_signed_garbage_is_422(api) -> None:
    client, _ = api
    response = await _deliver(client, b'{"type": "something.else"}')
    assert response.status_code == 422
