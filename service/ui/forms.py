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

from service.domain.vocabulary import FINDINGS, ICD10CM, PHASES, SPECIMEN_TYPES, Sex
from service.usecases.dto import OrderRequest, RecommendationRequest

CONDITION_ROWS: Final = 3
RECENT_TEST_ROWS: Final = 3
_ICD10: Final = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
_NPI: Final = re.compile(r"^\d{10}$")
_KEY: Final = re.compile(r"^[A-Za-z0-9_-]{8,255}$")
_SEXES: Final = frozenset(get_args(Sex))

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


def recommendation_values(form: FormMultiDict) -> Values:
    """What the practitioner typed, to show the form again unchanged."""
    conditions = (_texts(form, "condition") + [""] * CONDITION_ROWS)[:CONDITION_ROWS]
    panels = (_texts(form, "recent_panel", 64) + [""] * RECENT_TEST_ROWS)[:RECENT_TEST_ROWS]
    dates = (_texts(form, "recent_date", 10) + [""] * RECENT_TEST_ROWS)[:RECENT_TEST_ROWS]
    return {
        "therapy": _text(form, "therapy", 64),
        "route": _text(form, "route", 32),
        "phase": _text(form, "phase", 32),
        "conditions": conditions,
        "sex": _text(form, "sex", 16),
        "age": _text(form, "age", 8),
        "pregnancy": _text(form, "pregnancy", 8) or "unknown",
        "findings": _texts(form, "finding", 64),
        "recent": list(zip(panels, dates, strict=True)),
        "exclude_specimens": _texts(form, "exclude_specimen", 32),
        "evidence_only": _text(form, "evidence_only", 8) == "yes",
        "vendors": _text(form, "vendors", 400),
    }


def parse_recommendation(values: Values) -> tuple[RecommendationRequest | None, Errors]:
    """A RecommendationRequest, or the errors keyed by form field."""
    errors: Errors = {}
    if not values["therapy"]:
        errors["therapy"] = "Choose a therapy."
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
    recent = []
    for i, (panel, date) in enumerate(values["recent"]):
        if not panel and not date:
            continue
        when = _date(date)
        if not panel or when is None:
            errors[f"recent-{i}"] = "Give both the panel and the date it was tested, or neither."
        else:
            recent.append({"panel_id": panel, "date": when})
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
        },
        "conditions": conditions,
        "findings": values["findings"],
        "recent_tests": recent,
        "preferences": {
            "exclude_specimen_types": values["exclude_specimens"],
            "evidence_based_only": values["evidence_only"],
            "vendors": vendors[:20],
        },
    }
    if values["route"]:
        body["route"] = values["route"]
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
        mapped[key] = text if text.endswith(".") else text + "."
    return mapped


def recommendation_rows(values: Values) -> dict[str, list[int]]:
    """Which form row each condition and recent test of the request came from."""
    return {
        "conditions": [i for i, raw in enumerate(values["conditions"]) if _condition_code(raw)],
        "recent_tests": [i for i, (p, d) in enumerate(values["recent"]) if p or d],
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
