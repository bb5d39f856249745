"""Request and response shapes shared by every face (REST, CDS Hooks, UI).

Write shapes forbid unknown fields (no mass assignment) and bound every string and list.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec

from service.domain.text import LINE_PATTERN, TEXT_PATTERN, TOKEN_PATTERN
from service.domain.vocabulary import (
    EvidenceGrade,
    FamilyId,
    Finding,
    Phase,
    Priority,
    Route,
    Setting,
    Severity,
    Sex,
    SpecimenType,
    SuppressionReason,
    Tier,
)


def line(max_length: int, min_length: int = 1) -> msgspec.Meta:
    """Bounds of a one-line free string (names, codes, ids typed by a person)."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=LINE_PATTERN)


Str64 = Annotated[str, line(64)]
Str200 = Annotated[str, line(200)]
Url = Annotated[str, line(200)]


def _list_of_strings(min_items: int, max_items: int, max_length: int) -> msgspec.Meta:
    """Bounds for a list of strings; the item bounds are repeated for OpenAPI, whose generator
    (Litestar's) does not carry constraints of list items into the schema by itself."""
    return msgspec.Meta(
        min_length=min_items,
        max_length=max_items,
        extra_json_schema={
            "extra": {
                "items": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": max_length,
                    "pattern": LINE_PATTERN,
                }
            }
        },
    )


class CodingIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    system: Url
    code: Str64


class PatientContextIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sex: Sex
    age: Annotated[int, msgspec.Meta(ge=0, le=130)] | None = None
    pregnancy_possible: bool | None = None
    #: Known pregnancy: implies pregnancy_possible and wins over ``pregnancy_possible: false``.
    pregnant: bool | None = None


class RecentTestIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    date: dt.date
    code: CodingIn | None = None
    panel_id: Str64 | None = None
    #: Flagged abnormal (or a positive hCG): it never satisfies a look-back.
    abnormal: bool = False


class MedicationIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Another current medication: an RxNorm coding or a catalog medication class id."""

    code: CodingIn | None = None
    class_id: Str64 | None = None
    started: dt.date | None = None


class PreferencesIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    exclude_specimen_types: Annotated[list[SpecimenType], msgspec.Meta(max_length=8)] = (
        msgspec.field(default_factory=list)
    )
    evidence_based_only: bool = False
    vendors: Annotated[list[Str200], _list_of_strings(0, 20, 200)] = msgspec.field(
        default_factory=list
    )
    #: Complementary families asked for; only lifts ``not_requested`` (neurotransmitter).
    request_families: Annotated[list[FamilyId], msgspec.Meta(max_length=4)] = msgspec.field(
        default_factory=list
    )


class RecommendationRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A therapy context. ``therapy`` is a catalog id or an RxNorm coding."""

    therapy: Annotated[
        Str64 | CodingIn,
        msgspec.Meta(
            extra_json_schema={
                "extra": {
                    "one_of": [
                        {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 64,
                            "pattern": LINE_PATTERN,
                        },
                        {"$ref": "#/components/schemas/CodingIn"},
                    ]
                }
            }
        ),
    ]
    phase: Phase
    patient: PatientContextIn
    route: Route | None = None
    conditions: Annotated[list[CodingIn], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )
    findings: Annotated[list[Finding], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    recent_tests: Annotated[list[RecentTestIn], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    preferences: PreferencesIn = msgspec.field(default_factory=PreferencesIn)
    as_of: dt.date | None = None
    setting: Setting | None = None
    therapy_started: dt.date | None = None
    last_dose_change: dt.date | None = None
    medications: Annotated[list[MedicationIn], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )


class CodingOut(msgspec.Struct, frozen=True):
    system: str
    code: str
    display: str | None = None


class PriceOut(msgspec.Struct, frozen=True):
    amount: float
    currency: str
    source: str


class PanelOut(msgspec.Struct, frozen=True):
    id: str
    name: str
    family: str
    tier: Tier
    codes: list[CodingOut]
    vendor: str
    specimen: SpecimenType
    specimen_collection: str
    turnaround: str | None = None
    price: PriceOut | None = None
    #: Every specimen type the panel needs (``specimen`` is the main one).
    specimen_types: list[SpecimenType] = msgspec.field(default_factory=list)


class PanelDetailOut(PanelOut, frozen=True):
    analytes: list[str] = msgspec.field(default_factory=list)
    satisfied_by: list[CodingOut] = msgspec.field(default_factory=list)
    caveats: list[str] = msgspec.field(default_factory=list)
    unknowns: list[str] = msgspec.field(default_factory=list)
    default_in_family: bool = False


class EvidenceOut(msgspec.Struct, frozen=True):
    id: str
    citation: str
    finding: str
    grade: EvidenceGrade
    doi: str | None = None
    pmid: str | None = None
    label: str | None = None
    url: str | None = None


class SuggestionOut(msgspec.Struct, frozen=True):
    panel: PanelOut
    priority: Priority
    rationale: str
    evidence: list[EvidenceOut]
    rules: list[str]
    cautions: list[str]
    alternatives: list[PanelOut]
    retest_days: int | None = None
    #: True only for safety-tier essential/recommended suggestions.
    preselected: bool = False


class SuppressedOut(msgspec.Struct, frozen=True):
    panel_id: str
    panel_name: str
    reason: SuppressionReason
    detail: str
    rules: list[str]
    last_tested: dt.date | None = None
    next_due: dt.date | None = None


class AdvisoryOut(msgspec.Struct, frozen=True):
    id: str
    text: str
    source: str
    severity: Severity = "info"


class IgnoredCodingOut(msgspec.Struct, frozen=True):
    path: str
    reason: str


class RecommendationOut(msgspec.Struct, frozen=True):
    recommendation_id: str
    catalog_version: str
    created_at: dt.datetime
    as_of: dt.date
    therapy: str
    suggestions: list[SuggestionOut]
    suppressed: list[SuppressedOut]
    advisories: list[AdvisoryOut]
    disclaimer: str
    ignored_codings: list[IgnoredCodingOut] = msgspec.field(default_factory=list)


class TherapyOut(msgspec.Struct, frozen=True):
    id: str
    name: str
    routes: list[Route]
    codings: list[dict[str, Any]]
    note: str | None = None


Npi = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{10}(?!\n)$")]
Name = Annotated[str, line(100)]
PatientReference = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=TOKEN_PATTERN)]
Notes = Annotated[str, msgspec.Meta(max_length=2000, pattern=TEXT_PATTERN)]


class PatientIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a lab requisition needs to identify the patient."""

    reference: PatientReference
    given_name: Name
    family_name: Name
    birth_date: dt.date
    sex: Sex


class PractitionerIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    npi: Npi
    name: Name


class OrderRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    patient: PatientIn
    practitioner: PractitionerIn
    panel_ids: Annotated[list[Str64], _list_of_strings(1, 30, 64)]
    conditions: Annotated[list[CodingIn], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    recommendation_id: Annotated[str, line(36, min_length=0)] | None = None
    notes: Notes | None = None


class OrderPanelOut(msgspec.Struct, frozen=True):
    id: str
    name: str
    codes: list[CodingOut]
    specimen: str


class AttemptOut(msgspec.Struct, frozen=True):
    at: dt.datetime
    kind: str
    outcome: str
    detail: str | None = None


class OrderOut(msgspec.Struct, frozen=True):
    id: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    patient: PatientIn
    practitioner: PractitionerIn
    panels: list[OrderPanelOut]
    conditions: list[CodingOut]
    catalog_version: str
    recommendation_id: str | None = None
    notes: str | None = None
    lab_order_id: str | None = None
    status_detail: str | None = None
    attempts: list[AttemptOut] = msgspec.field(default_factory=list)


class OrderStatusOut(msgspec.Struct, frozen=True):
    """Where an order stands, without patient or practitioner data (the UI's live status)."""

    id: str
    status: str
    updated_at: dt.datetime
    lab_order_id: str | None = None
    status_detail: str | None = None
    attempts: list[AttemptOut] = msgspec.field(default_factory=list)


class OrderSummaryOut(msgspec.Struct, frozen=True):
    id: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    patient_reference: str
    panel_ids: list[str]
    lab_order_id: str | None = None


class OrderPage(msgspec.Struct, frozen=True):
    items: list[OrderSummaryOut]
    next_cursor: str | None = None


class ApiKeyOut(msgspec.Struct, frozen=True):
    """A key as listed: never the key itself, only its first characters."""

    id: str
    prefix: str
    role: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None


class NewApiKeyOut(msgspec.Struct, frozen=True):
    key: ApiKeyOut
    secret: str


class NewApiKeyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: Literal["integration", "admin"] = "integration"


class AuditRecordOut(msgspec.Struct, frozen=True):
    id: int
    at: dt.datetime
    actor: str
    action: str
    object_type: str
    outcome: str
    object_id: str | None = None
    patient_reference: str | None = None
    request_id: str | None = None


class AuditPage(msgspec.Struct, frozen=True):
    items: list[AuditRecordOut]
    next_cursor: str | None = None
