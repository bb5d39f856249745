"""FhirLabClient: what goes on the wire, and how every kind of answer is classified."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import msgspec
import pytest

from service.labs.client import FhirLabClient
from service.labs.fhir_bundle import (
    ACCESSION_TYPE,
    FHIR_JSON,
    IDENTIFIER_TYPE_SYSTEM,
    ORDER_SYSTEM,
    build_transaction_bundle,
)
from service.labs.outcomes import Accepted, Cancelled, LabError, Rejected, Retryable

from .factories import CANARIES, CANARY_BIRTH, CANARY_FAMILY, CANARY_GIVEN, make_requisition

BASE = "https://lab.example/fhir"
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport that answers with ``handler`` and keeps every request it saw."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler
        self.transport = httpx.MockTransport(self._record)

    def _record(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self._handler(request)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[[Handler], tuple[FhirLabClient, Recorder]]]:
    clients: list[FhirLabClient] = []

    def make(handler: Handler) -> tuple[FhirLabClient, Recorder]:
        recorder = Recorder(handler)
        client = FhirLabClient(BASE, timeout=httpx.Timeout(2.0), transport=recorder.transport)
        clients.append(client)
        return client, recorder

    yield make
    for client in clients:
        await client.aclose()


def fhir(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=msgspec.json.encode(body),
        headers={"content-type": FHIR_JSON, **(headers or {})},
    )


def accession_identifier(value: str) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": ACCESSION_TYPE}]},
        "system": "urn:lab:acc",
        "value": value,
    }


def transaction_response(accession: str = "ACC-1") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "201 Created", "location": "Patient/p1/_history/1"}},
            {"response": {"status": "201 Created", "location": "Practitioner/d1/_history/1"}},
            {
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "sr-1",
                    "identifier": [accession_identifier(accession)],
                },
                "response": {"status": "201 Created", "location": "ServiceRequest/sr-1"},
            },
        ],
    }


def outcome(text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": text}],
    }


def task(order_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": "task-1",
        "status": status,
        "intent": "order",
        "identifier": [
            {"system": ORDER_SYSTEM, "value": order_id},
            accession_identifier("ACC-9"),
        ],
        **extra,
    }


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


def no_patient_data(outcome_value: object) -> bool:
    text = repr(outcome_value)
    return not any(canary.lower() in text.lower() for canary in CANARIES)


# -- what goes on the wire --------------------------------------------------------------------


async def test_submit_posts_the_bundle_to_the_base_with_idempotency_key(make_client: Any) -> None:
    req = make_requisition()
    client, seen = make_client(lambda _: fhir(200, transaction_response()))

    first = await client.submit(req)
    second = await client.submit(req)

    assert first == second == Accepted(lab_order_id="ACC-1")
    sent = seen.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == BASE
    assert sent.headers["Idempotency-Key"] == f'"{req.order_id}"'
    assert sent.headers["Content-Type"] == FHIR_JSON
    assert msgspec.json.decode(sent.content) == build_transaction_bundle(req)
    # A retry is indistinguishable from the first attempt.
    assert seen.requests[1].content == sent.content
    assert seen.requests[1].headers["Idempotency-Key"] == sent.headers["Idempotency-Key"]


async def test_trailing_slash_on_the_base_url_is_not_doubled() -> None:
    recorder = Recorder(lambda _: fhir(200, transaction_response()))
    client = FhirLabClient(BASE + "/", timeout=httpx.Timeout(1.0), transport=recorder.transport)
    try:
        await client.cancel("o-1")
    finally:
        await client.aclose()

    assert str(recorder.requests[0].url) == f"{BASE}/ServiceRequest/$cancel-requisition"


def test_base_url_must_be_absolute_http() -> None:
    for bad in ("lab.example/fhir", "ftp://lab.example/fhir", "/fhir"):
        with pytest.raises(ValueError):
            FhirLabClient(bad, timeout=httpx.Timeout(1.0))


# -- submit classification --------------------------------------------------------------------


async def test_accession_falls_back_to_the_service_request_location(make_client: Any) -> None:
    body = transaction_response()
    del body["entry"][2]["resource"]  # a lab answering Prefer: return=minimal
    body["entry"][2]["response"]["location"] = "ServiceRequest/LAB-77/_history/3"
    client, _ = make_client(lambda _: fhir(201, body))

    assert await client.submit(make_requisition()) == Accepted(lab_order_id="LAB-77")


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retryable(make_client: Any, status: int) -> None:
    client, _ = make_client(lambda _: fhir(status, outcome(f"{CANARY_GIVEN} busy")))

    result = await client.submit(make_requisition())

    assert isinstance(result, Retryable)
    assert result.reason == f"lab answered HTTP {status}"
    assert result.retry_after is None
    assert no_patient_data(result)


async def test_retry_after_seconds_is_honoured(make_client: Any) -> None:
    client, _ = make_client(lambda _: fhir(429, outcome("slow down"), {"Retry-After": "7"}))

    assert await client.submit(make_requisition()) == Retryable(
        reason="lab answered HTTP 429", retry_after=7.0
    )


async def test_retry_after_http_date_is_honoured(make_client: Any) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    client, _ = make_client(lambda _: fhir(503, outcome("maintenance"), {"Retry-After": later}))

    result = await client.submit(make_requisition())

    assert isinstance(result, Retryable)
    assert result.retry_after is not None
    assert 115 <= result.retry_after <= 121


async def test_unparseable_retry_after_is_ignored(make_client: Any) -> None:
    client, _ = make_client(lambda _: fhir(429, outcome("x"), {"Retry-After": "soon-ish"}))

    result = await client.submit(make_requisition())

    assert isinstance(result, Retryable)
    assert result.retry_after is None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectError("refused"), "transport error (ConnectError)"),
        (httpx.ConnectTimeout("slow"), "timeout (ConnectTimeout)"),
        (httpx.ReadTimeout("slow"), "timeout (ReadTimeout)"),
        (httpx.RemoteProtocolError("peer closed"), "transport error (RemoteProtocolError)"),
        (httpx.ReadError("reset"), "transport error (ReadError)"),
    ],
)
async def test_connection_problems_are_retryable(
    make_client: Any, error: httpx.RequestError, reason: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    client, _ = make_client(fail)

    assert await client.submit(make_requisition()) == Retryable(reason=reason)


async def test_bad_request_is_rejected_with_the_lab_diagnostics(make_client: Any) -> None:
    client, _ = make_client(lambda _: fhir(400, outcome("ServiceRequest.code: unknown test")))

    assert await client.submit(make_requisition()) == Rejected(
        status=400, message="ServiceRequest.code: unknown test"
    )


async def test_outcome_details_text_is_used_when_there_are_no_diagnostics(
    make_client: Any,
) -> None:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "invalid", "details": {"text": "NPI not enrolled"}},
            {"severity": "error", "code": "invalid", "diagnostics": "missing specimen"},
        ],
    }
    client, _ = make_client(lambda _: fhir(422, body))

    assert await client.submit(make_requisition()) == Rejected(
        status=422, message="NPI not enrolled; missing specimen"
    )


async def test_lab_text_echoing_patient_data_is_redacted_and_flattened(make_client: Any) -> None:
    text = (
        f"Patient {CANARY_GIVEN.upper()} {CANARY_FAMILY}\r\nborn {CANARY_BIRTH.isoformat()} "
        "unknown\n" + "x" * 1000
    )
    client, _ = make_client(lambda _: fhir(400, outcome(text)))

    result = await client.submit(make_requisition())

    assert isinstance(result, Rejected)
    assert result.message.startswith("Patient [redacted] [redacted] born [redacted] unknown x")
    assert "\n" not in result.message and "\r" not in result.message
    assert len(result.message) == 500
    assert no_patient_data(result)


@pytest.mark.parametrize("status", [401, 403, 404, 410, 413, 415])
async def test_other_client_errors_are_rejected(make_client: Any, status: int) -> None:
    client, _ = make_client(lambda _: httpx.Response(status, text="<html>nope</html>"))

    assert await client.submit(make_requisition()) == Rejected(
        status=status, message=f"lab answered HTTP {status}"
    )


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_rejected_and_never_followed(make_client: Any, status: int) -> None:
    client, seen = make_client(
        lambda _: httpx.Response(status, headers={"Location": "https://attacker.example/fhir"})
    )

    result = await client.submit(make_requisition())

    assert result == Rejected(status=status, message="lab answered a redirect; not followed")
    assert [str(r.url) for r in seen.requests] == [BASE]


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text=f"{CANARY_GIVEN} not json"),
        httpx.Response(204),
        fhir(200, outcome("ok")),
        fhir(200, {"resourceType": "Bundle", "type": "searchset", "entry": []}),
        fhir(200, {"resourceType": "Bundle", "type": "transaction-response", "entry": []}),
        fhir(200, {"resourceType": "Bundle", "type": "transaction-response", "entry": {}}),
        fhir(
            200,
            {
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [{"response": {"status": "400 Bad Request"}}],
            },
        ),
    ],
    ids=["not-json", "empty", "outcome", "searchset", "no-entries", "bad-shape", "entry-failed"],
)
async def test_malformed_success_is_retryable(make_client: Any, response: httpx.Response) -> None:
    client, _ = make_client(lambda _: response)

    result = await client.submit(make_requisition())

    assert isinstance(result, Retryable)
    assert result.reason.startswith(f"malformed {response.status_code} response")
    assert no_patient_data(result)


# -- cancel -----------------------------------------------------------------------------------


async def test_cancel_posts_parameters_with_its_own_key(make_client: Any) -> None:
    client, seen = make_client(lambda _: fhir(200, task("o-1", "cancelled")))

    assert await client.cancel("o-1") == Cancelled(lab_order_id="ACC-9")
    sent = seen.requests[0]
    assert str(sent.url) == f"{BASE}/ServiceRequest/$cancel-requisition"
    assert sent.headers["Idempotency-Key"] == '"cancel-o-1"'
    assert msgspec.json.decode(sent.content) == {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "requisition", "valueIdentifier": {"system": ORDER_SYSTEM, "value": "o-1"}}
        ],
    }


async def test_cancel_refused_by_business_rule_is_rejected(make_client: Any) -> None:
    client, _ = make_client(lambda _: fhir(422, outcome("order is resulted; cannot cancel")))

    assert await client.cancel("o-1") == Rejected(
        status=422, message="order is resulted; cannot cancel"
    )


async def test_cancel_answered_with_a_live_task_is_not_a_cancellation(make_client: Any) -> None:
    client, _ = make_client(lambda _: fhir(200, task("o-1", "completed")))

    result = await client.cancel("o-1")

    assert isinstance(result, Rejected)
    assert "completed" in result.message


async def test_cancel_transient_failure_is_retryable(make_client: Any) -> None:
    client, _ = make_client(lambda _: fhir(503, outcome("down"), {"Retry-After": "3"}))

    assert await client.cancel("o-1") == Retryable(reason="lab answered HTTP 503", retry_after=3.0)


# -- fetch_status -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_status", "expected"),
    [
        ("requested", "submitted"),
        ("received", "received"),
        ("accepted", "in_progress"),
        ("in-progress", "in_progress"),
        ("completed", "resulted"),
        ("rejected", "rejected"),
        ("cancelled", "cancelled"),
    ],
)
async def test_task_status_mapping(make_client: Any, task_status: str, expected: str) -> None:
    modified = "2026-11-04T08:00:00.000Z"
    client, seen = make_client(
        lambda _: fhir(200, searchset(task("o-1", task_status, lastModified=modified)))
    )

    status = await client.fetch_status("o-1")

    assert status is not None
    assert (status.order_id, status.lab_order_id, status.status) == ("o-1", "ACC-9", expected)
    assert status.updated_at == datetime(2026, 11, 4, 8, 0, tzinfo=UTC)
    request = seen.requests[0]
    assert request.method == "GET"
    assert request.url.path == "/fhir/Task"
    assert request.url.params["identifier"] == f"{ORDER_SYSTEM}|o-1"


async def test_status_falls_back_to_task_id_and_meta_last_updated(make_client: Any) -> None:
    bare = {
        "resourceType": "Task",
        "id": "T-5",
        "status": "rejected",
        "intent": "order",
        "identifier": [{"system": ORDER_SYSTEM, "value": "o-1"}],
        "meta": {"lastUpdated": "2026-11-04T08:00:00Z"},
        "statusReason": {"text": "specimen hemolysed"},
    }
    client, _ = make_client(lambda _: fhir(200, searchset(bare)))

    status = await client.fetch_status("o-1")

    assert status is not None
    assert (status.lab_order_id, status.status) == ("T-5", "rejected")
    assert status.updated_at == datetime(2026, 11, 4, 8, 0, tzinfo=UTC)
    assert status.message == "specimen hemolysed"


async def test_unknown_order_is_none(make_client: Any) -> None:
    client, _ = make_client(lambda _: fhir(200, searchset()))

    assert await client.fetch_status("o-1") is None


async def test_tasks_for_other_orders_are_ignored(make_client: Any) -> None:
    # A server that ignores the search parameter returns everything.
    client, _ = make_client(lambda _: fhir(200, searchset(task("someone-else", "completed"))))

    assert await client.fetch_status("o-1") is None


@pytest.mark.parametrize(
    ("response", "retryable"),
    [
        (fhir(503, outcome("down")), True),
        (fhir(200, {"resourceType": "Bundle", "type": "transaction-response"}), True),
        (fhir(200, searchset(task("o-1", "on-hold"))), True),
        (fhir(200, searchset(task("o-1", "received"), task("o-1", "completed"))), True),
        (fhir(400, outcome("bad search")), False),
        (httpx.Response(302, headers={"Location": "https://elsewhere.example/"}), False),
    ],
    ids=["503", "wrong-bundle", "unmapped-status", "ambiguous", "400", "redirect"],
)
async def test_status_read_failures_raise_lab_error(
    make_client: Any, response: httpx.Response, retryable: bool
) -> None:
    client, _ = make_client(lambda _: response)

    with pytest.raises(LabError) as caught:
        await client.fetch_status("o-1")

    assert caught.value.retryable is retryable


async def test_status_read_connection_error_is_retryable(make_client: Any) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client, _ = make_client(fail)

    with pytest.raises(LabError) as caught:
        await client.fetch_status("o-1")

    assert caught.value.retryable is True
    assert caught.value.reason == "transport error (ConnectError)"
