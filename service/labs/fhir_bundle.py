"""FHIR R4 documents labrec sends to a lab: the order transaction and the cancel parameters.

Every id in the bundle is derived from the order id (uuid5), and the dict is built in a fixed key
order, so a resend after a lost response is byte-identical to the first attempt and the lab can
dedupe it by body as well as by ``Idempotency-Key``.
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any, Final
from urllib.parse import quote

from service.labs.requisition import LabRequisition, RequisitionPanel

FhirJson = dict[str, Any]

FHIR_JSON: Final = "application/fhir+json"
#: The requisition identifier shared by every ServiceRequest of one order; value = order id.
ORDER_SYSTEM: Final = "urn:labrec:order"
#: Placer identifier of one ServiceRequest; value = "<order id>/<panel id>".
ORDER_PANEL_SYSTEM: Final = "urn:labrec:order-panel"
NPI_SYSTEM: Final = "http://hl7.org/fhir/sid/us-npi"
OBSERVATION_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
IDENTIFIER_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
#: Identifier type a lab uses for its own order number (the accession number).
ACCESSION_TYPE: Final = "ACSN"
PLACER_TYPE: Final = "PLAC"

#: Fixed namespace for the bundle's urn:uuid fullUrls; never change it, or resends stop matching.
_FULLURL_NAMESPACE: Final = uuid.UUID("5b0c6c1e-3f0e-4d61-9a51-2c7f6f1d8a43")


def patient_identifier_system(organisation_id: str) -> str:
    """EHR patient references are only unique within one organisation, so the system says which."""
    return f"urn:labrec:org:{organisation_id}:patient"


def idempotency_key_header(key: str) -> str:
    """The draft IETF Idempotency-Key header is a structured-field string, so it is quoted."""
    if not key or not key.isascii() or not key.isprintable() or '"' in key or "\\" in key:
        raise ValueError("idempotency key must be printable ASCII without quotes or backslashes")
    return f'"{key}"'


def build_transaction_bundle(req: LabRequisition) -> FhirJson:
    """One order as a FHIR ``transaction``: Patient, Practitioner, one ServiceRequest per panel."""
    _check(req)
    patient_url = _full_url(req.order_id, "patient")
    practitioner_url = _full_url(req.order_id, "practitioner")
    patient_system = patient_identifier_system(req.organisation_id)
    entries: list[FhirJson] = [
        {
            "fullUrl": patient_url,
            "resource": _patient(req, patient_system),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": _identifier_search(patient_system, req.patient.reference),
            },
        },
        {
            "fullUrl": practitioner_url,
            "resource": _practitioner(req),
            "request": {
                "method": "POST",
                "url": "Practitioner",
                "ifNoneExist": _identifier_search(NPI_SYSTEM, req.practitioner.npi),
            },
        },
    ]
    for panel in req.panels:
        placer = f"{req.order_id}/{panel.panel_id}"
        entries.append(
            {
                "fullUrl": _full_url(req.order_id, f"panel/{panel.panel_id}"),
                "resource": _service_request(req, panel, placer, patient_url, practitioner_url),
                "request": {
                    "method": "POST",
                    "url": "ServiceRequest",
                    "ifNoneExist": _identifier_search(ORDER_PANEL_SYSTEM, placer),
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def build_cancel_parameters(order_id: str) -> FhirJson:
    """Body of ``ServiceRequest/$cancel-requisition``: which requisition to withdraw."""
    if not order_id:
        raise ValueError("order_id is required")
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "requisition", "valueIdentifier": {"system": ORDER_SYSTEM, "value": order_id}}
        ],
    }


def _check(req: LabRequisition) -> None:
    # Messages name the field, never its value: they may end up in logs.
    if not req.order_id:
        raise ValueError("order_id is required")
    if req.created_at.tzinfo is None or req.created_at.utcoffset() is None:
        raise ValueError("created_at must be timezone-aware")
    if not req.panels:
        raise ValueError("a requisition needs at least one panel")
    panel_ids = [panel.panel_id for panel in req.panels]
    if len(set(panel_ids)) != len(panel_ids):
        raise ValueError("panel ids must be unique within a requisition")
    if any(not panel.codes for panel in req.panels):
        raise ValueError("every panel needs at least one code")


def _full_url(order_id: str, part: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_FULLURL_NAMESPACE, f'{order_id}/{part}')}"


def _identifier_search(system: str, value: str) -> str:
    # FHIR token search escapes \ | , $ with a backslash; the whole string is then URL-encoded.
    escaped = "".join(f"\\{ch}" if ch in "\\|,$" else ch for ch in value)
    return "identifier=" + quote(f"{system}|{escaped}", safe=":/|")


def _patient(req: LabRequisition, system: str) -> FhirJson:
    patient = req.patient
    return {
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": patient.reference}],
        "name": [{"use": "official", "family": patient.family_name, "given": [patient.given_name]}],
        "gender": patient.sex,
        "birthDate": patient.birth_date.isoformat(),
    }


def _practitioner(req: LabRequisition) -> FhirJson:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": NPI_SYSTEM, "value": req.practitioner.npi}],
        "name": [{"text": req.practitioner.name}],
    }


def _service_request(
    req: LabRequisition,
    panel: RequisitionPanel,
    placer: str,
    patient_url: str,
    practitioner_url: str,
) -> FhirJson:
    resource: FhirJson = {
        "resourceType": "ServiceRequest",
        "identifier": [
            {
                "type": {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": PLACER_TYPE}]},
                "system": ORDER_PANEL_SYSTEM,
                "value": placer,
            }
        ],
        "requisition": {"system": ORDER_SYSTEM, "value": req.order_id},
        "status": "active",
        "intent": "order",
        "category": [
            {
                "coding": [
                    {
                        "system": OBSERVATION_CATEGORY_SYSTEM,
                        "code": "laboratory",
                        "display": "Laboratory",
                    }
                ]
            }
        ],
        "code": {
            "coding": [_coding(c.system, c.code, c.display) for c in panel.codes],
            "text": panel.name,
        },
        "subject": {"reference": patient_url},
        "authoredOn": req.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "requester": {"reference": practitioner_url},
    }
    # FHIR forbids empty arrays and strings, so optional parts are left out rather than emptied.
    if req.conditions:
        resource["reasonCode"] = [
            {"coding": [_coding(c.system, c.code, None)]} for c in req.conditions
        ]
    if req.notes:
        resource["note"] = [{"text": req.notes}]
    return resource


def _coding(system: str, code: str, display: str | None) -> FhirJson:
    coding: FhirJson = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding
