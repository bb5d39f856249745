"""Orders over HTTP: idempotency matrix, validation, tenancy, listing, cancel — both databases."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import new_key, order_body, tenant


@pytest.fixture
async def api(database_url: str):
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        key = await tenant(container)
        client.headers["X-API-Key"] = key
        yield client, container


async def test_place_order_returns_201_queued_and_location(api) -> None:
    client, _ = api
    response = await client.post("/v1/orders", json=order_body(), headers=new_key())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert [p["id"] for p in body["panels"]] == ["hepatic-function-panel", "urinalysis"]
    assert response.headers["location"] == f"/v1/orders/{body['id']}"
    fetched = await client.get(f"/v1/orders/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["patient"]["reference"] == "ehr-patient-12345"


async def test_missing_or_malformed_idempotency_key_is_400(api) -> None:
    client, _ = api
    for headers in ({}, {"Idempotency-Key": "has spaces"}, {"Idempotency-Key": "x" * 256}):
        response = await client.post("/v1/orders", json=order_body(), headers=headers)
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("idempotency-key-missing")


async def test_same_key_same_body_replays_the_first_response(api) -> None:
    client, _ = api
    headers = new_key()
    first = await client.post("/v1/orders", json=order_body(), headers=headers)
    second = await client.post("/v1/orders", json=order_body(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    listing = (await client.get("/v1/orders")).json()
    assert [o["id"] for o in listing["items"]] == [first.json()["id"]]


async def test_same_key_other_body_is_422(api) -> None:
    client, _ = api
    headers = new_key()
    await client.post("/v1/orders", json=order_body(), headers=headers)
    other = await client.post("/v1/orders", json=order_body(panel_ids=["cbc"]), headers=headers)
    assert other.status_code == 422
    assert other.json()["type"].endswith("idempotency-key-reused")


async def test_concurrent_requests_with_one_key_make_one_order(api) -> None:
    client, _ = api
    headers = new_key()
    responses = await asyncio.gather(
        *(client.post("/v1/orders", json=order_body(), headers=headers) for _ in range(5))
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    for r in responses:
        if r.status_code == 409:
            assert r.headers["retry-after"] == "1"
    assert len((await client.get("/v1/orders")).json()["items"]) == 1


async def test_in_flight_key_answers_409(api) -> None:
    """A reservation still in flight (the same request mid-way elsewhere) is reported, not
    waited on; a different body under that key is a mismatch."""
    import datetime as dt
    import hashlib

    import msgspec

    from service.persistence import idempotency
    from service.usecases.dto import OrderRequest

    client, container = api
    key = str(uuid.uuid4())
    request = msgspec.convert(order_body(), OrderRequest)
    encoder = msgspec.json.Encoder(order="deterministic")
    reserved = await idempotency.reserve(
        container.sessions,
        organisation_id=await _org_of(container, client),
        scope="POST /v1/orders",
        key=key,
        fingerprint=hashlib.sha256(encoder.encode(request)).hexdigest(),
        now=container.clock(),
        ttl=dt.timedelta(hours=1),
    )
    assert isinstance(reserved, idempotency.Reserved)
    same = await client.post("/v1/orders", json=order_body(), headers={"Idempotency-Key": key})
    assert same.status_code == 409
    assert same.headers["retry-after"] == "1"
    assert same.json()["type"].endswith("idempotency-request-in-progress")
    other = await client.post(
        "/v1/orders", json=order_body(panel_ids=["cbc"]), headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422


async def _org_of(container, client) -> str:
    key = await container.api_keys.find(client.headers["X-API-Key"])
    assert key is not None
    return key.organisation_id


async def test_unknown_panels_are_named(api) -> None:
    client, _ = api
    response = await client.post(
        "/v1/orders", json=order_body(panel_ids=["cbc", "nope-panel"]), headers=new_key()
    )
    assert response.status_code == 422
    assert "nope-panel" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "field,value",
    [("status", "resulted"), ("organisation_id", "other"), ("price", 1)],
)
async def test_mass_assignment_is_refused_and_nothing_stored(
    api, field: str, value: object
) -> None:
    client, _ = api
    response = await client.post(
        "/v1/orders", json={**order_body(), field: value}, headers=new_key()
    )
    assert response.status_code == 422
    assert (await client.get("/v1/orders")).json()["items"] == []


async def test_other_organisation_sees_404_and_empty_list(api) -> None:
    client, container = api
    created = (await client.post("/v1/orders", json=order_body(), headers=new_key())).json()
    other_key = await tenant(container)
    other = {"X-API-Key": other_key}
    assert (await client.get(f"/v1/orders/{created['id']}", headers=other)).status_code == 404
    cancel = await client.post(f"/v1/orders/{created['id']}/cancel", headers=other)
    assert cancel.status_code == 404
    assert (await client.get("/v1/orders", headers=other)).json()["items"] == []
    # the same idempotency key in another organisation is a separate order
    headers = {"Idempotency-Key": "shared-key-1", **other}
    mine = await client.post(
        "/v1/orders", json=order_body(), headers={"Idempotency-Key": "shared-key-1"}
    )
    theirs = await client.post("/v1/orders", json=order_body(), headers=headers)
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


async def test_missing_or_bad_api_key_is_401(api) -> None:
    client, _ = api
    for headers in ({"X-API-Key": ""}, {"X-API-Key": "lrk_not-a-key"}):
        response = await client.get("/v1/orders", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_cancel_queued_order_withdraws_it(api) -> None:
    client, container = api
    created = (await client.post("/v1/orders", json=order_body(), headers=new_key())).json()
    cancelled = await client.post(f"/v1/orders/{created['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = await client.post(f"/v1/orders/{created['id']}/cancel")
    assert again.status_code == 409
    from service.persistence.outbox import messages_for

    async with container.sessions() as session:
        messages = await messages_for(session, created["id"])
    assert [m.status for m in messages] == ["withdrawn"]


async def test_list_paginates_and_filters(api) -> None:
    client, _ = api
    ids = []
    for i in range(5):
        body = order_body()
        body["patient"] = {**body["patient"], "reference": f"p-{i % 2}"}
        ids.append((await client.post("/v1/orders", json=body, headers=new_key())).json()["id"])
    page1 = (await client.get("/v1/orders", params={"limit": 2})).json()
    page2 = (
        await client.get("/v1/orders", params={"limit": 2, "cursor": page1["next_cursor"]})
    ).json()
    page3 = (
        await client.get("/v1/orders", params={"limit": 2, "cursor": page2["next_cursor"]})
    ).json()
    seen = [o["id"] for o in page1["items"] + page2["items"] + page3["items"]]
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 5
    assert page3["next_cursor"] is None
    only_p1 = (await client.get("/v1/orders", params={"patient_reference": "p-1"})).json()
    assert len(only_p1["items"]) == 2
    assert (await client.get("/v1/orders", params={"limit": 1000})).status_code == 400
    bad = await client.get("/v1/orders", params={"cursor": "!!!"})
    assert bad.status_code == 422


async def test_malformed_order_id_is_404(api) -> None:
    client, _ = api
    assert (await client.get("/v1/orders/not-a-uuid")).status_code == 404
