"""Route x role x organisation matrix, built from the OpenAPI document so new routes are covered.

Every /v1 operation: no, unknown or revoked credential → 401; an admin-only operation with an
integration key → 403; another organisation's object → 404.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from service.persistence.organisations import create_api_key, create_organisation
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import new_key, order_body

ADMIN_ONLY = re.compile(r"^/v1/(admin/|audit)|/requeue$")
#: Operations that do not take an API key (signed webhooks instead).
NOT_API_KEY = {"/v1/lab-events"}


async def _org(container: Any, name: str) -> dict[str, str]:
    now = dt.datetime.now(dt.UTC)
    async with container.sessions() as session, session.begin():
        org = await create_organisation(session, name, now)
        admin, admin_raw = await create_api_key(session, org.id, now, role="admin")
        _, integration_raw = await create_api_key(session, org.id, now)
        revoked, revoked_raw = await create_api_key(session, org.id, now)
        revoked.revoked_at = now
    return {
        "admin": admin_raw,
        "integration": integration_raw,
        "revoked": revoked_raw,
        "admin_key_id": admin.id,
    }


@pytest.fixture
async def world(database_url: str):
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        a = await _org(container, "org-a")
        b = await _org(container, "org-b")
        order_b = await client.post(
            "/v1/orders", json=order_body(), headers={**new_key(), "X-API-Key": b["admin"]}
        )
        assert order_b.status_code == 201
        spec = (await client.get("/schema/openapi.json")).json()
        yield client, spec, a, b, order_b.json()["id"]


def _operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith("/v1/") and path not in NOT_API_KEY
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _fill(path: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"the matrix has no value for path parameter {name} ({path})"
        return values[name]

    return re.sub(r"\{(\w+)\}", value, path)


async def test_matrix(world) -> None:
    client, spec, a, b, order_b = world
    other_org_ids = {
        "order_id": order_b,
        "key_id": b["admin_key_id"],
        "panel_id": "cbc",
        "rule_id": "ketamine-hepatic",
    }
    operations = _operations(spec)
    assert len(operations) >= 12, operations
    checked = 0
    for method, template in operations:
        url = _fill(template, other_org_ids)
        for credential in ("", "lrk_unknown", a["revoked"]):
            response = await client.request(method, url, headers={"X-API-Key": credential}, json={})
            assert response.status_code == 401, (method, template, credential[:8])
            assert response.headers["content-type"].startswith("application/problem+json")
            checked += 1
        if ADMIN_ONLY.search(template):
            response = await client.request(
                method, url, headers={"X-API-Key": a["integration"]}, json={}
            )
            assert response.status_code == 403, (method, template, response.text)
            checked += 1
        if re.search(r"\{(order_id|key_id)\}", template):
            response = await client.request(method, url, headers={"X-API-Key": a["admin"]})
            assert response.status_code == 404, (method, template, response.text)
            checked += 1
    # the other organisation's order is untouched and still its own
    mine = await client.get(f"/v1/orders/{order_b}", headers={"X-API-Key": b["admin"]})
    assert mine.json()["status"] == "queued"
    listed = await client.get("/v1/orders", headers={"X-API-Key": a["admin"]})
    assert listed.json()["items"] == []
    print(f"access matrix: {len(operations)} operations, {checked} checks")


async def test_revoked_key_stops_working_at_once(world) -> None:
    client, _, a, _, _ = world
    created = await client.post(
        "/v1/admin/api-keys", json={"role": "integration"}, headers={"X-API-Key": a["admin"]}
    )
    assert created.status_code == 201
    secret, key_id = created.json()["secret"], created.json()["key"]["id"]
    assert (await client.get("/v1/orders", headers={"X-API-Key": secret})).status_code == 200
    revoked = await client.post(
        f"/v1/admin/api-keys/{key_id}/revoke", headers={"X-API-Key": a["admin"]}
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert (await client.get("/v1/orders", headers={"X-API-Key": secret})).status_code == 401
    listing = (await client.get("/v1/admin/api-keys", headers={"X-API-Key": a["admin"]})).json()
    assert all("secret" not in k and len(k["prefix"]) == 12 for k in listing)


async def test_rotate_replaces_the_key(world) -> None:
    client, _, a, _, _ = world
    rotated = await client.post(
        f"/v1/admin/api-keys/{a['admin_key_id']}/rotate", headers={"X-API-Key": a["admin"]}
    )
    assert rotated.status_code == 201
    new_secret = rotated.json()["secret"]
    assert (await client.get("/v1/orders", headers={"X-API-Key": a["admin"]})).status_code == 401
    assert (await client.get("/v1/orders", headers={"X-API-Key": new_secret})).status_code == 200
