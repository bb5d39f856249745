"""Our own ketamine / esketamine hook calls: the card, its draft orders, and the translation."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from service.persistence.cds_models import CdsCard, CdsSuggestion
from service.persistence.models import StoredRecommendation
from tests.cds.conftest import Cds
from tests.cds.support import (
    ESKETAMINE_RXCUI,
    KETAMINE_RXCUI,
    SNOMED,
    full_prefetch,
    hook_request,
    medication_request,
)

V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
NASAL = (SNOMED, "46713006")


def _days_ago(days: int) -> str:
    return (dt.date.today() - dt.timedelta(days=days)).isoformat()


async def _one_card(cds: Cds, body: dict[str, Any]) -> dict[str, Any]:
    response = await cds.call(body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert len(cards) == 1, cards
    card: dict[str, Any] = cards[0]
    return card


def _panels(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["actions"][0]["resource"]["code"]["text"]: s for s in card.get("suggestions", [])}


async def _stored_context(cds: Cds, card: dict[str, Any]) -> dict[str, Any]:
    async with cds.container.sessions() as session:
        row = await session.get(CdsCard, card["uuid"])
        assert row is not None
        stored = await session.get(StoredRecommendation, row.recommendation_id)
        assert stored is not None
        return stored.context


async def _stored_result(cds: Cds, card: dict[str, Any]) -> dict[str, Any]:
    async with cds.container.sessions() as session:
        row = await session.get(CdsCard, card["uuid"])
        assert row is not None
        stored = await session.get(StoredRecommendation, row.recommendation_id)
        assert stored is not None
        return stored.result


def assert_draft_lab_order(resource: dict[str, Any], patient_id: str = "pat-1") -> None:
    """R4 validity (fhir.resources R4B models; ServiceRequest is identical in R4) + our enums."""
    ServiceRequest.model_validate(resource)
    assert resource["resourceType"] == "ServiceRequest"
    assert resource["status"] == "draft" and resource["intent"] == "order"
    assert resource["subject"] == {"reference": f"Patient/{patient_id}"}
    assert {"system": "http://snomed.info/sct", "code": "108252007"}.items() <= resource[
        "category"
    ][0]["coding"][0].items()
    codings = resource["code"]["coding"]
    assert codings and all(c["system"] and c["code"] for c in codings)


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
async def test_ketamine_order_gets_one_card_of_draft_lab_orders(cds: Cds, hook: str) -> None:
    card = await _one_card(cds, hook_request(hook, prefetch=full_prefetch()))
    uuid.UUID(card["uuid"])
    assert len(card["summary"]) < 140 and card["summary"].startswith("Ketamine (racemic), baseline")
    # A woman of 36 with pregnancy not ruled out: the (es)ketamine pregnancy advisory is a
    # warning, so the card is one; no critical gate applies, so it is the only card.
    assert card["indicator"] == "warning"
    severities = {a["severity"] for a in (await _stored_result(cds, card))["advisories"]}
    assert "warning" in severities and "critical" not in severities
    assert card["selectionBehavior"] == "any"
    assert card["source"]["topic"]["code"] == "ketamine-baseline"
    panels = _panels(card)
    assert "Hepatic function panel (LFT)" in panels
    assert any(name.startswith("Pregnancy test") for name in panels)
    for name, suggestion in panels.items():
        uuid.UUID(suggestion["uuid"])
        assert len(suggestion["actions"]) == 1
        action = suggestion["actions"][0]
        assert action["type"] == "create" and action["description"]
        assert_draft_lab_order(action["resource"])
        assert action["resource"]["requester"] == {"reference": "Practitioner/prac-1"}
        priority = suggestion["label"].startswith("Order ")
        assert suggestion.get("isRecommended", False) is priority, name
    assert panels["Hepatic function panel (LFT)"]["isRecommended"] is True
    assert "Complete blood count (CBC)" in panels
    assert "isRecommended" not in panels["Complete blood count (CBC)"]  # "consider"
    detail = card["detail"]
    for heading in ("### Suggested panels", "### Advisories", "Evidence:", "Phase baseline"):
        assert heading in detail
    assert "<" not in detail


async def test_card_links_to_the_stored_recommendation_of_the_callers_organisation(
    cds: Cds,
) -> None:
    card = await _one_card(cds, hook_request(prefetch=full_prefetch()))
    (link,) = card["links"]
    assert link["type"] == "absolute"
    match = re.fullmatch(
        r"http://127\.0\.0\.1:8000/ui/recommendations/([0-9a-f-]{36})", link["url"]
    )
    assert match is not None, link
    async with cds.container.sessions() as session:
        stored = await session.get(StoredRecommendation, match.group(1))
        assert stored is not None
        assert stored.organisation_id == cds.ehr.organisation_id
        assert stored.context["therapy"] == "ketamine" and stored.context["route"] == "iv"
        patient = stored.context["patient"]
        assert patient["sex"] == "female" and 30 <= patient["age"] <= 130
        assert stored.context["conditions"] == [
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F33.2"}
        ]
        issued = await session.get(CdsCard, card["uuid"])
        assert issued is not None and issued.recommendation_id == match.group(1)
        first = await session.get(CdsSuggestion, card["suggestions"][0]["uuid"])
        assert first is not None and first.card_uuid == card["uuid"]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
async def test_esketamine_nasal_spray_order(cds: Cds, hook: str) -> None:
    draft = medication_request(ESKETAMINE_RXCUI, route=NASAL)
    card = await _one_card(cds, hook_request(hook, drafts=(draft,), prefetch=full_prefetch()))
    assert card["summary"].startswith("Esketamine nasal spray (Spravato), baseline")
    assert card["indicator"] == "warning"
    panels = _panels(card)
    assert "Hepatic function panel (LFT)" in panels
    assert "Complete blood count (CBC)" not in panels  # a ketamine-only convention
    assert "blood pressure" in card["detail"].lower()
    assert (await _stored_context(cds, card))["route"] == "intranasal"


async def test_esketamine_by_ndc_and_v3_route_code(cds: Cds) -> None:
    draft = medication_request(
        "50458-028-02", system="http://hl7.org/fhir/sid/ndc", route=(V3_ROUTE, "NASALINSTIL")
    )
    card = await _one_card(cds, hook_request(drafts=(draft,), prefetch=full_prefetch()))
    assert (await _stored_context(cds, card))["route"] == "intranasal"


@pytest.mark.parametrize(
    "route",
    [("http://example.org/routes", "IV"), (SNOMED, "26643006"), None],
    ids=["unknown-system", "oral-not-allowed-for-esketamine", "no-route"],
)
async def test_unknown_or_unfitting_route_is_left_out(cds: Cds, route: Any) -> None:
    draft = medication_request(ESKETAMINE_RXCUI, route=route)
    card = await _one_card(cds, hook_request(drafts=(draft,), prefetch=full_prefetch()))
    assert (await _stored_context(cds, card))["route"] is None
    assert "No route labrec recognises" in card["detail"]


async def test_a_drug_outside_the_catalog_gets_no_card(cds: Cds) -> None:
    draft = medication_request("617993", route=None)  # amoxicillin/clavulanate
    response = await cds.call(hook_request(drafts=(draft,), prefetch=full_prefetch()))
    assert response.status_code == 200
    assert response.json() == {"cards": []}


async def test_order_select_focuses_on_the_selected_orders(cds: Cds) -> None:
    other = medication_request("617993", rid="amox", route=None)
    ketamine = medication_request(KETAMINE_RXCUI, rid="ket")
    body = hook_request(drafts=(other, ketamine), selections=("MedicationRequest/amox",))
    body["prefetch"] = full_prefetch()
    response = await cds.call(body)
    assert response.json() == {"cards": []}
    body["context"]["selections"] = ["MedicationRequest/ket"]
    assert len((await cds.call(body)).json()["cards"]) == 1


async def test_two_catalog_therapies_get_one_card_each(cds: Cds) -> None:
    drafts = (
        medication_request(KETAMINE_RXCUI, rid="ket"),
        medication_request("6448", rid="li", route=(SNOMED, "26643006")),
    )
    response = await cds.call(hook_request("order-sign", drafts=drafts, prefetch=full_prefetch()))
    cards = response.json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == [
        "ketamine-baseline",
        "lithium-baseline",
    ]
    assert len({c["uuid"] for c in cards}) == 2


@pytest.mark.parametrize(
    "authored,phase",
    [(5, "induction"), (150, "induction"), (400, "maintenance"), (None, "induction")],
)
async def test_phase_follows_the_earliest_active_order(
    cds: Cds, authored: int | None, phase: str
) -> None:
    prior = medication_request(
        KETAMINE_RXCUI,
        rid="prior",
        status="active",
        authored=_days_ago(authored) if authored is not None else None,
    )
    body = hook_request(prefetch=full_prefetch(medications=(prior,)))
    card = await _one_card(cds, body)
    assert card["source"]["topic"]["code"] == f"ketamine-{phase}"
    assert (await _stored_context(cds, card))["phase"] == phase


async def test_a_revised_order_is_not_a_new_start(cds: Cds) -> None:
    draft = medication_request(KETAMINE_RXCUI, status="active", authored=_days_ago(30))
    card = await _one_card(
        cds, hook_request("order-sign", drafts=(draft,), prefetch=full_prefetch())
    )
    assert card["source"]["topic"]["code"] == "ketamine-induction"


async def test_unknown_medications_assume_a_new_start_and_say_so(cds: Cds) -> None:
    prefetch = full_prefetch()
    del prefetch["medications"]
    card = await _one_card(cds, hook_request(prefetch=prefetch))
    assert card["source"]["topic"]["code"] == "ketamine-baseline"
    assert "Phase baseline assumed" in card["detail"]
    assert "Not available to labrec: active medication orders" in card["detail"]


async def test_recent_results_and_orders_suppress_retests(cds: Cds) -> None:
    prefetch = full_prefetch(
        labs=(("24325-3", _days_ago(10)),),
        lab_orders=(
            {
                "resourceType": "ServiceRequest",
                "id": "ua",
                "status": "completed",
                "intent": "order",
                "code": {"coding": [{"system": "http://loinc.org", "code": "24356-8"}]},
                "subject": {"reference": "Patient/pat-1"},
                "authoredOn": _days_ago(20),
            },
        ),
    )
    card = await _one_card(cds, hook_request(prefetch=prefetch))
    panels = _panels(card)
    assert "Hepatic function panel (LFT)" not in panels
    assert "Urinalysis, complete" not in panels
    assert "### Left out" in card["detail"] and "recently tested" in card["detail"]
    old = full_prefetch(labs=(("24325-3", _days_ago(200)),))
    assert "Hepatic function panel (LFT)" in _panels(
        await _one_card(cds, hook_request(prefetch=old))
    )


async def test_male_patient_gets_no_pregnancy_test(cds: Cds) -> None:
    card = await _one_card(cds, hook_request(prefetch=full_prefetch(gender="male")))
    assert not any(name.startswith("Pregnancy") for name in _panels(card))


async def test_patient_view_finds_the_active_therapy(cds: Cds) -> None:
    active = medication_request(
        ESKETAMINE_RXCUI, rid="rx", status="active", authored=_days_ago(20), route=NASAL
    )
    body = hook_request("patient-view", prefetch=full_prefetch(medications=(active,)))
    card = await _one_card(cds, body)
    assert card["source"]["topic"]["code"] == "esketamine-induction"
    assert (await _stored_context(cds, card))["route"] == "intranasal"
    quiet = hook_request("patient-view", prefetch=full_prefetch())
    assert (await cds.call(quiet)).json() == {"cards": []}


async def test_same_context_same_panels(cds: Cds) -> None:
    body = hook_request(prefetch=full_prefetch())
    first = await _one_card(cds, body)
    second = await _one_card(cds, {**body, "hookInstance": str(uuid.uuid4())})
    assert list(_panels(first)) == list(_panels(second))
    assert first["uuid"] != second["uuid"]
