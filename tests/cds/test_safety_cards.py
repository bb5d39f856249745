"""Severity and honest pre-selection on the CDS face (MAPPING.md v2).

A ``critical`` advisory (a safety gate) is a card of its own with indicator ``critical`` and a
short summary; ``warning`` advisories make the lab-panel card a ``warning`` card; only
pre-selected suggestions carry ``isRecommended``; complementary suggestions never read as an
instruction to order. The cards are built from a recommendation written out here, so these
tests do not depend on which catalog rows produce a gate; the hook-level tests at the end go
through the whole service.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import msgspec
from sqlalchemy import select

from service.catalog_loader import load_catalog
from service.cds.cards import build_cards
from service.cds.wire import CardsResponse, HookCall
from service.persistence.cds_models import CdsCard, CdsFeedback
from service.persistence.models import StoredRecommendation
from service.usecases.dto import RecommendationOut
from tests.cds.checker import check_response
from tests.cds.conftest import Cds
from tests.cds.support import full_prefetch, hook_request

GATE = (
    "Liver disease is recorded: valproate is contraindicated in hepatic disease; do not start it "
    "and arrange a specialist review of the treatment plan before any further dose is given."
)
WARNING = "Pregnancy is possible: valproate carries a major embryo-fetal risk."
ROUTINE = "Watch for signs of pancreatitis and hyperammonaemia."
ORDER_WORD = re.compile(r"\border", re.IGNORECASE)


def _panel(panel_id: str, name: str, tier: str) -> dict[str, Any]:
    return {
        "id": panel_id,
        "name": name,
        "family": panel_id,
        "tier": tier,
        "codes": [{"system": "http://loinc.org", "code": "24325-3"}],
        "vendor": "any",
        "specimen": "serum",
        "specimen_collection": "venous draw",
    }


def _suggestion(panel: dict[str, Any], priority: str, preselected: bool) -> dict[str, Any]:
    return {
        "panel": panel,
        "priority": priority,
        "rationale": "Because.",
        "evidence": [],
        "rules": [f"rule-{panel['id']}"],
        "cautions": [],
        "alternatives": [],
        "preselected": preselected,
    }


def _recommendation(advisories: list[tuple[str, str]]) -> RecommendationOut:
    return msgspec.convert(
        {
            "recommendation_id": str(uuid.uuid4()),
            "catalog_version": "test",
            "created_at": "2026-12-01T10:00:00Z",
            "as_of": "2026-12-01",
            "therapy": "valproate",
            "suggestions": [
                _suggestion(_panel("lft", "Hepatic function panel", "safety"), "essential", True),
                _suggestion(_panel("cbc", "Complete blood count", "safety"), "consider", False),
                _suggestion(_panel("hscrp", "hs-CRP", "complementary"), "consider", False),
            ],
            "suppressed": [],
            "advisories": [
                {"id": f"a{i}", "text": text, "source": "label", "severity": severity}
                for i, (severity, text) in enumerate(advisories)
            ],
            "disclaimer": "Decision support only.",
        },
        RecommendationOut,
    )


BASE = "http://127.0.0.1:8000"


def _call() -> HookCall:
    return HookCall(
        hook="order-select",
        hook_instance=str(uuid.uuid4()),
        patient_id="pat-1",
        user_id="Practitioner/prac-1",
        encounter_id=None,
        fhir_server=None,
        access_token=None,
        draft_orders=[],
        selections=(),
        prefetch=None,
    )


def _cards(out: RecommendationOut) -> list[dict[str, Any]]:
    issued = build_cards(
        out, therapy_name="Valproate", phase="baseline", notes=(), call=_call(), public_url=BASE
    )
    document = msgspec.to_builtins(CardsResponse(cards=[i.card for i in issued]))
    assert check_response(document) == []
    cards: list[dict[str, Any]] = document["cards"]
    return cards


def test_a_critical_gate_is_its_own_critical_card_before_the_panels() -> None:
    cards = _cards(_recommendation([("critical", GATE), ("warning", WARNING), ("info", ROUTINE)]))
    assert [c["indicator"] for c in cards] == ["critical", "warning"]
    gate, panels = cards
    assert len(gate["summary"]) < 140 and gate["summary"].startswith("Valproate: Liver disease")
    assert gate["summary"].endswith("…")  # the gate's text is longer than a summary may be
    assert GATE in gate["detail"] and "specialist review" in gate["detail"]
    assert "suggestions" not in gate  # a gate removes no labs and adds none
    assert {r["code"] for r in gate["overrideReasons"]} <= {
        r["code"] for r in panels["overrideReasons"]
    }
    # The lab-panel card points to the gate instead of burying it in its detail.
    assert GATE not in panels["detail"] and "see the critical card" in panels["detail"]
    assert WARNING in panels["detail"] and ROUTINE in panels["detail"]
    assert panels["detail"].index(WARNING) < panels["detail"].index(ROUTINE)


def test_every_critical_advisory_in_the_catalog_makes_a_valid_short_gate_card() -> None:
    catalog = load_catalog()
    gates = [a for a in catalog.files.advisories if a.severity == "critical"]
    assert gates
    for gate in gates:
        for therapy in gate.therapies:
            name = catalog.therapies[therapy].name
            out = msgspec.structs.replace(
                _recommendation([("critical", gate.text)]), therapy=therapy
            )
            issued = build_cards(
                out, therapy_name=name, phase="baseline", notes=(), call=_call(), public_url=BASE
            )
            card = msgspec.to_builtins(issued[0].card)
            assert check_response({"cards": [card]}) == [], gate.id
            assert card["indicator"] == "critical" and len(card["summary"]) < 140, gate.id
            assert card["summary"].startswith(f"{name}: "), gate.id


def test_two_gates_two_critical_cards_and_a_gate_alone_gives_no_empty_panel_card() -> None:
    second = "Short gate. " + "A long explanation follows, " * 6 + "in the detail."
    out = _recommendation([("critical", GATE), ("critical", second)])
    cards = _cards(out)
    assert [c["indicator"] for c in cards] == ["critical", "critical", "info"]
    assert cards[1]["summary"] == "Valproate: Short gate."  # its first sentence fits
    assert second in cards[1]["detail"]
    assert "2 safety gates apply" in cards[2]["detail"]
    only_gate = msgspec.structs.replace(out, suggestions=[], advisories=out.advisories[:1])
    assert [c["indicator"] for c in _cards(only_gate)] == ["critical"]


def test_warning_makes_the_panel_card_a_warning_and_routine_advice_leaves_it_info() -> None:
    assert [c["indicator"] for c in _cards(_recommendation([("warning", WARNING)]))] == ["warning"]
    assert [c["indicator"] for c in _cards(_recommendation([("info", ROUTINE)]))] == ["info"]


def test_only_preselected_suggestions_are_recommended_and_optional_ones_never_say_order() -> None:
    (card,) = _cards(_recommendation([]))
    by_name = {s["actions"][0]["resource"]["code"]["text"]: s for s in card["suggestions"]}
    assert by_name["Hepatic function panel"]["isRecommended"] is True
    assert by_name["Hepatic function panel"]["label"] == "Order Hepatic function panel"
    assert "isRecommended" not in by_name["Complete blood count"]
    optional = by_name["hs-CRP"]
    assert "isRecommended" not in optional
    assert not ORDER_WORD.search(optional["label"]), optional["label"]
    assert not ORDER_WORD.search(optional["actions"][0]["description"])
    assert "association-level evidence" in optional["label"]
    assert card["summary"] == "Valproate, baseline: 1 lab panel suggested, 2 optional"


async def test_hook_card_recommends_exactly_the_preselected_panels(cds: Cds) -> None:
    """Through the service: isRecommended matches the stored recommendation's ``preselected``
    and no complementary suggestion reads as an order."""
    body = hook_request(prefetch=full_prefetch(conditions=("F33.2", "K58.9")))
    response = await cds.call(body)
    assert response.status_code == 200, response.text
    assert check_response(response.json()) == []
    (card,) = response.json()["cards"]
    async with cds.container.sessions() as session:
        link = card["links"][0]["url"]
        stored = await session.get(StoredRecommendation, link.rsplit("/", 1)[1])
        assert stored is not None
    result = stored.result
    preselected = {s["panel"]["name"]: s["preselected"] for s in result["suggestions"]}
    tiers = {s["panel"]["name"]: s["panel"]["tier"] for s in result["suggestions"]}
    assert any(preselected.values()) and not all(preselected.values())
    for suggestion in card["suggestions"]:
        name = suggestion["actions"][0]["resource"]["code"]["text"]
        assert suggestion.get("isRecommended", False) is preselected[name], name
        if tiers[name] == "complementary":
            assert not preselected[name]
            assert not ORDER_WORD.search(suggestion["label"]), suggestion["label"]
    assert dt.date.fromisoformat(result["as_of"]) <= dt.date.today()


async def test_current_mania_with_a_ketamine_order_is_a_critical_card_the_ehr_can_override(
    cds: Cds,
) -> None:
    """Through the service: F31.2 (bipolar, current manic episode with psychotic features) with a
    ketamine order. The gate is the first card, critical; the labs stay on a warning card; an
    override of the gate is stored like any other card's."""
    body = hook_request(prefetch=full_prefetch(conditions=("F31.2",)))
    response = await cds.call(body)
    assert response.status_code == 200, response.text
    assert check_response(response.json()) == []
    cards = response.json()["cards"]
    indicators = [c["indicator"] for c in cards]
    gates = indicators.count("critical")
    assert gates >= 1 and indicators[:gates] == ["critical"] * gates  # gates come first
    gate, panels = cards[0], cards[-1]
    assert panels["indicator"] == "warning" and panels["suggestions"]
    assert len(gate["summary"]) < 140 and gate["summary"].startswith("Ketamine (racemic): ")
    assert "manic" in gate["summary"]
    assert "see the critical card" in panels["detail"]
    async with cds.container.sessions() as session:
        issued = await session.get(CdsCard, gate["uuid"])
        assert issued is not None
        stored = await session.get(StoredRecommendation, issued.recommendation_id)
        assert stored is not None
    critical = [a["text"] for a in stored.result["advisories"] if a["severity"] == "critical"]
    assert len(critical) == gates
    assert any(text in gate["detail"] for text in critical)
    assert not any(text in panels["detail"] for text in critical)

    override = {
        "feedback": [
            {
                "card": gate["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": gate["overrideReasons"][0]},
                "outcomeTimestamp": "2026-12-01T10:00:00Z",
            }
        ]
    }
    assert (await cds.feedback("labrec-order-select", override)).status_code == 200
    async with cds.container.sessions() as session:
        rows = (await session.scalars(select(CdsFeedback))).all()
    assert [(r.card_uuid, r.outcome) for r in rows] == [(gate["uuid"], "overridden")]
