"""A CDS Hooks response / discovery checker built from the fhir-tools-ig logical models.

Element names, cardinalities, types and required bindings come from the StructureDefinitions
(``structuredefinition-CDSHooks{Response,Services}.json``); closed code lists come from the
CodeSystem XML files; the invariants are the ones the SDs declare (cds-resp-1..6), checked by
hand because no FHIRPath engine is at hand. Spec rules the logical model does not carry are
added and named: indicator REQUIRED with the 2.0 text's values (the IG's code system has
``error`` for ``critical``), summary < 140 characters (Inferno), optional
fields never null or empty, and — for labrec's own cards — uuids that are real UUIDs.
"""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.cds.support import fixtures_dir

_FHIR_NS = {"f": "http://hl7.org/fhir"}
_ABSOLUTE_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$")
_RELATIVE_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class Element:
    path: str
    min: int
    max: str
    types: tuple[str, ...]
    binding: str | None
    constraints: tuple[str, ...]
    content_reference: str | None


@cache
def code_system(name: str) -> frozenset[str]:
    """The concept codes of ``codesystem-{name}.xml`` (not property or jurisdiction codes)."""
    tree = ET.parse(fixtures_dir() / "fhir-tools-ig" / f"codesystem-{name}.xml")  # noqa: S314
    return frozenset(
        code.attrib["value"] for code in tree.getroot().findall("f:concept/f:code", _FHIR_NS)
    )


@cache
def logical_model(name: str) -> dict[str, Element]:
    path: Path = fixtures_dir() / "fhir-tools-ig" / f"structuredefinition-{name}.json"
    sd = json.loads(path.read_text(encoding="utf-8"))
    elements: dict[str, Element] = {}
    for raw in sd["differential"]["element"]:
        elements[raw["path"]] = Element(
            path=raw["path"],
            min=int(raw.get("min", 0)),
            max=str(raw.get("max", "*")),
            types=tuple(t["code"] for t in raw.get("type", [])),
            binding=(raw.get("binding") or {}).get("valueSet")
            if (raw.get("binding") or {}).get("strength") == "required"
            else None,
            constraints=tuple(c["key"] for c in raw.get("constraint", [])),
            content_reference=raw.get("contentReference"),
        )
    return elements


def _children(model: dict[str, Element], path: str) -> dict[str, Element]:
    prefix = path + "."
    return {
        e.path[len(prefix) :]: e
        for e in model.values()
        if e.path.startswith(prefix) and "." not in e.path[len(prefix) :]
    }


@cache
def spec_indicator_codes() -> frozenset[str]:
    """The card ``indicator`` values of the CDS Hooks 2.0 text (``info``, ``warning``,
    ``critical``). The fhir-tools-ig CDSIndicator code system at the pinned commit lists
    ``error`` where the spec says ``critical``; the spec wins."""
    text = (fixtures_dir() / "hl7-cds-hooks" / "index.md").read_text(encoding="utf-8")
    line = next(row for row in text.splitlines() if row.startswith("`indicator` | REQUIRED"))
    return frozenset(re.findall(r"`(\w+)`", line.split("are:", 1)[1]))


def _binding_codes(value_set: str) -> frozenset[str]:
    # http://hl7.org/fhir/tools/ValueSet/CDSIndicator -> codesystem-CDSIndicator.xml
    name = value_set.rsplit("/", 1)[1]
    return spec_indicator_codes() if name == "CDSIndicator" else code_system(name)


class Checker:
    def __init__(self, model_name: str, *, require_uuids: bool) -> None:
        self.model = logical_model(model_name)
        self.root = model_name
        self.require_uuids = require_uuids
        self.errors: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def check_object(self, value: Any, path: str, where: str) -> None:
        if not isinstance(value, dict):
            self.fail(where, "must be an object")
            return
        children = _children(self.model, path)
        for name, element in children.items():
            if name not in value:
                if element.min >= 1:
                    self.fail(where, f"{name} is required ({element.path} {element.min}..)")
                continue
            self.check_value(value[name], element, f"{where}.{name}")
        allowed = set(children) | {"extension"}
        for name in value:
            if name not in allowed:
                self.fail(where, f"{name} is not an element of {path}")

    def check_value(self, value: Any, element: Element, where: str) -> None:
        if element.content_reference is not None:
            target = element.content_reference.removeprefix("#")
            element = Element(
                target,
                element.min,
                element.max,
                self.model[target].types,
                None,
                self.model[target].constraints,
                None,
            )
        if value is None or value in ("", [], {}):
            if not (element.path == f"{self.root}.cards" and value == []):
                self.fail(where, "optional elements are omitted, never null or empty")
            return
        if element.max == "*":
            if not isinstance(value, list):
                self.fail(where, f"must be an array ({element.path} 0..*)")
                return
            for i, item in enumerate(value):
                self.check_single(item, element, f"{where}[{i}]")
        elif isinstance(value, list):
            self.fail(where, f"must not be an array ({element.path} ..1)")
        else:
            self.check_single(value, element, where)

    def check_single(self, value: Any, element: Element, where: str) -> None:
        kind = element.types[0] if element.types else "BackboneElement"
        if kind.startswith("http://hl7.org/fhir/tools/StructureDefinition/CDSHooksElement") or (
            not element.types and _children(self.model, element.path)
        ):
            self.check_object(value, element.path, where)
        elif kind in ("string", "markdown", "code", "id"):
            if not isinstance(value, str) or not value.strip():
                self.fail(where, f"must be a non-empty {kind}")
        elif kind == "uuid":
            if not isinstance(value, str) or not value:
                self.fail(where, "must be a string")
            elif self.require_uuids and not _is_uuid(value):
                self.fail(where, "must be a real UUID")
        elif kind in ("url", "uri") and element.path.endswith(".resourceId"):
            # The spec text: "a relative reference to the relevant resource" (Type/id).
            if not isinstance(value, str) or not _RELATIVE_REFERENCE.match(value):
                self.fail(where, "must be a relative reference Type/id")
        elif kind in ("url", "uri"):
            if not isinstance(value, str) or not _ABSOLUTE_URL.match(value):
                self.fail(where, f"must be an absolute {kind}")
        elif kind == "boolean":
            if not isinstance(value, bool):
                self.fail(where, "must be a boolean")
        elif kind == "Coding":
            self.check_coding(value, where)
        elif kind == "Resource" and (
            not isinstance(value, dict) or not isinstance(value.get("resourceType"), str)
        ):
            self.fail(where, "must be a FHIR resource (an object with resourceType)")
        if element.binding is not None and isinstance(value, str):
            allowed = _binding_codes(element.binding)
            if value not in allowed:
                self.fail(where, f"must be one of {sorted(allowed)}")

    def check_coding(self, value: Any, where: str) -> None:
        if not isinstance(value, dict) or not isinstance(value.get("code"), str):
            self.fail(where, "a Coding needs a code")
            return
        for name, item in value.items():
            if name not in ("code", "system", "display", "version", "userSelected"):
                self.fail(where, f"{name} is not a Coding element")
            elif item in (None, "", [], {}):
                self.fail(where, f"{name} must not be null or empty")


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def check_response(document: Any, *, require_uuids: bool = True) -> list[str]:
    """Every problem with a service response (empty list = conforms)."""
    checker = Checker("CDSHooksResponse", require_uuids=require_uuids)
    model = checker.model
    declared = {key for e in model.values() for key in e.constraints}
    assert {f"cds-resp-{i}" for i in range(1, 7)} <= declared, "the SD's invariants changed"
    if not isinstance(document, dict) or "cards" not in document:
        return ["response: cards is required (2.0: cards REQUIRED, may be empty)"]
    checker.check_object(document, "CDSHooksResponse", "response")
    for i, card in enumerate(document.get("cards") or []):
        if isinstance(card, dict):
            _card_rules(checker, card, f"response.cards[{i}]")
    for i, action in enumerate(document.get("systemActions") or []):
        if isinstance(action, dict):
            _action_rules(checker, action, f"response.systemActions[{i}]", suggestion=False)
    return checker.errors


def _card_rules(checker: Checker, card: dict[str, Any], where: str) -> None:
    if "indicator" not in card:
        checker.fail(where, "indicator is REQUIRED (CDS Hooks 2.0 card attributes)")
    summary = card.get("summary")
    if isinstance(summary, str) and len(summary) >= 140:
        checker.fail(where, "summary must be shorter than 140 characters")
    suggestions = card.get("suggestions") or []
    if suggestions and "selectionBehavior" not in card:
        checker.fail(where, "cds-resp-6: suggestions need selectionBehavior")
    if card.get("selectionBehavior") == "at-most-one":
        recommended = [s for s in suggestions if isinstance(s, dict) and s.get("isRecommended")]
        if len(recommended) > 1:
            checker.fail(where, "cds-resp-1: at-most-one allows one isRecommended")
    for i, reason in enumerate(card.get("overrideReasons") or []):
        if not isinstance(reason, dict) or not reason.get("display"):
            checker.fail(f"{where}.overrideReasons[{i}]", "cds-resp-4: display is required")
    for i, link in enumerate(card.get("links") or []):
        if isinstance(link, dict) and link.get("type") != "smart" and "appContext" in link:
            checker.fail(f"{where}.links[{i}]", "cds-resp-3: appContext only on smart links")
    for i, suggestion in enumerate(suggestions):
        for j, action in enumerate(
            suggestion.get("actions") or [] if isinstance(suggestion, dict) else []
        ):
            if isinstance(action, dict):
                _action_rules(
                    checker, action, f"{where}.suggestions[{i}].actions[{j}]", suggestion=True
                )


def _action_rules(
    checker: Checker, action: dict[str, Any], where: str, *, suggestion: bool
) -> None:
    if suggestion and "description" not in action:
        checker.fail(where, "cds-resp-5: suggestion actions need a description")
    if action.get("type") == "delete" and ("resourceId" not in action or "resource" in action):
        checker.fail(where, "cds-resp-2: delete takes resourceId and no resource")
    if action.get("type") in ("create", "update") and "resource" not in action:
        checker.fail(where, "create/update actions carry the full resource")


def check_discovery(document: Any) -> list[str]:
    """Discovery document per CDSHooksServices; prefetch is a key -> template object on the wire."""
    checker = Checker("CDSHooksServices", require_uuids=False)
    if not isinstance(document, dict) or not isinstance(document.get("services"), list):
        return ["discovery: services must be an array"]
    services = _children(checker.model, "CDSHooksServices.services")
    for i, service in enumerate(document["services"]):
        where = f"discovery.services[{i}]"
        if not isinstance(service, dict):
            checker.fail(where, "must be an object")
            continue
        plain = {k: v for k, v in service.items() if k != "prefetch"}
        for name, element in services.items():
            if name == "prefetch":
                continue
            if name not in plain:
                if element.min >= 1:
                    checker.fail(where, f"{name} is required")
                continue
            checker.check_value(plain[name], element, f"{where}.{name}")
        for name in plain:
            if name not in services and name not in ("extension", "version", "hookVersion"):
                checker.fail(where, f"{name} is not an element of a service")
        prefetch = service.get("prefetch")
        if prefetch is not None and (
            not isinstance(prefetch, dict)
            or not prefetch
            or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in prefetch.items())
        ):
            checker.fail(f"{where}.prefetch", "must be a non-empty object of key -> template")
    return checker.errors
