"""The audit trail: who touched which patient's order, including refusals; append-only."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from service.persistence.models import AuditRecord
from service.persistence.organisations import create_api_key, create_organisation
from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import new_key, order_body


@pytest.fixture
async def api(database_url: str):
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        now = dt.datetime.now(dt.UTC)
        async with container.sessions() as session, session.begin():
            org = await create_organisation(session, "audited", now)
            _, admin = await create_api_key(session, org.id, now, role="admin")
            _, integration = await create_api_key(session, org.id, now)
            other = await create_organisation(session, "other", now)
            _, stranger = await create_api_key(session, other.id, now)
        yield client, container, admin, integration, stranger


async def _rows(container, **where) -> list[AuditRecord]:
    async with container.sessions() as session:
        query = select(AuditRecord).order_by(AuditRecord.id)
        for column, value in where.items():
            query = query.where(getattr(AuditRecord, column) == value)
        return list((await session.execute(query)).scalars())


async def test_order_read_writes_one_row_with_patient_and_request_id(api) -> None:
    client, container, _, integration, _ = api
    key = {"X-API-Key": integration}
    order = (
        await client.post("/v1/orders", json=order_body(), headers={**key, **new_key()})
    ).json()
    response = await client.get(f"/v1/orders/{order['id']}", headers=key)
    reads = await _rows(container, action="order.read", object_id=order["id"])
    assert len(reads) == 1
    row = reads[0]
    assert row.outcome == "success" and row.patient_reference == "ehr-patient-12345"
    assert row.request_id == response.headers["x-request-id"]
    assert row.actor.startswith("apikey:")
    created = await _rows(container, action="order.create", object_id=order["id"])
    assert len(created) == 1


async def test_denied_cross_organisation_read_is_audited(api) -> None:
    client, container, _, integration, stranger = api
    order = (
        await client.post(
            "/v1/orders", json=order_body(), headers={"X-API-Key": integration, **new_key()}
        )
    ).json()
    response = await client.get(f"/v1/orders/{order['id']}", headers={"X-API-Key": stranger})
    assert response.status_code == 404
    denied = await _rows(container, action="order.read", outcome="not_found")
    assert [r.object_id for r in denied] == [order["id"]]
    assert (
        denied[0].organisation_id
        != (await _rows(container, action="order.create"))[0].organisation_id
    )


async def test_listing_records_the_patients_returned(api) -> None:
    client, container, _, integration, _ = api
    key = {"X-API-Key": integration}
    await client.post("/v1/orders", json=order_body(), headers={**key, **new_key()})
    await client.get("/v1/orders", headers=key)
    listed = await _rows(container, action="order.list")
    assert [r.patient_reference for r in listed] == ["ehr-patient-12345"]


async def test_unauthenticated_and_forbidden_attempts_are_audited(api) -> None:
    client, container, _, integration, _ = api
    await client.get("/v1/orders", headers={"X-API-Key": "lrk_wrong"})
    await container.refusals.flush(everything=True)  # refusals are written per minute
    refused = await _rows(container, action="auth.refused")
    assert [(r.outcome, r.count) for r in refused] == [("unauthenticated", 1)]
    forbidden = await client.get("/v1/audit", headers={"X-API-Key": integration})
    assert forbidden.status_code == 403
    assert [r.outcome for r in await _rows(container, action="audit.read")] == ["forbidden"]


async def test_admin_reads_the_trail_and_the_read_is_audited(api) -> None:
    client, container, admin, integration, stranger = api
    await client.post(
        "/v1/orders", json=order_body(), headers={"X-API-Key": integration, **new_key()}
    )
    await client.post("/v1/orders", json=order_body(), headers={"X-API-Key": stranger, **new_key()})
    trail = await client.get(
        "/v1/audit", params={"action": "order.create"}, headers={"X-API-Key": admin}
    )
    assert trail.status_code == 200
    items = trail.json()["items"]
    assert len(items) == 1, "only the caller's organisation"
    assert items[0]["patient_reference"] == "ehr-patient-12345"
    reads = await _rows(container, action="audit.read", outcome="success")
    assert len(reads) == 1


async def test_audit_rows_cannot_be_changed_or_deleted(api) -> None:
    _, container, *_ = api
    async with container.sessions() as session, session.begin():
        session.add(
            AuditRecord(
                at=dt.datetime.now(dt.UTC),
                organisation_id=None,
                actor="t",
                action="x",
                object_type="x",
                object_id=None,
                patient_reference=None,
                outcome="success",
                request_id=None,
            )
        )
    for statement in (
        update(AuditRecord).values(outcome="tampered"),
        delete(AuditRecord),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with container.sessions() as session, session.begin():
                await session.execute(statement)
    async with container.sessions() as session:
        count = (await session.execute(text("SELECT count(*) FROM audit"))).scalar_one()
    assert count >= 1
