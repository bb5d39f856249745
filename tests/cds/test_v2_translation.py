"""MAPPING v2 through CDS Hooks: an EHR's problem list and medication list as it really is.

SNOMED-coded problems and unmapped medication codes are reported (``ignored_codings``), never a
failed hook call; ICD-10-CM problems derive findings, so ``essential`` escalations and critical
gates fire from the problem list alone; other medications map to classes by catalog data.
"""

from __future__ import annotations

from typing import Any

from service.persistence.cds_models import CdsCard
from service.persistence.models import StoredRecommendation
from tests.cds.conftest import Cds
from tests.cds.support import (
    RXNORM,
    SNOMED,
    full_prefetch,
    hook_request,
    medication_request,
)


async def _stored(cds: Cds, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored request and result behind the one lab-panel card of a hook call (a critical
    gate comes as a card of its own before it)."""
    response = await cds.call(body)
    assert response.status_code == 200, response.text
    cards = [c for c in response.json()["cards"] if c["indicator"] != "critical"]
    assert len(cards) == 1, cards
    async with cds.container.sessions() as session:
        row = await session.get(CdsCard, cards[0]["uuid"])
        assert row is not None
        stored = await session.get(StoredRecommendation, row.recommendation_id)
        assert stored is not None
        return stored.context, stored.result


def _with_snomed_problem(prefetch: dict[str, Any]) -> dict[str, Any]:
    prefetch["conditions"]["entry"].append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "snomed-1",
                "code": {"coding": [{"system": SNOMED, "code": "35489007"}]},
                "subject": {"reference": "Patient/pat-1"},
            }
        }
    )
    prefetch["conditions"]["total"] = len(prefetch["conditions"]["entry"])
    return prefetch


async def test_snomed_problem_is_reported_and_icd_problem_escalates(cds: Cds) -> None:
    """Worst output #7 (CDS face): one SNOMED-coded problem no longer sinks the request."""
    prefetch = _with_snomed_problem(full_prefetch(conditions=("F33.2", "K70.30")))
    context, result = await _stored(cds, hook_request(prefetch=prefetch))
    assert {"system": SNOMED, "code": "35489007"} in context["conditions"]
    assert any(i["path"].startswith("conditions[") for i in result["ignored_codings"])
    hepatic = next(s for s in result["suggestions"] if s["panel"]["id"] == "hepatic-function-panel")
    assert hepatic["priority"] == "essential" and hepatic["preselected"]


async def test_ketamine_scd_product_code_is_a_therapy(cds: Cds) -> None:
    """Worst output #7 (CDS face): a ketamine SCD from the EHR maps to the ketamine therapy."""
    body = hook_request(drafts=(medication_request("238083"),), prefetch=full_prefetch())
    context, result = await _stored(cds, body)
    assert context["therapy"] == "ketamine"
    assert result["suggestions"]


async def test_mania_on_the_problem_list_is_a_critical_gate(cds: Cds) -> None:
    _, result = await _stored(cds, hook_request(prefetch=full_prefetch(conditions=("F31.2",))))
    assert result["advisories"][0]["id"] == "ketamine-current-mania-mixed"
    assert result["advisories"][0]["severity"] == "critical"


async def test_other_medications_map_to_classes_or_are_reported(cds: Cds) -> None:
    meds = (
        medication_request("61381", rid="olz", status="active", route=None, authored="2025-01-01"),
        medication_request("999999999", rid="odd", status="active", route=None),
        medication_request("abc", rid="ndc", status="active", route=None, system="urn:x"),
    )
    context, result = await _stored(cds, hook_request(prefetch=full_prefetch(medications=meds)))
    codes = [m["code"]["code"] for m in context["medications"]]
    assert codes == ["61381", "999999999", "abc"]
    assert context["medications"][0]["started"] == "2025-01-01"
    ids = {s["panel"]["id"] for s in result["suggestions"]}
    assert {"hba1c", "lipid-panel"} <= ids
    ignored = [i["path"] for i in result["ignored_codings"]]
    assert ignored == ["medications[1].code", "medications[2].code"]
    assert "unmapped-medication" in {a["id"] for a in result["advisories"]}
    assert all(m["code"]["system"] in (RXNORM, "urn:x") for m in context["medications"])


async def test_existing_order_gives_the_therapy_start_date(cds: Cds) -> None:
    """The earliest active order dates the therapy, so titration and first-year flags see it."""
    active = medication_request("6130", rid="old", status="active", authored="2024-01-10")
    body = hook_request(
        "order-sign",
        drafts=(medication_request(rid="draft-2", status="draft"),),
        prefetch=full_prefetch(medications=(active,)),
    )
    context, _ = await _stored(cds, body)
    assert context["phase"] == "maintenance"
    assert context["therapy_started"] == "2024-01-10"
    assert context["medications"] == []  # the therapy itself is not a co-medication
