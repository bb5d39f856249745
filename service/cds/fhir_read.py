"""Lenient readers that pick what labrec needs out of FHIR R4 JSON.

The CDS Hooks library's own example drafts are not valid R4 (a NutritionOrder without intent,
``doseAndRate`` as an object), and EHRs differ in what they fill in, so nothing here validates
a whole resource: each reader takes the fields it understands and skips the rest.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any, Final

import msgspec

from service.domain.catalog import Catalog
from service.domain.vocabulary import LOINC, Route, Sex

SNOMED: Final = "http://snomed.info/sct"
V3_ROUTE: Final = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"

#: Route codings labrec understands. SNOMED CT "Route of administration value" concepts and
#: HL7 v3 RouteOfAdministration codes (the R4 example binding and its common alternative).
#: Anything else leaves the route out rather than guessing.
ROUTE_CODES: Final[dict[tuple[str, str], Route]] = {
    (SNOMED, "47625008"): "iv",  # Intravenous route
    (SNOMED, "418114005"): "iv",  # Intravenous central route
    (SNOMED, "78421000"): "im",  # Intramuscular route
    (SNOMED, "46713006"): "intranasal",  # Nasal route
    (SNOMED, "26643006"): "oral",  # Oral route
    (SNOMED, "37839007"): "sublingual",  # Sublingual route
    (SNOMED, "34206005"): "subcutaneous",  # Subcutaneous route
    **{
        (V3_ROUTE, code): "iv"
        for code in ("IV", "IVC", "IVCC", "IVCI", "IVINJ", "IVINJBOL", "IVPUSH", "IVRPUSH")
    },
    (V3_ROUTE, "IVSPUSH"): "iv",
    (V3_ROUTE, "IM"): "im",  # Injection, intramuscular
    (V3_ROUTE, "IMD"): "im",
    (V3_ROUTE, "IMZ"): "im",
    (V3_ROUTE, "NASAL"): "intranasal",  # Topical application, nasal
    (V3_ROUTE, "NASALINSTIL"): "intranasal",  # Instillation, nasal
    (V3_ROUTE, "NASINHL"): "intranasal",  # Inhalation, nasal
    (V3_ROUTE, "PO"): "oral",  # Swallow, oral
    (V3_ROUTE, "SL"): "sublingual",  # Dissolve, sublingual
    (V3_ROUTE, "SQ"): "subcutaneous",  # Injection, subcutaneous
    (V3_ROUTE, "SQINFUS"): "subcutaneous",  # Infusion, subcutaneous
}

_DATE: Final = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_GENDERS: Final[frozenset[str]] = frozenset({"female", "male", "other", "unknown"})


class TherapyOrder(msgspec.Struct, frozen=True):
    """A MedicationRequest that names a catalog therapy."""

    therapy: str
    resource_id: str | None
    status: str | None
    route: Route | None
    authored: dt.date | None
    is_new: bool


def codings(concept: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept, skipping malformed codings."""
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [
        (c["system"], c["code"])
        for c in concept["coding"]
        if isinstance(c, dict)
        and isinstance(c.get("system"), str)
        and isinstance(c.get("code"), str)
    ]


def parse_date(value: Any) -> dt.date | None:
    """A FHIR date/dateTime (possibly partial: YYYY, YYYY-MM) as its first day."""
    if not isinstance(value, str):
        return None
    match = _DATE.match(value)
    if match is None:
        return None
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError:
        return None


def therapy_orders(catalog: Catalog, resources: Iterable[dict[str, Any]]) -> list[TherapyOrder]:
    """MedicationRequests (draft or active) whose medication maps to a catalog therapy."""
    orders: list[TherapyOrder] = []
    for resource in resources:
        if resource.get("resourceType") != "MedicationRequest":
            continue
        therapy = _therapy_of(catalog, resource)
        if therapy is None:
            continue
        status = resource.get("status") if isinstance(resource.get("status"), str) else None
        orders.append(
            TherapyOrder(
                therapy=therapy,
                resource_id=resource.get("id") if isinstance(resource.get("id"), str) else None,
                status=status,
                route=_route_of(resource, catalog.therapies[therapy].routes),
                authored=parse_date(resource.get("authoredOn")),
                # A revision of an existing prescription is not a new start.
                is_new=status in (None, "draft") and "priorPrescription" not in resource,
            )
        )
    return orders


def _therapy_of(catalog: Catalog, resource: dict[str, Any]) -> str | None:
    concepts = [resource.get("medicationCodeableConcept")]
    reference = resource.get("medicationReference")
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        ref = reference["reference"].removeprefix("#")
        contained = resource.get("contained")
        for item in contained if isinstance(contained, list) else []:
            if (
                isinstance(item, dict)
                and item.get("resourceType") == "Medication"
                and item.get("id") == ref
            ):
                concepts.append(item.get("code"))
    for concept in concepts:
        for coding in codings(concept):
            therapy = catalog.therapy_by_coding.get(coding)
            if therapy is not None:
                return therapy
    return None


def _route_of(resource: dict[str, Any], allowed: tuple[Route, ...]) -> Route | None:
    """The one route all dosage instructions agree on and the therapy allows; else None."""
    dosages = resource.get("dosageInstruction")
    if isinstance(dosages, dict):  # tolerate a single object where R4 has an array
        dosages = [dosages]
    found: set[Route] = set()
    for dosage in dosages if isinstance(dosages, list) else []:
        if isinstance(dosage, dict):
            found.update(ROUTE_CODES[c] for c in codings(dosage.get("route")) if c in ROUTE_CODES)
    if len(found) != 1:
        return None
    route = found.pop()
    return route if route in allowed else None


def patient_sex_age(resource: dict[str, Any] | None, today: dt.date) -> tuple[Sex, int | None]:
    """Administrative gender as labrec's sex (FHIR uses the same four codes) and age in years."""
    if resource is None:
        return "unknown", None
    gender = resource.get("gender")
    sex: Sex = gender if isinstance(gender, str) and gender in _GENDERS else "unknown"  # type: ignore[assignment]
    born = parse_date(resource.get("birthDate"))
    if born is None or born > today:
        return sex, None
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return sex, age if 0 <= age <= 130 else None


def recent_lab_codings(
    resources: Iterable[dict[str, Any]], today: dt.date
) -> list[tuple[str, str, dt.date]]:
    """(system, code, date) of lab Observations (LOINC) and lab orders, newest per coding."""
    latest: dict[tuple[str, str], dt.date] = {}
    for resource in resources:
        kind = resource.get("resourceType")
        if kind == "Observation":
            if resource.get("status") in ("entered-in-error", "cancelled"):
                continue
            when = _observation_date(resource)
            pairs = [c for c in codings(resource.get("code")) if c[0] == LOINC]
        elif kind == "ServiceRequest":
            if resource.get("status") not in ("active", "completed", "on-hold"):
                continue
            when = parse_date(resource.get("authoredOn")) or parse_date(
                resource.get("occurrenceDateTime")
            )
            pairs = codings(resource.get("code"))
        else:
            continue
        if when is None or when > today:
            continue
        for system, code in pairs:
            if len(system) <= 200 and 0 < len(code) <= 64:
                key = (system, code)
                if key not in latest or latest[key] < when:
                    latest[key] = when
    return [(system, code, when) for (system, code), when in latest.items()]


def _observation_date(resource: dict[str, Any]) -> dt.date | None:
    period = resource.get("effectivePeriod")
    period_date = (
        parse_date(period.get("end")) or parse_date(period.get("start"))
        if isinstance(period, dict)
        else None
    )
    return (
        parse_date(resource.get("effectiveDateTime"))
        or parse_date(resource.get("effectiveInstant"))
        or period_date
        or parse_date(resource.get("issued"))
    )
