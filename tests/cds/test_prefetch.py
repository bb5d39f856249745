"""Prefetch semantics (absent / null / empty Bundle / OperationOutcome / junk) and reading the
missing keys from the EHR's FHIR server (a real HTTP server on loopback): never a 500.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.cds.conftest import Cds
from tests.cds.support import (
    FakeServer,
    Route,
    fake_server,
    full_prefetch,
    hook_request,
    medication_request,
    register_ehr,
    searchset,
)
from tests.conftest import make_settings
from tests.support.app import running_app

KEYS = ["patient", "conditions", "medications", "labs", "labOrders"]
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "upstream timeout"}],
}
VALUES: dict[str, Any] = {
    "null": None,
    "empty-bundle": {"resourceType": "Bundle", "type": "searchset", "total": 0},
    "operation-outcome": OUTCOME,
    "html-error-page": "<html><body>502 Bad Gateway</body></html>",
    "bundle-of-outcomes": searchset(OUTCOME),
    "no-resource-type": {"id": "x"},
}


@pytest.mark.parametrize("key", KEYS)
async def test_prefetch_values_never_fail_the_call(cds: Cds, key: str) -> None:
    for kind, value in VALUES.items():
        prefetch = full_prefetch()
        prefetch[key] = value
        response = await cds.call(hook_request(prefetch=prefetch))
        assert response.status_code == 200, (kind, response.text)
        (card,) = response.json()["cards"]
        if key == "patient":
            assert "sex is unknown" in card["detail"], kind


@pytest.mark.parametrize("key", KEYS)
async def test_absent_keys_without_fhir_server(cds: Cds, key: str) -> None:
    prefetch = full_prefetch()
    del prefetch[key]
    response = await cds.call(hook_request(prefetch=prefetch))
    if key == "patient":
        assert response.status_code == 412, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "error"
    else:
        assert response.status_code == 200, response.text
        assert "Not available to labrec" in response.json()["cards"][0]["detail"]


async def test_no_prefetch_at_all_is_412_but_an_unknown_drug_is_still_200(cds: Cds) -> None:
    assert (await cds.call(hook_request())).status_code == 412
    amoxicillin = medication_request("617993", route=None)
    response = await cds.call(hook_request(drafts=(amoxicillin,)))
    assert response.status_code == 200 and response.json() == {"cards": []}


async def test_an_http_fhir_server_is_not_called_in_production_mode(cds: Cds) -> None:
    with fake_server() as fhir:
        ehr = await register_ehr(cds.container, fhir_servers=(fhir.base_url + "/r4",))
        body = hook_request(fhir_server=fhir.base_url + "/r4", access_token="tok-123")
        response = await cds.call(body, ehr=ehr)
    assert response.status_code == 412
    assert fhir.requests == []


@pytest.fixture
def fhir() -> Iterator[FakeServer]:
    """The EHR's FHIR server, on loopback."""
    with fake_server() as server:
        yield server


@pytest.fixture
async def cds_fhir(database_url: str, fhir: FakeServer) -> AsyncIterator[Cds]:
    """An EHR whose FHIR server (``fhir``, at /r4) is registered and, being on loopback, allowed
    as a private host."""
    settings = make_settings(
        database_url,
        cds_fhir_allow_http=True,
        cds_fhir_timeout=1.0,
        cds_fhir_allow_private_hosts="127.0.0.1",
    )
    async with running_app(settings, run_worker=False) as (client, container):
        ehr = await register_ehr(container, fhir_servers=(fhir.base_url + "/r4",))
        yield Cds(client, container, ehr)


def _serve_patient_record(fhir: Any, prefix: str = "/r4") -> None:
    recent = (dt.date.today() - dt.timedelta(days=10)).isoformat()
    record = full_prefetch(labs=(("24325-3", recent),))
    fhir.routes[f"{prefix}/Patient/pat-1"] = Route(body=record["patient"])
    for key, resource in (
        ("Condition", "conditions"),
        ("MedicationRequest", "medications"),
        ("Observation", "labs"),
        ("ServiceRequest", "labOrders"),
    ):
        fhir.routes[f"{prefix}/{key}"] = Route(body=record[resource])


async def test_absent_keys_are_read_from_the_fhir_server_with_the_token(
    cds_fhir: Cds, fhir: FakeServer
) -> None:
    _serve_patient_record(fhir)
    body = hook_request(fhir_server=fhir.base_url + "/r4", access_token="fhir-token-abc")
    response = await cds_fhir.call(body)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert "Read from the EHR's FHIR server" in card["detail"]
    paths = sorted(path for path, _ in fhir.requests)
    assert paths == sorted(
        [
            "/r4/Patient/pat-1",
            "/r4/Condition?patient=pat-1&clinical-status=active",
            "/r4/MedicationRequest?patient=pat-1&status=active",
            "/r4/Observation?patient=pat-1&category=laboratory&_sort=-date&_count=50",
            "/r4/ServiceRequest?patient=pat-1&status=active,completed&_sort=-authored&_count=50",
        ]
    )
    assert all(h.get("Authorization") == "Bearer fhir-token-abc" for _, h in fhir.requests)


async def test_only_absent_keys_are_read(cds_fhir: Cds, fhir: FakeServer) -> None:
    prefetch = full_prefetch()
    del prefetch["labs"]
    prefetch["conditions"] = OUTCOME  # the client already failed: no follow-up query
    _serve_patient_record(fhir)
    body = hook_request(prefetch=prefetch, fhir_server=fhir.base_url + "/r4", access_token="t")
    response = await cds_fhir.call(body)
    assert response.status_code == 200
    assert [path.split("?")[0] for path, _ in fhir.requests] == ["/r4/Observation"]


async def test_a_slow_fhir_server_is_cut_off_at_the_budget(cds_fhir: Cds, fhir: FakeServer) -> None:
    _serve_patient_record(fhir)
    fhir.routes["/r4/Patient/pat-1"] = Route(body={"resourceType": "Patient"}, delay=3.0)
    started = time.monotonic()
    response = await cds_fhir.call(
        hook_request(fhir_server=fhir.base_url + "/r4", access_token="t")
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 412, response.text  # the patient never arrived
    assert elapsed < 2.5


async def test_fhir_server_errors_degrade_instead_of_failing(
    cds_fhir: Cds, fhir: FakeServer
) -> None:
    _serve_patient_record(fhir)
    fhir.routes["/r4/Observation"] = Route(500, OUTCOME)
    fhir.routes["/r4/Condition"] = Route(200, b"<html>oops</html>", content_type="text/html")
    response = await cds_fhir.call(
        hook_request(fhir_server=fhir.base_url + "/r4", access_token="t")
    )
    assert response.status_code == 200, response.text
    assert "recent lab results" in response.json()["cards"][0]["detail"]
    fhir.routes["/r4/Patient/pat-1"] = Route(401, OUTCOME)
    denied = await cds_fhir.call(hook_request(fhir_server=fhir.base_url + "/r4", access_token="t"))
    assert denied.status_code == 412


async def test_an_unreachable_fhir_server_is_412(cds_fhir: Cds) -> None:
    with fake_server() as gone:
        closed = gone.base_url + "/r4"
    ehr = await register_ehr(cds_fhir.container, fhir_servers=(closed,))
    response = await cds_fhir.call(hook_request(fhir_server=closed, access_token="t"), ehr=ehr)
    assert response.status_code == 412


MALFORMED: dict[str, Any] = {
    "not-json": b"{hook: ",
    "array": b"[]",
    "no-hook": {"hookInstance": "x", "context": {"patientId": "p", "userId": "Practitioner/1"}},
    "no-context": {"hook": "order-select", "hookInstance": "x"},
    "context-not-object": {"hook": "order-select", "hookInstance": "x", "context": []},
    "bad-patient-id": {
        "hook": "order-select",
        "hookInstance": "x",
        "context": {"patientId": "../Patient?x=1", "userId": "Practitioner/1", "draftOrders": {}},
    },
    "no-draft-orders": {
        "hook": "order-select",
        "hookInstance": "x",
        "context": {"patientId": "p", "userId": "Practitioner/1"},
    },
    "authorization-without-server": {
        **hook_request(prefetch=full_prefetch()),
        "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"},
    },
    "relative-fhir-server": {**hook_request(), "fhirServer": "/fhir"},
    "wrong-hook-for-service": hook_request("order-sign", prefetch=full_prefetch()),
}


async def test_malformed_calls_are_400_with_an_operation_outcome(cds: Cds) -> None:
    path = "/cds-services/labrec-order-select"
    for kind, body in MALFORMED.items():
        headers = {**cds.ehr.headers(path), "Content-Type": "application/json"}
        content = body if isinstance(body, bytes) else None
        response = await cds.client.post(
            path, content=content, json=None if content else body, headers=headers
        )
        assert response.status_code == 400, (kind, response.text)
        assert response.json()["resourceType"] == "OperationOutcome", kind
        assert "../Patient" not in response.text


async def test_unknown_service_is_404(cds: Cds) -> None:
    path = "/cds-services/nope"
    response = await cds.client.post(path, json=hook_request(), headers=cds.ehr.headers(path))
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_large_prefetch_and_3_0_additions_are_accepted(cds: Cds) -> None:
    today = dt.date.today()
    labs = tuple(("2345-7", (today - dt.timedelta(days=i % 300)).isoformat()) for i in range(2000))
    body = hook_request(prefetch=full_prefetch(labs=labs))
    body["extension"] = {"org.example.trace": {"id": "abc"}}
    body["context"]["extension"] = {"org.example.ward": "4B"}
    response = await cds.call(body)
    assert len(response.request.content) > 262_144  # over the REST body limit
    assert response.status_code == 200, response.text
    assert len(response.json()["cards"]) == 1
