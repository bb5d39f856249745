"""From a hook call and its prefetch to the same ``RecommendationRequest`` REST accepts.

Phase heuristic (MAPPING.md: baseline = before the first dose, induction = first weeks to about
six months, maintenance = after that):

- a **new draft** MedicationRequest (status ``draft`` or none, no ``priorPrescription``) and no
  other active order for the same therapy among the patient's active MedicationRequests
  → ``baseline``;
- otherwise (a prior active order exists, the order is a revision, or patient-view found an
  active order) → ``induction`` when the earliest known ``authoredOn`` of those orders is at most
  182 days ago or unknown (the broader safety set), ``maintenance`` when it is older;
- when the active medications could not be read, a new draft is treated as a new start
  (``baseline``), and the card says so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import msgspec

from service.cds.fhir_read import (
    TherapyOrder,
    codings,
    parse_date,
    patient_sex_age,
    recent_lab_codings,
    therapy_orders,
)
from service.cds.prefetch import Slot
from service.domain.catalog import Catalog
from service.domain.vocabulary import ICD10CM, RXNORM, Phase, Route
from service.usecases.dto import RecommendationRequest

INDUCTION_DAYS: Final = 182
_MAX_CONDITIONS: Final = 50
_MAX_TESTS: Final = 100
_MAX_MEDICATIONS: Final = 50
_LABELS: Final = {
    "patient": "patient sex and birth date",
    "conditions": "active conditions",
    "medications": "active medication orders",
    "labs": "recent lab results",
    "labOrders": "recent lab orders",
}


class Translation(msgspec.Struct, frozen=True):
    request: RecommendationRequest
    therapy: str
    phase: Phase
    #: Plain sentences for the card: how the phase was decided, what data was (not) available.
    notes: tuple[str, ...]


def resources(slot: Slot | None) -> tuple[dict[str, Any], ...]:
    return slot.resources if slot is not None and slot.state == "data" else ()


def active_orders(catalog: Catalog, slots: dict[str, Slot]) -> list[TherapyOrder]:
    """Catalog-therapy MedicationRequests among the patient's active medication orders."""
    return [
        order
        for order in therapy_orders(catalog, resources(slots.get("medications")))
        if order.status in (None, "active", "on-hold")
    ]


def translate(
    catalog: Catalog,
    therapy: str,
    draft: TherapyOrder | None,
    slots: dict[str, Slot],
    today: dt.date,
) -> Translation:
    active = active_orders(catalog, slots)
    phase, phase_note = decide_phase(catalog, therapy, draft, active, slots, today)
    patient = resources(slots.get("patient"))
    patient_resource = next((r for r in patient if r.get("resourceType") == "Patient"), None)
    sex, age = patient_sex_age(patient_resource, today)
    conditions = condition_codings(resources(slots.get("conditions")))[:_MAX_CONDITIONS]
    medications = other_medications(catalog, therapy, draft, resources(slots.get("medications")))[
        :_MAX_MEDICATIONS
    ]
    tests = recent_lab_codings(
        (*resources(slots.get("labs")), *resources(slots.get("labOrders"))), today
    )
    tests.sort(key=lambda t: t[2], reverse=True)
    route = draft.route if draft is not None else _route_from_active(therapy, active)
    payload: dict[str, Any] = {
        "therapy": therapy,
        "phase": phase,
        "patient": {"sex": sex} if age is None else {"sex": sex, "age": age},
        # Every active problem goes in: ICD-10-CM ones match the condition groups (and derive
        # findings), others come back in ``ignored_codings`` (MAPPING v2 rule 7).
        "conditions": [{"system": system, "code": code} for system, code in conditions],
        "medications": medications,
        "recent_tests": [
            {"date": when, "code": {"system": system, "code": code}}
            for system, code, when in tests[:_MAX_TESTS]
        ],
    }
    if route is not None:
        payload["route"] = route
    started = _therapy_started(therapy, draft, active)
    if phase != "baseline" and started is not None and started <= today:
        payload["therapy_started"] = started.isoformat()
    notes = [phase_note, *_data_notes(slots)]
    if patient_resource is None or sex == "unknown":
        notes.append("The patient's sex is unknown to labrec, so pregnancy is treated as possible.")
    if route is None:
        notes.append("No route labrec recognises was given; route-specific rules were skipped.")
    return Translation(
        request=msgspec.convert(payload, RecommendationRequest),
        therapy=therapy,
        phase=phase,
        notes=tuple(notes),
    )


def condition_codings(items: tuple[dict[str, Any], ...]) -> list[tuple[str, str]]:
    """(system, code) per active Condition: its ICD-10-CM coding when it has one, else its first
    coding (SNOMED CT and others are reported as ignored, never a rejection)."""
    found: dict[tuple[str, str], None] = {}
    for resource in items:
        if resource.get("resourceType") != "Condition" or not _is_active_condition(resource):
            continue
        pairs = [
            (system, code)
            for system, code in codings(resource.get("code"))
            if 0 < len(code) <= 64 and 0 < len(system) <= 200
        ]
        icd = [pair for pair in pairs if pair[0] == ICD10CM and len(pair[1]) <= 16]
        chosen = icd[0] if icd else (pairs[0] if pairs else None)
        if chosen is not None:
            found[chosen] = None
    return list(found)


def _is_active_condition(resource: dict[str, Any]) -> bool:
    clinical = [code for _, code in codings(resource.get("clinicalStatus"))]
    if clinical and not {"active", "recurrence", "relapse"} & set(clinical):
        return False
    verification = {code for _, code in codings(resource.get("verificationStatus"))}
    return not verification & {"refuted", "entered-in-error"}


def other_medications(
    catalog: Catalog,
    therapy: str,
    draft: TherapyOrder | None,
    items: tuple[dict[str, Any], ...],
) -> list[dict[str, Any]]:
    """The patient's other active medications as RxNorm codings (or their first coding), with the
    order date as ``started``; the catalog maps them to medication classes, or reports them."""
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for resource in items:
        if resource.get("resourceType") != "MedicationRequest":
            continue
        if resource.get("status") not in (None, "active", "on-hold"):
            continue
        if draft is not None and draft.resource_id and resource.get("id") == draft.resource_id:
            continue
        pairs = [
            (system, code)
            for system, code in codings(resource.get("medicationCodeableConcept"))
            if 0 < len(code) <= 64 and 0 < len(system) <= 200
        ]
        if any(catalog.therapy_by_coding.get(pair) == therapy for pair in pairs):
            continue  # the therapy in context itself
        rxnorm = [pair for pair in pairs if pair[0] == RXNORM]
        mapped = [pair for pair in rxnorm if pair in catalog.class_by_coding]
        chosen = next(iter(mapped or rxnorm or pairs), None)
        if chosen is None or chosen in seen:
            continue
        seen.add(chosen)
        entry: dict[str, Any] = {"code": {"system": chosen[0], "code": chosen[1]}}
        authored = parse_date(resource.get("authoredOn"))
        if authored is not None:
            entry["started"] = authored.isoformat()
        found.append(entry)
    return found


def _therapy_started(
    therapy: str, draft: TherapyOrder | None, active: list[TherapyOrder]
) -> dt.date | None:
    dates = [o.authored for o in active if o.therapy == therapy and o.authored is not None]
    if draft is not None and not draft.is_new and draft.authored is not None:
        dates.append(draft.authored)
    return min(dates, default=None)


def decide_phase(
    catalog: Catalog,
    therapy: str,
    draft: TherapyOrder | None,
    active: list[TherapyOrder],
    slots: dict[str, Slot],
    today: dt.date,
) -> tuple[Phase, str]:
    name = catalog.therapies[therapy].name
    prior = [
        order
        for order in active
        if order.therapy == therapy
        and (draft is None or order.resource_id is None or order.resource_id != draft.resource_id)
    ]
    meds_known = slots.get("medications", Slot("missing")).state in ("data", "none")
    if draft is not None and draft.is_new and not prior:
        if meds_known:
            return "baseline", f"Phase baseline: no active {name} order is on record."
        return "baseline", (
            f"Phase baseline assumed: active medication orders were not available, so the "
            f"draft {name} order is treated as a new start."
        )
    dates = [order.authored for order in prior if order.authored is not None]
    if draft is not None and not draft.is_new and draft.authored is not None:
        dates.append(draft.authored)
    if not dates:
        return "induction", (
            f"Phase induction assumed: {name} is already ordered but its start date is unknown."
        )
    started = min(dates)
    days = (today - started).days
    if days <= INDUCTION_DAYS:
        return "induction", f"Phase induction: {name} first ordered {started.isoformat()}."
    return "maintenance", f"Phase maintenance: {name} first ordered {started.isoformat()}."


def _route_from_active(therapy: str, active: list[TherapyOrder]) -> Route | None:
    routes = {order.route for order in active if order.therapy == therapy and order.route}
    return routes.pop() if len(routes) == 1 else None


def _data_notes(slots: dict[str, Slot]) -> list[str]:
    missing = [_LABELS[k] for k, s in slots.items() if s.state == "missing" and k in _LABELS]
    failed = [_LABELS[k] for k, s in slots.items() if s.state == "unavailable" and k in _LABELS]
    fetched = [_LABELS[k] for k, s in slots.items() if s.fetched and k in _LABELS]
    notes = []
    if missing:
        notes.append("Not available to labrec: " + ", ".join(missing) + ".")
    if failed:
        notes.append("The EHR reported an error for: " + ", ".join(failed) + ".")
    if fetched:
        notes.append("Read from the EHR's FHIR server: " + ", ".join(fetched) + ".")
    labs = slots.get("labs")
    if labs is not None and labs.state in ("missing", "unavailable"):
        notes.append("Recent results could not be checked: some panels may repeat recent tests.")
    return notes
