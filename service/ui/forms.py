"""HTML form fields <-> the use cases' request Structs, with errors in plain words per field.

Only the shape is checked here (required, formats, ranges) so the message can sit next to the
field; clinical rules stay in the use cases, whose ``InvalidInput`` errors are mapped back onto
the form by ``map_usecase_errors``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, get_args

import msgspec
from litestar.datastructures import FormMultiDict

from service.domain.vocabulary import (
    FINDINGS,
    ICD10CM,
    PHASES,
    ROUTES,
    SPECIMEN_TYPES,
    FamilyId,
    Setting,
    Sex,
)
from service.usecases.dto import OrderRequest, RecommendationRequest

CONDITION_ROWS: Final = 3
RECENT_TEST_ROWS: Final = 3
_ICD10: Final = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
_NPI: Final = re.compile(r"^\d{10}$")
_KEY: Final = re.compile(r"^[A-Za-z0-9_-]{8,255}$")
_SEXES: Final = frozenset(get_args(Sex))
_SETTINGS: Final = frozenset(get_args(Setting))
_FAMILIES: Final = frozenset(get_args(FamilyId))
#: C0/C1 control characters (tab and newline included: no field here is multi-line).
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Form keys an error can sit next to; any other use-case error goes to the top of the form.
_FIELD_KEYS: Final = re.compile(
    r"^(therapy|route|phase|sex|age|setting|therapy_started|last_dose_change|findings"
    r"|medications|exclude_specimens|vendors|request_families|condition-\d+|recent-\d+)$"
)

Errors = dict[str, str]
Values = dict[str, Any]


def _text(form: FormMultiDict, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _texts(form: FormMultiDict, name: str, limit: int = 200) -> list[str]:
    return [v.strip()[:limit] for v in form.getall(name, []) if isinstance(v, str)]


def _date(raw: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        return None


def _condition_code(raw: str) -> str:
    """'F33.2', 'f332' or 'F33.2 — Depression, active episode' (a datalist pick) -> 'F33.2'."""
    return raw.split()[0].upper() if raw.split() else ""


def medication_started_field(class_id: str) -> str:
    """The form field of the optional start date of a medication class."""
    return f"medication_started-{class_id}"


def recommendation_values(form: FormMultiDict, medication_classes: Sequence[str] = ()) -> Values:
    """What the practitioner typed, to show the form again unchanged.

    ``medication_classes`` are the catalog's class ids: only their start-date fields are read.
    """
    conditions = (_texts(form, "condition") + [""] * CONDITION_ROWS)[:CONDITION_ROWS]
    panels = (_texts(form, "recent_panel", 64) + [""] * RECENT_TEST_ROWS)[:RECENT_TEST_ROWS]
    dates = (_texts(form, "recent_date", 10) + [""] * RECENT_TEST_ROWS)[:RECENT_TEST_ROWS]
    abnormal = set(_texts(form, "recent_abnormal", 4))
    flags = [str(i) in abnormal for i in range(RECENT_TEST_ROWS)]
    started = {c: _text(form, medication_started_field(c), 10) for c in medication_classes}
    return {
        "therapy": _text(form, "therapy", 64),
        "route": _text(form, "route", 32),
        "phase": _text(form, "phase", 32),
        "conditions": conditions,
        "sex": _text(form, "sex", 16),
        "age": _text(form, "age", 8),
        "pregnancy": _text(form, "pregnancy", 8) or "unknown",
        "findings": _texts(form, "finding", 64),
        "pregnant": _text(form, "pregnant", 8) == "yes",
        "setting": _text(form, "setting", 32),
        "therapy_started": _text(form, "therapy_started", 10),
        "last_dose_change": _text(form, "last_dose_change", 10),
        "medications": list(dict.fromkeys(_texts(form, "medication", 64)))[:50],
        "medication_started": {c: d for c, d in started.items() if d},
        "recent": list(zip(panels, dates, flags, strict=True)),
        "exclude_specimens": _texts(form, "exclude_specimen", 32),
        "evidence_only": _text(form, "evidence_only", 8) == "yes",
        "vendors": _text(form, "vendors", 400),
        "request_families": _texts(form, "request_family", 32),
    }


_DATE_ERROR: Final = "Enter a date as year, month and day (e.g. 2026-11-01), or leave it empty."


def _optional_date(values: Values, name: str, errors: Errors) -> dt.date | None:
    raw = values[name]
    if not raw:
        return None
    when = _date(raw)
    if when is None:
        errors[name] = _DATE_ERROR
    return when


def _medications(
    values: Values, medication_classes: Sequence[str], errors: Errors
) -> list[dict[str, Any]]:
    """One ``{class_id, started}`` per ticked class; a start date needs its class ticked."""
    ticked = values["medications"]
    if medication_classes and set(ticked) - set(medication_classes):
        errors["medications"] = "One of the medication classes is not one labrec knows."
    found: list[dict[str, Any]] = []
    for class_id in medication_classes:
        raw = values["medication_started"].get(class_id, "")
        when = _date(raw) if raw else None
        if raw and when is None:
            errors[f"medication-{class_id}"] = _DATE_ERROR
        elif raw and class_id not in ticked:
            errors[f"medication-{class_id}"] = (
                "Tick this medication class, or clear its start date."
            )
    for class_id in ticked:
        item: dict[str, Any] = {"class_id": class_id}
        raw = values["medication_started"].get(class_id, "")
        if raw and (when := _date(raw)) is not None:
            item["started"] = when
        found.append(item)
    return found


def parse_recommendation(
    values: Values, medication_classes: Sequence[str] = ()
) -> tuple[RecommendationRequest | None, Errors]:
    """A RecommendationRequest, or the errors keyed by form field.

    ``medication_classes`` are the catalog's class ids (the only ones the form offers).
    """
    errors: Errors = {}
    if not values["therapy"]:
        errors["therapy"] = "Choose a therapy."
    elif _CONTROL.search(values["therapy"]):
        errors["therapy"] = "Choose a therapy from the list."
    if values["route"] and values["route"] not in ROUTES:
        errors["route"] = "Choose a route from the list, or Not specified."
    if values["phase"] not in PHASES:
        errors["phase"] = "Choose a phase."
    if values["sex"] not in _SEXES:
        errors["sex"] = "Choose the patient's sex (or Unknown)."
    age: int | None = None
    if values["age"]:
        if values["age"].isdigit() and int(values["age"]) <= 130:
            age = int(values["age"])
        else:
            errors["age"] = "Enter the age in whole years, from 0 to 130, or leave it empty."
    conditions = []
    for i, raw in enumerate(values["conditions"]):
        code = _condition_code(raw)
        if not code:
            continue
        if not _ICD10.match(code):
            errors[f"condition-{i}"] = (
                "Type an ICD-10-CM code such as F33.2, or pick a condition from the list."
            )
        else:
            conditions.append({"system": ICD10CM, "code": code})
    if set(values["findings"]) - FINDINGS:
        errors["findings"] = "One of the findings is not one labrec knows."
    if set(values["exclude_specimens"]) - SPECIMEN_TYPES:
        errors["exclude_specimens"] = "One of the specimen types is not one labrec knows."
    if set(values["request_families"]) - _FAMILIES:
        errors["request_families"] = "One of the panel families is not one labrec knows."
    if values["setting"] and values["setting"] not in _SETTINGS:
        errors["setting"] = "Choose where the doses are taken, or leave it to the route."
    therapy_started = _optional_date(values, "therapy_started", errors)
    last_dose_change = _optional_date(values, "last_dose_change", errors)
    medications = _medications(values, medication_classes, errors)
    recent = []
    for i, (panel, date, abnormal) in enumerate(values["recent"]):
        if not panel and not date:
            if abnormal:
                errors[f"recent-{i}"] = "Choose the panel and date of the abnormal result."
            continue
        when = _date(date)
        if _CONTROL.search(panel):
            errors[f"recent-{i}"] = "Choose the panel from the list."
        elif not panel or when is None:
            errors[f"recent-{i}"] = "Give both the panel and the date it was tested, or neither."
        else:
            recent.append({"panel_id": panel, "date": when, "abnormal": abnormal})
    if _CONTROL.search(values["vendors"]):
        errors["vendors"] = "Remove the control characters; use letters, digits and commas."
    vendors = [v.strip() for v in values["vendors"].split(",") if v.strip()]
    if errors:
        return None, errors
    body: dict[str, Any] = {
        "therapy": values["therapy"],
        "phase": values["phase"],
        "patient": {
            "sex": values["sex"],
            "age": age,
            "pregnancy_possible": {"yes": True, "no": False}.get(values["pregnancy"]),
            # Unticked means "not known", never "known not pregnant".
            "pregnant": True if values["pregnant"] else None,
        },
        "conditions": conditions,
        "findings": values["findings"],
        "recent_tests": recent,
        "preferences": {
            "exclude_specimen_types": values["exclude_specimens"],
            "evidence_based_only": values["evidence_only"],
            "vendors": vendors[:20],
            "request_families": values["request_families"],
        },
        "medications": medications,
        "therapy_started": therapy_started,
        "last_dose_change": last_dose_change,
    }
    if values["route"]:
        body["route"] = values["route"]
    if values["setting"]:
        body["setting"] = values["setting"]
    try:
        return msgspec.convert(body, RecommendationRequest), {}
    except msgspec.ValidationError:
        return None, {"form": "Some values cannot be used; please check the form."}


def map_usecase_errors(
    errors: Sequence[Mapping[str, Any]], rows: Mapping[str, Sequence[int]]
) -> Errors:
    """Map use-case field paths (``conditions[1].system``) to form fields (``condition-2``).

    ``rows`` maps a list field to the form row each of its items came from.
    """
    mapped: Errors = {}
    for error in errors:
        path = str(error.get("field", ""))
        message = str(error.get("message", "cannot be used"))
        match = re.match(r"^(\w+)(?:\[(\d+)\])?", path)
        name, index = (match.group(1), match.group(2)) if match else ("form", None)
        key = {"conditions": "condition", "recent_tests": "recent"}.get(name, name)
        if index is not None and name in rows and int(index) < len(rows[name]):
            key = f"{key}-{rows[name][int(index)]}"
        text = message[0].upper() + message[1:] if message else message
        text = text if text.endswith(".") else text + "."
        if not _FIELD_KEYS.match(key):
            # No field of its own (e.g. ``preferences``): say it at the top, with its path.
            text = f"{path}: {text}" if path else text
            key = "form"
            text = f"{mapped['form']} {text}" if "form" in mapped else text
        mapped[key] = text
    return mapped


def recommendation_rows(values: Values) -> dict[str, list[int]]:
    """Which form row each condition and recent test of the request came from."""
    return {
        "conditions": [i for i, raw in enumerate(values["conditions"]) if _condition_code(raw)],
        "recent_tests": [i for i, (p, d, _) in enumerate(values["recent"]) if p or d],
    }


ORDER_FIELDS: Final = (
    "patient_reference",
    "given_name",
    "family_name",
    "birth_date",
    "patient_sex",
    "npi",
    "practitioner_name",
    "notes",
)


def order_values(form: FormMultiDict) -> Values:
    values: Values = {
        name: _text(form, name, 2000 if name == "notes" else 200) for name in ORDER_FIELDS
    }
    values["panels"] = list(dict.fromkeys(_texts(form, "panel", 64)))
    return values


def parse_order(
    values: Values,
    *,
    conditions: Sequence[Mapping[str, str]],
    recommendation_id: str,
    today: dt.date,
) -> tuple[OrderRequest | None, Errors]:
    errors: Errors = {}
    if not values["panels"]:
        errors["panels"] = "Choose at least one panel to order."
    elif len(values["panels"]) > 30:
        errors["panels"] = "Choose at most 30 panels in one order."
    reference = values["patient_reference"]
    if not reference:
        errors["patient_reference"] = "Enter the patient's reference (the id in your records)."
    elif len(reference) > 128 or any(c.isspace() for c in reference):
        errors["patient_reference"] = "Use up to 128 characters without spaces."
    for name, what in (("given_name", "given name"), ("family_name", "family name")):
        if not values[name]:
            errors[name] = f"Enter the patient's {what}."
        elif len(values[name]) > 100:
            errors[name] = "Use at most 100 characters."
    birth = _date(values["birth_date"])
    if birth is None:
        errors["birth_date"] = "Enter the date of birth (year, month and day)."
    elif birth > today:
        errors["birth_date"] = "The date of birth cannot be in the future."
    if values["patient_sex"] not in _SEXES:
        errors["patient_sex"] = "Choose the patient's sex as the lab should record it."
    if not _NPI.match(values["npi"]):
        errors["npi"] = "Enter the 10-digit NPI of the ordering practitioner."
    if not values["practitioner_name"]:
        errors["practitioner_name"] = "Enter the ordering practitioner's name."
    elif len(values["practitioner_name"]) > 100:
        errors["practitioner_name"] = "Use at most 100 characters."
    if errors:
        return None, errors
    body: dict[str, Any] = {
        "patient": {
            "reference": reference,
            "given_name": values["given_name"],
            "family_name": values["family_name"],
            "birth_date": birth,
            "sex": values["patient_sex"],
        },
        "practitioner": {"npi": values["npi"], "name": values["practitioner_name"]},
        "panel_ids": values["panels"],
        "conditions": [dict(c) for c in conditions][:20],
        "recommendation_id": recommendation_id,
    }
    if values["notes"]:
        body["notes"] = values["notes"]
    try:
        return msgspec.convert(body, OrderRequest), {}
    except msgspec.ValidationError:
        return None, {"form": "Some values cannot be used; please check the form."}


_ORDER_PATHS: Final = {
    "patient.reference": "patient_reference",
    "patient.given_name": "given_name",
    "patient.family_name": "family_name",
    "patient.birth_date": "birth_date",
    "patient.sex": "patient_sex",
    "practitioner.npi": "npi",
    "practitioner.name": "practitioner_name",
    "panel_ids": "panels",
    "notes": "notes",
}


def map_order_errors(errors: Sequence[Mapping[str, Any]]) -> Errors:
    """Map OrderService's field paths onto the order form; anything else goes to the top."""
    mapped: Errors = {}
    for error in errors:
        key = _ORDER_PATHS.get(str(error.get("field", "")), "form")
        message = str(error.get("message", "cannot be used"))
        mapped[key] = (message[:1].upper() + message[1:]).rstrip(".") + "."
    return mapped


def valid_idempotency_key(raw: object) -> str | None:
    return raw if isinstance(raw, str) and _KEY.match(raw) else None
