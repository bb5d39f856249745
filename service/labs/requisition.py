"""What labrec hands to an external lab for one order.

The use cases translate a stored order into a ``LabRequisition``; the lab adapter turns it into
FHIR. Keeping this contract separate from the domain and API models means neither side can leak a
field into the lab payload by accident.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

#: FHIR AdministrativeGender; the value goes to the lab unchanged.
AdministrativeGender = Literal["female", "male", "other", "unknown"]


class Coding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    system: str
    code: str
    display: str | None = None


class ConditionCoding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An ICD-10-CM diagnosis that justifies the order (FHIR ``reasonCode``)."""

    system: str
    code: str


class RequisitionPatient(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reference: str
    given_name: str
    family_name: str
    birth_date: date
    sex: AdministrativeGender


class RequisitionPractitioner(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    npi: str
    name: str


class RequisitionPanel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    panel_id: str
    name: str
    codes: tuple[Coding, ...]


class LabRequisition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One order as the lab sees it; ``order_id`` is labrec's UUID and the requisition number."""

    order_id: str
    organisation_id: str
    created_at: datetime
    patient: RequisitionPatient
    practitioner: RequisitionPractitioner
    panels: tuple[RequisitionPanel, ...]
    conditions: tuple[ConditionCoding, ...] = ()
    notes: str | None = None
