"""Strict checks the sandbox lab applies to an incoming order transaction.

A real lab rejects a malformed requisition, so the sandbox does too, naming every problem by its
FHIRPath. Messages never quote submitted values: they travel back to labrec and into its logs.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from service.labs.fhir_bundle import OBSERVATION_CATEGORY_SYSTEM, ORDER_SYSTEM

ALLOWED_RESOURCES: Final = frozenset({"Patient", "Practitioner", "ServiceRequest"})
GENDERS: Final = frozenset({"female", "male", "other", "unknown"})


class Issue(msgspec.Struct, frozen=True):
    code: str
    diagnostics: str
    expression: str


class BundleInvalid(ValueError):
    def __init__(self, issues: list[Issue]) -> None:
        super().__init__(f"{len(issues)} problem(s) in the transaction bundle")
        self.issues = issues


class ValidTransaction(msgspec.Struct, frozen=True):
    """What the sandbox keeps of a valid order: the requisition and the entries to answer for."""

    requisition: str
    entries: tuple[tuple[str, dict[str, Any]], ...]  # (resourceType, resource), request order
    patient_key: str


def validate_transaction(body: bytes) -> ValidTransaction:
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise BundleInvalid([Issue("structure", "body is not JSON", "Bundle")]) from None
    return _Validator().run(doc)


class _Validator:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def fail(self, code: str, where: str, message: str) -> None:
        self.issues.append(Issue(code, message, where))

    def run(self, doc: object) -> ValidTransaction:
        if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
            self.fail("structure", "Bundle", "body is not a FHIR Bundle")
            raise BundleInvalid(self.issues)
        if doc.get("type") != "transaction":
            self.fail("value", "Bundle.type", "Bundle.type must be 'transaction'")
        raw_entries = doc.get("entry")
        if not isinstance(raw_entries, list) or not raw_entries:
            self.fail("required", "Bundle.entry", "the transaction has no entries")
            raise BundleInvalid(self.issues)

        by_url: dict[str, str] = {}
        entries: list[tuple[str, dict[str, Any], str]] = []
        for index, entry in enumerate(raw_entries):
            checked = self.entry(index, entry, by_url)
            if checked is not None:
                entries.append(checked)

        patients = [(r, p) for kind, r, p in entries if kind == "Patient"]
        if len(patients) != 1:
            self.fail("invariant", "Bundle.entry", "exactly one Patient entry is required")
        requisitions: set[str] = set()
        orders = 0
        for kind, resource, path in entries:
            if kind == "Patient":
                self.patient(resource, path)
            elif kind == "ServiceRequest":
                orders += 1
                requisitions |= self.service_request(resource, path, by_url)
        if orders == 0:
            self.fail("required", "Bundle.entry", "at least one ServiceRequest is required")
        if len(requisitions) > 1:
            self.fail(
                "invariant",
                "Bundle.entry.resource.requisition",
                "all ServiceRequests must share one requisition identifier",
            )
        if self.issues:
            raise BundleInvalid(self.issues)
        patient = patients[0][0]["identifier"][0]
        return ValidTransaction(
            requisition=requisitions.pop(),
            entries=tuple((kind, resource) for kind, resource, _ in entries),
            patient_key=f"{patient.get('system', '')}|{patient['value']}",
        )

    def entry(
        self, index: int, entry: object, by_url: dict[str, str]
    ) -> tuple[str, dict[str, Any], str] | None:
        path = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict):
            self.fail("structure", path, "entry must be an object")
            return None
        resource = entry.get("resource")
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(resource, dict) or kind not in ALLOWED_RESOURCES:
            self.fail(
                "not-supported",
                f"{path}.resource",
                "only Patient, Practitioner and ServiceRequest resources are accepted",
            )
            return None
        full_url = entry.get("fullUrl")
        if not isinstance(full_url, str) or not full_url:
            self.fail("required", f"{path}.fullUrl", "fullUrl is required")
        elif full_url in by_url:
            self.fail("invariant", f"{path}.fullUrl", "fullUrl must be unique in the bundle")
        else:
            by_url[full_url] = kind
        request = entry.get("request")
        if (
            not isinstance(request, dict)
            or request.get("method") != "POST"
            or request.get("url") != kind
        ):
            self.fail("value", f"{path}.request", f"request must be POST {kind}")
        return kind, resource, f"{path}.resource"

    def patient(self, resource: dict[str, Any], path: str) -> None:
        identifiers = resource.get("identifier")
        if not (
            isinstance(identifiers, list)
            and identifiers
            and isinstance(identifiers[0], dict)
            and isinstance(identifiers[0].get("value"), str)
            and identifiers[0]["value"]
        ):
            self.fail("required", f"{path}.identifier", "Patient needs an identifier with a value")
        if "gender" in resource and resource["gender"] not in GENDERS:
            self.fail("code-invalid", f"{path}.gender", "gender is not an AdministrativeGender")

    def service_request(
        self, resource: dict[str, Any], path: str, by_url: dict[str, str]
    ) -> set[str]:
        if resource.get("status") != "active":
            self.fail("value", f"{path}.status", "status must be 'active'")
        if resource.get("intent") != "order":
            self.fail("value", f"{path}.intent", "intent must be 'order'")
        if not _has_laboratory_category(resource.get("category")):
            self.fail("value", f"{path}.category", "category must include 'laboratory'")
        if not _has_codings(resource.get("code")):
            self.fail("required", f"{path}.code", "code needs codings with system and code")
        if by_url.get(_reference(resource.get("subject")) or "") != "Patient":
            self.fail("invariant", f"{path}.subject", "subject must reference the bundle's Patient")
        if by_url.get(_reference(resource.get("requester")) or "") != "Practitioner":
            self.fail(
                "invariant", f"{path}.requester", "requester must reference a bundled Practitioner"
            )
        requisition = resource.get("requisition")
        if (
            isinstance(requisition, dict)
            and requisition.get("system") == ORDER_SYSTEM
            and isinstance(requisition.get("value"), str)
            and requisition["value"]
        ):
            return {requisition["value"]}
        self.fail(
            "required",
            f"{path}.requisition",
            f"requisition must be an identifier with system '{ORDER_SYSTEM}'",
        )
        return set()


def _reference(value: object) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"])
    return None


def _codings(concept: object) -> list[dict[str, Any]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [c for c in concept["coding"] if isinstance(c, dict)]


def _has_codings(concept: object) -> bool:
    codings = _codings(concept)
    return bool(codings) and all(
        isinstance(c.get("system"), str)
        and c["system"]
        and isinstance(c.get("code"), str)
        and c["code"]
        for c in codings
    )


def _has_laboratory_category(categories: object) -> bool:
    return isinstance(categories, list) and any(
        c.get("system") == OBSERVATION_CATEGORY_SYSTEM and c.get("code") == "laboratory"
        for concept in categories
        for c in _codings(concept)
    )
