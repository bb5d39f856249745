"""Test data for the lab adapter; canary values make leaks of patient data easy to spot."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from service.labs.fhir_bundle import build_transaction_bundle
from service.labs.requisition import (
    Coding,
    ConditionCoding,
    LabRequisition,
    RequisitionPanel,
    RequisitionPatient,
    RequisitionPractitioner,
)

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
CANARY_GIVEN = "Zzcanaryfirst"
CANARY_FAMILY = "Zzcanarylast"
CANARY_REFERENCE = "ehr-zzcanary-4711"
CANARY_BIRTH = date(1911, 11, 11)
CANARY_NOTE = "zzcanary note: esketamine induction"
CANARY_CONDITION = "F43.10"
CANARIES = (
    CANARY_GIVEN,
    CANARY_FAMILY,
    CANARY_REFERENCE,
    CANARY_BIRTH.isoformat(),
    CANARY_NOTE,
    CANARY_CONDITION,
)


def make_requisition(**overrides: Any) -> LabRequisition:
    fields: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),
        "organisation_id": "0c9d1f34-7f4e-4b7a-9a43-0b1c6f1e2d3a",
        "created_at": datetime(2026, 11, 3, 14, 30, 5, tzinfo=UTC),
        "patient": RequisitionPatient(
            reference=CANARY_REFERENCE,
            given_name=CANARY_GIVEN,
            family_name=CANARY_FAMILY,
            birth_date=CANARY_BIRTH,
            sex="female",
        ),
        "practitioner": RequisitionPractitioner(npi="1234567893", name="Jo Lee"),
        "panels": (
            RequisitionPanel(
                panel_id="cmp",
                name="Comprehensive metabolic panel",
                codes=(Coding(LOINC, "24323-8", "Comprehensive metabolic panel"),),
            ),
            RequisitionPanel(
                panel_id="urinalysis",
                name="Urinalysis",
                codes=(Coding(LOINC, "24356-8", None), Coding("urn:sandbox:codes", "UA-1")),
            ),
        ),
        "conditions": (
            ConditionCoding(ICD10CM, CANARY_CONDITION),
            ConditionCoding(ICD10CM, "F33.2"),
        ),
        "notes": CANARY_NOTE,
    }
    fields.update(overrides)
    return LabRequisition(**fields)


def bundle_bytes(req: LabRequisition) -> bytes:
    return msgspec.json.encode(build_transaction_bundle(req))
