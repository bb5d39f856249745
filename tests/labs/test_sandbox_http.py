"""The sandbox lab over real HTTP (granian on loopback), driven by the real client."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from service.labs.client import FhirLabClient
from service.labs.outcomes import Accepted, Cancelled, LabError, Rejected, Retryable
from service.labs.webhooks import verify_event

from .conftest import SANDBOX
from .factories import bundle_bytes, make_requisition
from .servers import WebhookReceiver, granian, poll_until

FHIR = {"content-type": "application/fhir+json"}


@pytest.fixture
async def admin(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=5) as client:
        yield client
        await client.post("/_sandbox/faults", json={})  # leave no faults for the next test


@pytest.fixture
async def lab(sandbox_url: str) -> AsyncIterator[FhirLabClient]:
    client = FhirLabClient(sandbox_url, timeout=httpx.Timeout(3.0))
    yield client
    await client.aclose()


async def order_view(admin: httpx.AsyncClient, order_id: str) -> dict[str, Any] | None:
    orders = (await admin.get("/_sandbox/orders")).json()
    return next((o for o in orders if o["order_id"] == order_id), None)


async def set_faults(admin: httpx.AsyncClient, **faults: float) -> None:
    response = await admin.post("/_sandbox/faults", json=faults)
    assert response.status_code == 200, response.text


async def test_accepts_an_order_and_reports_its_status(
    lab: FhirLabClient, admin: httpx.AsyncClient
) -> None:
    req = make_requisition()

    outcome = await lab.submit(req)
    status = await lab.fetch_status(req.order_id)

    assert isinstance(outcome, Accepted)
    assert outcome.lab_order_id.startswith("SBX-")
    assert status is not None
    assert (status.lab_order_id, status.status) == (outcome.lab_order_id, "submitted")
    view = await order_view(admin, req.order_id)
    assert view is not None
    assert status.updated_at is not None
    assert view.pop("updated_at").startswith(status.updated_at.date().isoformat())
    assert view == {
        "order_id": req.order_id,
        "lab_order_id": outcome.lab_order_id,
        "status": "submitted",
        "accepted_count": 1,
        "submissions": 1,
        "message": None,
    }
    assert await lab.fetch_status("never-sent") is None


async def test_same_key_twice_gets_the_same_answer_and_one_order(
    admin: httpx.AsyncClient,
) -> None:
    req = make_requisition()
    headers = FHIR | {"Idempotency-Key": f'"{req.order_id}"'}
    before = (await admin.get("/_sandbox/stats")).json()

    first = await admin.post("/", content=bundle_bytes(req), headers=headers)
    second = await admin.post("/", content=bundle_bytes(req), headers=headers)

    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    Bundle.model_validate(first.json())
    view = await order_view(admin, req.order_id)
    assert view is not None
    assert (view["accepted_count"], view["submissions"]) == (1, 2)
    after = (await admin.get("/_sandbox/stats")).json()
    assert after["submissions_received"] - before["submissions_received"] == 2
    assert after["orders"] - before["orders"] == 1
    assert after["accepted_total"] == after["orders"]


async def test_same_requisition_under_a_new_key_is_not_a_second_order(
    admin: httpx.AsyncClient,
) -> None:
    req = make_requisition()
    body = bundle_bytes(req)

    first = await admin.post("/", content=body, headers=FHIR | {"Idempotency-Key": "k-1"})
    second = await admin.post("/", content=body, headers=FHIR | {"Idempotency-Key": "k-2"})

    assert first.content == second.content
    view = await order_view(admin, req.order_id)
    assert view is not None
    assert (view["accepted_count"], view["submissions"]) == (1, 2)


async def test_key_reused_for_another_order_is_refused(admin: httpx.AsyncClient) -> None:
    headers = FHIR | {"Idempotency-Key": "shared-key"}
    await admin.post("/", content=bundle_bytes(make_requisition()), headers=headers)
    other = make_requisition()

    response = await admin.post("/", content=bundle_bytes(other), headers=headers)

    assert response.status_code == 422
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await order_view(admin, other.order_id) is None


@pytest.mark.parametrize("key", [None, "", "has space", "x" * 256])
async def test_missing_or_malformed_idempotency_key_is_a_400(
    admin: httpx.AsyncClient, key: str | None
) -> None:
    req = make_requisition()
    headers = FHIR | ({"Idempotency-Key": key} if key is not None else {})

    response = await admin.post("/", content=bundle_bytes(req), headers=headers)

    assert response.status_code == 400
    OperationOutcome.model_validate(response.json())
    assert await order_view(admin, req.order_id) is None


async def test_invalid_bundle_is_a_400_operation_outcome(admin: httpx.AsyncClient) -> None:
    req = make_requisition()
    bundle = msgspec.json.decode(bundle_bytes(req))
    bundle["entry"][2]["resource"]["status"] = "draft"
    del bundle["entry"][3]["resource"]["requisition"]

    response = await admin.post(
        "/", content=msgspec.json.encode(bundle), headers=FHIR | {"Idempotency-Key": "bad-1"}
    )

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    OperationOutcome.model_validate(outcome)
    assert [i["expression"] for i in outcome["issue"]] == [
        ["Bundle.entry[2].resource.status"],
        ["Bundle.entry[3].resource.requisition"],
    ]
    assert await order_view(admin, req.order_id) is None


async def test_cancel_of_an_unknown_order_is_rejected_with_the_lab_text(
    lab: FhirLabClient,
) -> None:
    assert await lab.cancel("never-sent") == Rejected(
        status=404, message="no order with this requisition"
    )


async def test_injected_503_is_retryable_and_nothing_is_recorded(
    lab: FhirLabClient, admin: httpx.AsyncClient
) -> None:
    await set_faults(admin, error_rate=1.0, seed=1)
    reqs = [make_requisition() for _ in range(6)]

    outcomes = [await lab.submit(req) for req in reqs]

    assert all(isinstance(o, Retryable) for o in outcomes)
    assert {o.reason for o in outcomes if isinstance(o, Retryable)} == {"lab answered HTTP 503"}
    hints = {o.retry_after for o in outcomes if isinstance(o, Retryable)}
    assert None in hints and 1.0 in hints  # "sometimes" with Retry-After, both forms parsed
    assert all(h is None or 0 <= h <= 3 for h in hints)
    for req in reqs:
        assert await order_view(admin, req.order_id) is None
    await set_faults(admin)
    assert isinstance(await lab.submit(reqs[0]), Accepted)


async def test_dropped_response_is_retryable_and_the_retry_finds_the_order(
    lab: FhirLabClient, admin: httpx.AsyncClient
) -> None:
    req = make_requisition()
    await set_faults(admin, drop_rate=1.0)

    lost = await lab.submit(req)
    recorded = await order_view(admin, req.order_id)
    await set_faults(admin)
    retried = await lab.submit(req)

    # granian aborts the half-sent response: the client sees a truncated body.
    assert lost == Retryable(reason="transport error (RemoteProtocolError)")
    assert recorded is not None and recorded["accepted_count"] == 1
    assert isinstance(retried, Accepted)
    assert retried.lab_order_id == recorded["lab_order_id"]
    final = await order_view(admin, req.order_id)
    assert final is not None
    assert (final["accepted_count"], final["submissions"]) == (1, 2)
    assert (await admin.get("/_sandbox/stats")).json()["injected_drops"] >= 1


async def test_stalled_response_times_out_the_client_but_the_order_exists(
    sandbox_url: str, admin: httpx.AsyncClient
) -> None:
    impatient = FhirLabClient(sandbox_url, timeout=httpx.Timeout(3.0, read=0.3))
    req = make_requisition()
    await set_faults(admin, timeout_rate=1.0)
    try:
        started = time.monotonic()
        outcome = await impatient.submit(req)
        elapsed = time.monotonic() - started
    finally:
        await impatient.aclose()

    assert outcome == Retryable(reason="timeout (ReadTimeout)")
    assert elapsed < 2.0
    view = await order_view(admin, req.order_id)
    assert view is not None and view["accepted_count"] == 1


async def test_latency_is_added_to_every_fhir_request(
    lab: FhirLabClient, admin: httpx.AsyncClient
) -> None:
    await set_faults(admin, latency_ms=300)

    started = time.monotonic()
    assert await lab.fetch_status("nobody") is None

    assert time.monotonic() - started >= 0.3


async def test_same_seed_replays_the_same_faults(
    lab: FhirLabClient, admin: httpx.AsyncClient
) -> None:
    async def pattern() -> list[bool]:
        await set_faults(admin, error_rate=0.5, seed=42)
        failed = []
        for _ in range(12):
            try:
                await lab.fetch_status("nobody")
                failed.append(False)
            except LabError:
                failed.append(True)
        return failed

    first = await pattern()

    assert await pattern() == first
    assert True in first and False in first


async def test_fault_settings_are_validated(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/_sandbox/faults", json={"error_rate": 3})

    assert response.status_code == 400
    assert (await admin.get("/_sandbox/faults")).json()["error_rate"] == 0.0


async def test_cancel_before_result_and_refusal_after(
    lab: FhirLabClient, admin: httpx.AsyncClient
) -> None:
    open_order, done_order = make_requisition(), make_requisition()
    accepted = await lab.submit(open_order)
    await lab.submit(done_order)
    for _ in range(3):
        assert (await admin.post(f"/_sandbox/advance/{done_order.order_id}")).status_code == 200

    first = await lab.cancel(open_order.order_id)
    again = await lab.cancel(open_order.order_id)
    refused = await lab.cancel(done_order.order_id)

    assert isinstance(accepted, Accepted)
    assert first == again == Cancelled(lab_order_id=accepted.lab_order_id)
    assert refused == Rejected(status=422, message="order is resulted; cannot cancel")
    status = await lab.fetch_status(open_order.order_id)
    assert status is not None and status.status == "cancelled"
    assert (await admin.post(f"/_sandbox/advance/{open_order.order_id}")).status_code == 409


async def test_status_changes_arrive_as_signed_webhooks(
    lab: FhirLabClient,
    admin: httpx.AsyncClient,
    receiver: WebhookReceiver,
    webhook_secret: str,
) -> None:
    req = make_requisition()
    accepted = await lab.submit(req)
    assert isinstance(accepted, Accepted)
    receiver.fail_next(2)  # the first event needs three attempts

    await admin.post(f"/_sandbox/advance/{req.order_id}")
    await admin.post(
        f"/_sandbox/advance/{req.order_id}", params={"to": "rejected", "message": "hemolysed"}
    )

    def mine() -> list[tuple[dict[str, str], bytes, int]]:
        return [a for a in receiver.snapshot() if req.order_id.encode() in a[1]]

    await poll_until(lambda: sum(status == 204 for *_, status in mine()) == 2)
    attempts = mine()
    assert [status for *_, status in attempts] == [500, 500, 204, 204]
    events = [verify_event(webhook_secret, headers, body) for headers, body, _ in attempts]
    assert [e.status for e in events] == ["received"] * 3 + ["rejected"]
    assert events[-1].message == "hemolysed"
    assert {e.lab_order_id for e in events} == {accepted.lab_order_id}
    ids = [headers["webhook-id"] for headers, _, _ in attempts]
    assert ids[0] == ids[1] == ids[2] != ids[3]  # retries keep their id
    expected = [("received", 3, True), ("rejected", 1, True)]
    for _ in range(50):  # the sandbox records a delivery just after the receiver answered
        deliveries = [
            (d["status"], d["attempts"], d["delivered"])
            for d in (await admin.get("/_sandbox/webhooks")).json()
            if d["order_id"] == req.order_id
        ]
        if deliveries == expected:
            break
        await asyncio.sleep(0.05)
    assert deliveries == expected


@pytest.fixture
def progressing_sandbox(webhook_secret: str) -> Iterator[tuple[str, WebhookReceiver]]:
    with WebhookReceiver() as hooks:
        env = {
            "LABREC_SANDBOX_STEP_DELAY": "0.15",
            "LABREC_SANDBOX_WEBHOOK_URL": hooks.url,
            "LABREC_SANDBOX_WEBHOOK_SECRET": webhook_secret,
        }
        with granian(SANDBOX, env, "/_sandbox/stats") as base:
            yield base, hooks


async def test_orders_progress_by_themselves(
    progressing_sandbox: tuple[str, WebhookReceiver], webhook_secret: str
) -> None:
    base, hooks = progressing_sandbox
    lab = FhirLabClient(base, timeout=httpx.Timeout(3.0))
    req = make_requisition()
    try:
        assert isinstance(await lab.submit(req), Accepted)
        await poll_until(lambda: len(hooks.snapshot()) >= 3)
        status = await lab.fetch_status(req.order_id)
    finally:
        await lab.aclose()

    events = [verify_event(webhook_secret, h, b) for h, b, _ in hooks.snapshot()]
    assert [e.status for e in events] == ["received", "in_progress", "resulted"]
    gaps = [(b.occurred_at - a.occurred_at).total_seconds() for a, b in itertools.pairwise(events)]
    assert all(0.1 <= gap < 1.0 for gap in gaps)
    assert status is not None and status.status == "resulted"


MOUNT_TOKEN = "mount-test-token-0123456789"


@pytest.fixture
def host_url() -> Iterator[str]:
    env = {"LABREC_SANDBOX_STEP_DELAY": "0", "LABREC_SANDBOX_TOKEN": MOUNT_TOKEN}
    with granian("tests.labs.hostapp:create", env, "/health/live") as base:
        yield base


async def test_mounted_under_a_host_app(host_url: str) -> None:
    lab = FhirLabClient(
        f"{host_url}/sandbox-lab/fhir", timeout=httpx.Timeout(3.0), bearer_token=MOUNT_TOKEN
    )
    admin = httpx.AsyncClient(
        base_url=f"{host_url}/sandbox-lab/fhir",
        timeout=3,
        headers={"Authorization": f"Bearer {MOUNT_TOKEN}"},
    )
    req, dropped = make_requisition(), make_requisition()
    try:
        accepted = await lab.submit(req)
        status = await lab.fetch_status(req.order_id)
        cancelled = await lab.cancel(req.order_id)
        await admin.post("/_sandbox/faults", json={"drop_rate": 1})
        lost = await lab.submit(dropped)
        await admin.post("/_sandbox/faults", json={})
        health = await admin.get(f"{host_url}/health/live")
        orders = (await admin.get("/_sandbox/orders")).json()
    finally:
        await lab.aclose()
        await admin.aclose()

    assert isinstance(accepted, Accepted)
    assert status is not None and status.status == "submitted"
    assert cancelled == Cancelled(lab_order_id=accepted.lab_order_id)
    # The host's own exception handling must not turn the drop into a clean 500.
    assert lost == Retryable(reason="transport error (RemoteProtocolError)")
    assert {o["order_id"] for o in orders} == {req.order_id, dropped.order_id}
    assert health.json() == {"status": "ok"}


async def test_mounted_sandbox_answers_nobody_without_its_token(host_url: str) -> None:
    """Every route of the mounted sandbox, FHIR and control alike, is 401 without the token."""
    wrong = {"Authorization": "Bearer not-the-token-0123456789"}
    async with httpx.AsyncClient(base_url=f"{host_url}/sandbox-lab/fhir", timeout=3) as client:
        answers = [
            await client.get("/_sandbox/orders"),
            await client.get("/_sandbox/stats", headers=wrong),
            await client.post("/_sandbox/faults", json={"error_rate": 1}),
            await client.post("/_sandbox/advance/any", params={"to": "rejected"}),
            await client.get("/Task", params={"identifier": "x"}),
            await client.post("/", content=b"{}"),
        ]
        faults = await client.get(
            "/_sandbox/faults", headers={"Authorization": f"Bearer {MOUNT_TOKEN}"}
        )
    assert [a.status_code for a in answers] == [401] * len(answers)
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
    assert faults.status_code == 200 and faults.json()["error_rate"] == 0.0  # nothing was set


def test_standalone_routes_need_the_token_when_one_is_set() -> None:
    env = {"LABREC_SANDBOX_STEP_DELAY": "0", "LABREC_SANDBOX_TOKEN": MOUNT_TOKEN}
    bearer = {"Authorization": f"Bearer {MOUNT_TOKEN}"}
    with granian(SANDBOX, env, "/Task?identifier=ready", ready_headers=bearer) as base:
        bare = httpx.get(f"{base}/_sandbox/orders", timeout=3)
        ok = httpx.get(
            f"{base}/_sandbox/orders", headers={"X-Sandbox-Token": MOUNT_TOKEN}, timeout=3
        )
        bare_fhir = httpx.get(f"{base}/Task?identifier=x", timeout=3)
        ok_fhir = httpx.get(f"{base}/Task?identifier=x", headers=bearer, timeout=3)
    assert bare.status_code == 401
    assert ok.status_code == 200
    assert bare_fhir.status_code == 401  # the FHIR routes too (every order, patient data)
    assert ok_fhir.status_code == 200
