"""FHIR documents the sandbox lab answers with: transaction-response, Task, searchset, outcome.

Ids are derived from the requisition (uuid5), so a restarted sandbox hands out the same accession
number for the same order, just as a real lab would find the order it already has.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from service.labs.fhir_bundle import (
    ACCESSION_TYPE,
    IDENTIFIER_TYPE_SYSTEM,
    ORDER_SYSTEM,
    FhirJson,
)
from service.labs.sandbox_validate import Issue, ValidTransaction
from service.labs.status import TO_TASK_STATUS, LabOrderStatus

ACCESSION_SYSTEM: Final = "urn:labrec:sandbox-lab:accession"
_NAMESPACE: Final = uuid.UUID("0f5e9a52-8d7b-4c1e-a4a4-6b2d2b9d7c11")


def accession_for(requisition: str) -> str:
    return "SBX-" + uuid.uuid5(_NAMESPACE, f"accession/{requisition}").hex[:12].upper()


def local_id(kind: str, key: str) -> str:
    return uuid.uuid5(_NAMESPACE, f"{kind}/{key}").hex[:16]


def fhir_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def accession_identifier(accession: str) -> FhirJson:
    return {
        "type": {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": ACCESSION_TYPE}]},
        "system": ACCESSION_SYSTEM,
        "value": accession,
    }


def transaction_response(
    tx: ValidTransaction, accession: str, patient_id: str
) -> tuple[FhirJson, tuple[str, ...]]:
    """The answer to an accepted order, entry by entry in request order, and the ServiceRequest
    ids assigned. Returned ServiceRequests carry the accession number as an ACSN identifier.
    """
    entries: list[FhirJson] = []
    request_ids: list[str] = []
    for kind, resource in tx.entries:
        if kind == "ServiceRequest":
            sr_id = f"{accession}-{len(request_ids) + 1}"
            request_ids.append(sr_id)
            entries.append(
                {
                    "resource": _accepted_service_request(resource, sr_id, accession, patient_id),
                    "response": {
                        "status": "201 Created",
                        "location": f"ServiceRequest/{sr_id}/_history/1",
                    },
                }
            )
        else:
            resource_id = (
                patient_id if kind == "Patient" else local_id(kind, _first_identifier(resource))
            )
            location = f"{kind}/{resource_id}/_history/1"
            entries.append({"response": {"status": "201 Created", "location": location}})
    bundle = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
    return bundle, tuple(request_ids)


def task(
    *,
    order_id: str,
    accession: str,
    status: LabOrderStatus,
    patient_id: str,
    request_ids: tuple[str, ...],
    authored: datetime,
    modified: datetime,
    message: str | None,
) -> FhirJson:
    resource: FhirJson = {
        "resourceType": "Task",
        "id": accession,
        "identifier": [
            {"system": ORDER_SYSTEM, "value": order_id},
            accession_identifier(accession),
        ],
        "basedOn": [{"reference": f"ServiceRequest/{sr_id}"} for sr_id in request_ids],
        "status": TO_TASK_STATUS[status],
        "intent": "order",
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": fhir_instant(authored),
        "lastModified": fhir_instant(modified),
    }
    if message:
        resource["statusReason"] = {"text": message}
    return resource


def searchset(resources: list[FhirJson]) -> FhirJson:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


def operation_outcome(issues: list[Issue], severity: str = "error") -> FhirJson:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": issue.code,
                "diagnostics": issue.diagnostics,
                "expression": [issue.expression],
            }
            for issue in issues
        ],
    }


def outcome(code: str, diagnostics: str, severity: str = "error") -> FhirJson:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def _accepted_service_request(
    submitted: dict[str, Any], sr_id: str, accession: str, patient_id: str
) -> FhirJson:
    return {
        "resourceType": "ServiceRequest",
        "id": sr_id,
        "identifier": [*submitted.get("identifier", []), accession_identifier(accession)],
        "requisition": submitted["requisition"],
        "status": "active",
        "intent": "order",
        "code": submitted["code"],
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def _first_identifier(resource: dict[str, Any]) -> str:
    identifiers = resource.get("identifier")
    if isinstance(identifiers, list) and identifiers and isinstance(identifiers[0], dict):
        return f"{identifiers[0].get('system', '')}|{identifiers[0].get('value', '')}"
    return "anonymous"
