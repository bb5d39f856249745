"""Refused admin actions on another organisation's ids are audited, /v1 answers are never cached,
and the server does not announce Granian (issue 10, finding 10 and "Also")."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from service.persistence.models import AuditRecord, Order
from service.persistence.organisations import create_api_key, create_organisation
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import ketamine_context, new_key, order_body
from tests.support.processes import labrec_server

SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@pytest.fixture
async def two_orgs(database_url: str):
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        now = dt.datetime.now(dt.UTC)
        async with container.sessions() as session, session.begin():
            home = await create_organisation(session, "home", now)
            home_key, home_admin = await create_api_key(session, home.id, now, role="admin")
            other = await create_organisation(session, "other", now)
            _, other_admin = await create_api_key(session, other.id, now, role="admin")
        yield client, container, home_key.id, home_admin, other.id, other_admin


async def _refusals(container, action: str) -> list[AuditRecord]:
    async with container.sessions() as session:
        query = select(AuditRecord).where(
            AuditRecord.action == action, AuditRecord.outcome == "not_found"
        )
        return list((await session.execute(query)).scalars())


async def test_cross_organisation_requeue_revoke_rotate_are_refused_and_audited(two_orgs) -> None:
    client, container, home_key_id, home_admin, other_id, other_admin = two_orgs
    order = (
        await client.post(
            "/v1/orders", json=order_body(), headers={"X-API-Key": home_admin, **new_key()}
        )
    ).json()
    async with container.sessions() as session, session.begin():
        row = await session.get(Order, order["id"])
        assert row is not None
        row.status = "failed"  # requeue-able, so only the organisation check can refuse it
    stranger = {"X-API-Key": other_admin}

    requeue = await client.post(f"/v1/orders/{order['id']}/requeue", headers=stranger)
    revoke = await client.post(f"/v1/admin/api-keys/{home_key_id}/revoke", headers=stranger)
    rotate = await client.post(f"/v1/admin/api-keys/{home_key_id}/rotate", headers=stranger)

    assert [requeue.status_code, revoke.status_code, rotate.status_code] == [404, 404, 404]
    for action, object_id in [
        ("order.requeue", order["id"]),
        ("apikey.revoke", home_key_id),
        ("apikey.rotate", home_key_id),
    ]:
        rows = await _refusals(container, action)
        assert [(r.object_id, r.organisation_id) for r in rows] == [(object_id, other_id)], action
        assert rows[0].actor.startswith("apikey:") and rows[0].patient_reference is None
        assert rows[0].request_id is not None
    # nothing happened to the home organisation's order or key
    still = await client.get(f"/v1/orders/{order['id']}", headers={"X-API-Key": home_admin})
    assert still.status_code == 200 and still.json()["status"] == "failed"


async def test_every_v1_answer_says_no_store(two_orgs) -> None:
    client, _, _, home_admin, _, _ = two_orgs
    key = {"X-API-Key": home_admin}
    created = await client.post("/v1/orders", json=order_body(), headers={**key, **new_key()})
    order_id = created.json()["id"]
    answers = {
        "recommend": await client.post("/v1/recommendations", json=ketamine_context(), headers=key),
        "create": created,
        "read": await client.get(f"/v1/orders/{order_id}", headers=key),
        "list": await client.get("/v1/orders", headers=key),
        "cancel": await client.post(f"/v1/orders/{order_id}/cancel", headers=key),
        "audit": await client.get("/v1/audit", headers=key),
        "keys": await client.get("/v1/admin/api-keys", headers=key),
        "catalog": await client.get("/v1/catalog/panels", headers=key),
        "unauthenticated": await client.get("/v1/orders"),
        "not found": await client.get("/v1/orders/nope", headers=key),
        "invalid": await client.post("/v1/recommendations", json={"therapy": 1}, headers=key),
        "no route": await client.get("/v1/nowhere", headers=key),
    }
    assert {name: r.headers.get("cache-control") for name, r in answers.items()} == dict.fromkeys(
        answers, "no-store"
    )
    assert answers["read"].status_code == 200 and answers["audit"].status_code == 200


def test_real_server_has_no_granian_banner_and_no_store_over_http(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "LABREC_DATABASE_URL": database_url,
        "LABREC_LAB_BASE_URL": "http://127.0.0.1:9/fhir",
        "LABREC_LAB_WEBHOOK_SECRET": SECRET,
        "LABREC_DISPATCH_IN_PROCESS": "false",
    }
    with labrec_server(tmp_path, env) as base:
        answers = [
            httpx.get(f"{base}{path}", timeout=10)
            for path in (
                "/health/live",
                "/v1/orders",
                "/nowhere",
                "/ui/login",
                "/schema/openapi.json",
            )
        ]
    for response in answers:
        assert response.headers.get_list("server") == ["labrec"], response.url
    assert answers[1].status_code == 401 and answers[1].headers["cache-control"] == "no-store"
