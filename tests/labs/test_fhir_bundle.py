"""The order transaction bundle: FHIR-valid, complete, and byte-identical on resend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.servicerequest import ServiceRequest

from service.labs.fhir_bundle import (
    NPI_SYSTEM,
    OBSERVATION_CATEGORY_SYSTEM,
    ORDER_SYSTEM,
    build_cancel_parameters,
    build_transaction_bundle,
    idempotency_key_header,
    patient_identifier_system,
)
from service.labs.requisition import Coding, RequisitionPanel

from .factories import CANARIES, ICD10CM, LOINC, bundle_bytes, make_requisition


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_bundle_validates_with_fhir_resources_r4b() -> None:
    bundle = build_transaction_bundle(make_requisition())

    parsed = Bundle.model_validate(bundle)

    assert parsed.type == "transaction"
    entries = parsed.entry or []
    assert [type(entry.resource) for entry in entries] == [
        Patient,
        Practitioner,
        ServiceRequest,
        ServiceRequest,
    ]
    # Nothing we send is dropped by the model: it re-serialises to the same document.
    assert msgspec.json.decode(parsed.model_dump_json(by_alias=True)) == bundle


def test_bundle_without_optional_parts_is_still_valid_fhir() -> None:
    req = make_requisition(conditions=(), notes=None)

    bundle = build_transaction_bundle(req)

    Bundle.model_validate(bundle)
    for request in resources(bundle, "ServiceRequest"):
        assert "reasonCode" not in request  # FHIR forbids empty arrays
        assert "note" not in request


def test_patient_and_practitioner_content() -> None:
    req = make_requisition()

    bundle = build_transaction_bundle(req)

    [patient] = resources(bundle, "Patient")
    assert patient["identifier"] == [
        {"system": patient_identifier_system(req.organisation_id), "value": req.patient.reference}
    ]
    assert patient["name"][0]["family"] == req.patient.family_name
    assert patient["name"][0]["given"] == [req.patient.given_name]
    assert patient["birthDate"] == "1911-11-11"
    assert patient["gender"] == "female"
    [practitioner] = resources(bundle, "Practitioner")
    assert practitioner["identifier"] == [{"system": NPI_SYSTEM, "value": "1234567893"}]
    assert practitioner["name"] == [{"text": "Jo Lee"}]


def test_one_service_request_per_panel_with_shared_requisition() -> None:
    req = make_requisition()

    bundle = build_transaction_bundle(req)

    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"][:2]}
    requests = resources(bundle, "ServiceRequest")
    assert len(requests) == len(req.panels)
    for panel, request in zip(req.panels, requests, strict=True):
        assert request["status"] == "active"
        assert request["intent"] == "order"
        assert request["category"][0]["coding"][0]["system"] == OBSERVATION_CATEGORY_SYSTEM
        assert request["category"][0]["coding"][0]["code"] == "laboratory"
        assert request["code"]["coding"] == [
            {"system": c.system, "code": c.code, **({"display": c.display} if c.display else {})}
            for c in panel.codes
        ]
        assert request["subject"] == {"reference": urls["Patient"]}
        assert request["requester"] == {"reference": urls["Practitioner"]}
        assert request["requisition"] == {"system": ORDER_SYSTEM, "value": req.order_id}
        assert request["reasonCode"] == [
            {"coding": [{"system": ICD10CM, "code": c.code}]} for c in req.conditions
        ]
        assert request["authoredOn"] == "2026-11-03T14:30:05Z"
        assert request["note"] == [{"text": req.notes}]
    # Each entry is a create the lab can match against what it already holds.
    for entry in bundle["entry"]:
        kind = entry["resource"]["resourceType"]
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["url"] == kind
        assert entry["request"]["ifNoneExist"].startswith("identifier=")


def test_authored_on_is_normalised_to_utc() -> None:
    local = datetime(2026, 11, 3, 9, 30, 5, tzinfo=timezone(timedelta(hours=-5)))

    bundle = build_transaction_bundle(make_requisition(created_at=local))

    assert resources(bundle, "ServiceRequest")[0]["authoredOn"] == "2026-11-03T14:30:05Z"


def test_resend_is_byte_identical_and_full_urls_are_order_specific() -> None:
    req = make_requisition()
    rebuilt = msgspec.json.decode(msgspec.json.encode(req), type=type(req))  # e.g. from the DB

    first, second = bundle_bytes(req), bundle_bytes(rebuilt)
    other = build_transaction_bundle(make_requisition())

    assert first == second
    urls = [e["fullUrl"] for e in build_transaction_bundle(req)["entry"]]
    assert all(url.startswith("urn:uuid:") for url in urls)
    assert len(set(urls)) == len(urls)
    assert not set(urls) & {e["fullUrl"] for e in other["entry"]}


def test_if_none_exist_escapes_search_syntax_in_the_patient_reference() -> None:
    req = make_requisition()
    odd = msgspec.structs.replace(req.patient, reference="a|b,c&d")

    bundle = build_transaction_bundle(msgspec.structs.replace(req, patient=odd))

    query = bundle["entry"][0]["request"]["ifNoneExist"]
    assert query.endswith(":patient|a%5C|b%5C%2Cc%26d")  # FHIR-escaped, then URL-encoded
    assert "&" not in query


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"created_at": datetime(2026, 11, 3, 14, 30)}, "timezone-aware"),
        ({"panels": ()}, "at least one panel"),
        (
            {
                "panels": (
                    RequisitionPanel("cmp", "A", (Coding(LOINC, "1"),)),
                    RequisitionPanel("cmp", "B", (Coding(LOINC, "2"),)),
                )
            },
            "unique",
        ),
        ({"panels": (RequisitionPanel("cmp", "A", ()),)}, "at least one code"),
        ({"order_id": ""}, "order_id"),
    ],
)
def test_unbuildable_requisitions_fail_without_echoing_patient_data(
    overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        build_transaction_bundle(make_requisition(**overrides))

    assert not any(canary in str(caught.value) for canary in CANARIES)


def test_cancel_parameters_are_valid_fhir() -> None:
    body = build_cancel_parameters("order-1")

    parsed = Parameters.model_validate(body)

    assert msgspec.json.decode(parsed.model_dump_json(by_alias=True)) == body
    assert body["parameter"][0]["valueIdentifier"] == {"system": ORDER_SYSTEM, "value": "order-1"}


def test_idempotency_key_header_is_a_quoted_structured_field_string() -> None:
    assert idempotency_key_header("3b2f0c8e-1") == '"3b2f0c8e-1"'
    for bad in ("", 'a"b', "a\\b", "a\nb", "clé"):
        with pytest.raises(ValueError):
            idempotency_key_header(bad)
