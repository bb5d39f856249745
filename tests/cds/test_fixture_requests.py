"""Every public fixture request for order-select, order-sign and patient-view, driven through the
service, and labrec's own responses checked against the logical-model checker.

The fixtures are third-party (Inferno CRD kit, Argonaut PAMA, the spec's own examples); the
Inferno drafts are the hook library's R4 examples, which are not strictly valid R4 — labrec must
read them, not reject them.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from tests.cds.checker import check_response
from tests.cds.conftest import Cds
from tests.cds.support import (
    ESKETAMINE_RXCUI,
    FIXTURES,
    KETAMINE_RXCUI,
    SERVICE_FOR,
    SNOMED,
    fixture_json,
    fixtures_dir,
    full_prefetch,
    hook_request,
    medication_request,
)
from tests.cds.test_own_requests import assert_draft_lab_order

HOOKS = set(SERVICE_FOR)


def _fixture_requests() -> list[str]:
    """Every JSON file under the fixtures that is a request for one of our hooks."""
    if not FIXTURES.is_dir():
        return ["<fixtures absent>"]
    found = []
    for path in sorted(FIXTURES.rglob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if (
            isinstance(document, dict)
            and document.get("hook") in HOOKS
            and "hookInstance" in document
            and "context" in document
        ):
            found.append(str(path.relative_to(FIXTURES)))
    return found


def test_the_fixture_requests_are_the_expected_ones() -> None:
    fixtures_dir()
    assert set(_fixture_requests()) == {
        "argonaut-pama/scenario-01-outbound-request.json",
        "argonaut-pama/scenario-02-outbound-request.json",
        "fhir-tools-ig/examples/Binary-CDSHooksRequestPV.json",
        "inferno-crd/fixtures/order_select_hook_request.json",
        "inferno-crd/fixtures/order_sign_hook_request.json",
    }


@pytest.mark.parametrize("relative", _fixture_requests())
async def test_every_fixture_request_gets_a_conforming_answer(cds: Cds, relative: str) -> None:
    request = fixture_json(relative)
    response = await cds.call(request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert check_response(body) == []
    # Amoxicillin, a nutrition order, CT/MRI orders, a patient with no therapy on record:
    # none is a catalog therapy, so labrec stays silent (and did not call fhirServer).
    assert body == {"cards": []}


async def test_the_inferno_order_select_context_fixture(cds: Cds) -> None:
    context = fixture_json("inferno-crd/fixtures/order_select_context.json")
    body = {"hook": "order-select", "hookInstance": str(uuid.uuid4()), "context": context}
    response = await cds.call(body)
    assert response.status_code == 200, response.text
    assert check_response(response.json()) == []


def _library_drafts_with(code: str, hook: str) -> dict[str, Any]:
    """The Inferno/hook-library request (invalid-R4 drafts kept) with the medication swapped."""
    name = (
        "order_select_hook_request.json"
        if hook == "order-select"
        else "order_sign_hook_request.json"
    )
    request = copy.deepcopy(fixture_json(f"inferno-crd/fixtures/{name}"))
    for entry in request["context"]["draftOrders"]["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "MedicationRequest":
            resource["medicationCodeableConcept"]["coding"][0]["code"] = code
            assert isinstance(resource["dosageInstruction"][0]["doseAndRate"], dict)  # not R4
    request["prefetch"] = full_prefetch()
    request["hookInstance"] = str(uuid.uuid4())
    return request


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@pytest.mark.parametrize("code", [KETAMINE_RXCUI, ESKETAMINE_RXCUI])
async def test_library_drafts_read_leniently(cds: Cds, hook: str, code: str) -> None:
    request = _library_drafts_with(code, hook)
    response = await cds.call(request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert check_response(body) == []
    (card,) = body["cards"]
    for suggestion in card["suggestions"]:
        assert_draft_lab_order(suggestion["actions"][0]["resource"], patient_id="example")


@pytest.mark.parametrize(
    "hook,drafts",
    [
        ("order-select", (medication_request(KETAMINE_RXCUI),)),
        ("order-sign", (medication_request(KETAMINE_RXCUI),)),
        ("order-select", (medication_request(ESKETAMINE_RXCUI, route=(SNOMED, "46713006")),)),
        ("order-sign", (medication_request(ESKETAMINE_RXCUI, route=(SNOMED, "46713006")),)),
        ("patient-view", None),
    ],
    ids=["ketamine-select", "ketamine-sign", "esketamine-select", "esketamine-sign", "view"],
)
async def test_own_cards_pass_the_checker(
    cds: Cds, hook: str, drafts: tuple[dict[str, Any], ...] | None
) -> None:
    meds = (medication_request(KETAMINE_RXCUI, rid="rx", status="active"),)
    prefetch = full_prefetch(medications=meds if hook == "patient-view" else ())
    response = await cds.call(hook_request(hook, drafts=drafts, prefetch=prefetch))
    body = response.json()
    assert body["cards"], body
    assert check_response(body) == [], json.dumps(body)[:2000]
    for card in body["cards"]:
        for suggestion in card["suggestions"]:
            ServiceRequest.model_validate(suggestion["actions"][0]["resource"])


async def test_override_reasons_come_from_the_suggested_code_system(cds: Cds) -> None:
    code_system = fixture_json("hl7-cds-hooks/CodeSystem-non-adherence-reason-codes.json")

    def walk(concepts: list[dict[str, Any]]) -> dict[str, str]:
        found: dict[str, str] = {}
        for concept in concepts:
            found[concept["code"]] = concept["display"]
            found.update(walk(concept.get("concept", [])))
        return found

    displays = walk(code_system["concept"])
    card = (await cds.call(hook_request(prefetch=full_prefetch()))).json()["cards"][0]
    assert card["overrideReasons"]
    for reason in card["overrideReasons"]:
        assert reason["system"] == code_system["url"]
        assert displays[reason["code"]] == reason["display"]


def test_checker_accepts_public_examples_and_rejects_known_bad_ones() -> None:
    cards = fixture_json("inferno-crd/fixtures/valid_cards.json")
    assert check_response(fixture_json("fhir-tools-ig/examples/Binary-CDSHooksResponse.json")) == []
    assert check_response({"cards": cards}, require_uuids=False) == []
    assert "must be a real UUID" in check_response({"cards": cards})[0]
    for name in ("companions_prerequisites", "instructions", "external_reference"):
        card = fixture_json(f"inferno-crd/card_responses/{name}.json")
        assert check_response({"cards": [card]}, require_uuids=False) == [], name
    assert check_response(fixture_json("argonaut-pama/scenario-01-rating-response.json")) == []
    assert check_response(fixture_json("argonaut-pama/scenario-02-suggestion-response.json")) == [
        "response.cards[0]: cds-resp-6: suggestions need selectionBehavior"
    ]
    # Inferno's templates carry placeholders its runner fills in:
    smart = fixture_json("inferno-crd/card_responses/launch_smart_app.json")
    assert check_response({"cards": [smart]}, require_uuids=False) == [
        "response.cards[0].links[0].url: must be an absolute url"
    ]
    alternate = fixture_json("inferno-crd/card_responses/propose_alternate_request.json")
    assert check_response({"cards": [alternate]}, require_uuids=False) == [
        "response.cards[0].suggestions[0].actions: optional elements are omitted, never null "
        "or empty"
    ]
    bad = {"cards": [{"summary": "x" * 140, "source": {"label": "l"}, "detail": None}]}
    problems = check_response(bad)
    assert any("indicator is REQUIRED" in p for p in problems)
    assert any("shorter than 140" in p for p in problems)
    assert any("never null or empty" in p for p in problems)
    assert check_response(
        {"cards": [{"summary": "s", "indicator": "urgent", "source": {"label": "l"}}]}
    ) == ["response.cards[0].indicator: must be one of ['critical', 'info', 'warning']"]
    # The 2.0 text's values, not the IG code system's ``error``:
    for indicator, problems in (("critical", 0), ("error", 1)):
        card = {"summary": "s", "indicator": indicator, "source": {"label": "l"}}
        assert len(check_response({"cards": [card]})) == problems, indicator


def test_fixture_files_exist_where_the_manifest_says() -> None:
    manifest = (fixtures_dir() / "MANIFEST.md").read_text(encoding="utf-8")
    for line in manifest.splitlines():
        if line.startswith("| `") and "`" in line[3:]:
            relative = line[3 : line.index("`", 3)]
            assert (Path(FIXTURES) / relative).is_file(), relative
