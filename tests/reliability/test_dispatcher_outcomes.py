"""Dispatcher outcomes against a lab mocked at the true edge (httpx.MockTransport): rejection,
retry budget, re-queue, cancel hand-off, Retry-After; and the reconciliation poll against the
real sandbox lab."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import httpx
import msgspec

from service.container import build_container
from service.domain.principal import Principal
from service.labs.webhooks import new_secret
from service.persistence.organisations import create_organisation
from service.usecases.dispatch import RetryPolicy
from service.usecases.dto import OrderRequest
from service.worker import build_dispatcher, reconcile_once
from tests.conftest import make_settings
from tests.support.builders import order_body
from tests.support.processes import sandbox_lab

SECRET = new_secret()
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _accepting(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("$cancel-requisition"):
        return httpx.Response(
            200, json={"resourceType": "Task", "id": "T-1", "status": "cancelled"}
        )
    return httpx.Response(
        200,
        json={
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [
                {
                    "response": {"status": "201 Created", "location": "ServiceRequest/LAB-1"},
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "id": "LAB-1",
                        "identifier": [
                            {
                                "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                                "system": "urn:lab",
                                "value": "ACC-42",
                            }
                        ],
                    },
                }
            ],
        },
    )


async def _setup(url: str, handler, **overrides):
    settings = make_settings(
        url, lab_base_url="http://lab.test/fhir", lab_webhook_secret=SECRET, **overrides
    )
    container = build_container(settings, lab_transport=httpx.MockTransport(handler))
    now = dt.datetime.now(dt.UTC)
    async with container.sessions() as session, session.begin():
        org = await create_organisation(session, "o", now)
    principal = Principal(organisation_id=org.id, actor="t", role="admin")
    placed = await container.orders.place(
        principal, "k1", msgspec.convert(order_body(), OrderRequest)
    )
    return container, principal, placed.body["id"]


async def _drain(container, rounds: int = 50) -> None:
    dispatcher = build_dispatcher(container)
    for _ in range(rounds):
        await dispatcher.run_once()


async def test_lab_4xx_rejects_with_the_labs_message(database_url: str) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            json={
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "invalid", "diagnostics": "NPI unknown"}],
            },
        )

    container, principal, order_id = await _setup(database_url, refuse)
    try:
        await _drain(container, 2)
        order = await container.orders.get(principal, order_id)
    finally:
        await container.aclose()
    assert order.status == "rejected"
    assert "NPI unknown" in (order.status_detail or "")
    assert [a.outcome for a in order.attempts if a.kind == "submit"] == ["rejected"]


async def test_retry_budget_fails_then_requeue_delivers(database_url: str) -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(503) if calls["n"] <= 3 else _accepting(request)

    container, principal, order_id = await _setup(
        database_url,
        flaky,
        dispatch_max_attempts=3,
        dispatch_backoff_base=0.001,
        dispatch_backoff_max=0.001,
    )
    try:
        await _drain(container, 20)
        failed = await container.orders.get(principal, order_id)
        assert failed.status == "failed"
        assert "requeue" in (failed.status_detail or "")
        await container.orders.requeue(order_id)
        await _drain(container, 5)
        done = await container.orders.get(principal, order_id)
    finally:
        await container.aclose()
    assert done.status == "submitted" and done.lab_order_id == "ACC-42"
    assert [a.outcome for a in done.attempts if a.kind == "submit"] == [
        "retrying",
        "retrying",
        "gave_up",
        "accepted",
    ]


async def test_cancel_after_submission_tells_the_lab(database_url: str) -> None:
    seen: list[str] = []

    def lab(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return _accepting(request)

    container, principal, order_id = await _setup(database_url, lab)
    try:
        await _drain(container, 2)
        cancelled = await container.orders.cancel(principal, order_id)
        assert cancelled.status == "cancelled"
        await _drain(container, 2)
        order = await container.orders.get(principal, order_id)
    finally:
        await container.aclose()
    assert seen == ["/fhir", "/fhir/ServiceRequest/$cancel-requisition"]
    assert [(a.kind, a.outcome) for a in order.attempts][-1] == ("cancel", "accepted")


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(base=2.0, cap=60.0, max_attempts=10)
    rng = random.Random(1)
    delays = [policy.delay(n, None, rng) for n in range(1, 9)]
    assert all(1.0 <= d <= 60.0 for d in delays)
    assert delays[0] <= 2.0 and delays[-1] >= 30.0
    assert policy.delay(1, 45.0, rng) >= 45.0
    assert policy.delay(1, 10_000.0, rng) == 60.0


async def test_reconciliation_picks_up_missed_events(database_url: str, tmp_path: Path) -> None:
    with sandbox_lab(tmp_path) as lab:
        settings = make_settings(
            database_url, lab_base_url=lab, lab_webhook_secret=SECRET, reconcile_after_seconds=0.01
        )
        container = build_container(settings)
        now = dt.datetime.now(dt.UTC)
        async with container.sessions() as session, session.begin():
            org = await create_organisation(session, "o", now)
        principal = Principal(organisation_id=org.id, actor="t", role="admin")
        try:
            placed = await container.orders.place(
                principal, "k1", msgspec.convert(order_body(), OrderRequest)
            )
            order_id = placed.body["id"]
            await build_dispatcher(container).run_once()
            assert (await container.orders.get(principal, order_id)).status == "submitted"
            async with httpx.AsyncClient() as client:  # the lab moves on; no webhook is sent
                for _ in range(2):
                    response = await client.post(f"{lab}/_sandbox/advance/{order_id}")
                    assert response.status_code == 200
            changed = await reconcile_once(container)
            order = await container.orders.get(principal, order_id)
        finally:
            await container.aclose()
    assert changed == 1
    assert order.status == "in_progress"
