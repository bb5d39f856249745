"""MAPPING v2 over the live API, on SQLite and PostgreSQL: the gates, the new answer fields and
the seven worst outputs of the clinical review (issue 11), each made impossible."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.support.app import running_app
from tests.support.builders import ketamine_context, tenant

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
AS_OF = "2026-11-20"


@pytest.fixture
async def api(database_url: str):
    async with running_app(make_settings(database_url), run_worker=False) as (client, container):
        client.headers["X-API-Key"] = await tenant(container)
        yield client


async def _recommend(client: Any, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/recommendations", json=ketamine_context(as_of=AS_OF, **overrides)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _suggestion(body: dict[str, Any], panel_id: str) -> dict[str, Any] | None:
    return next((s for s in body["suggestions"] if s["panel"]["id"] == panel_id), None)


def _left_out(body: dict[str, Any], panel_id: str) -> dict[str, Any] | None:
    return next((s for s in body["suppressed"] if s["panel_id"] == panel_id), None)


def _days_before(days: int) -> str:
    return (dt.date.fromisoformat(AS_OF) - dt.timedelta(days=days)).isoformat()


async def test_worst_1_lithium_titration_next_level_in_days(api) -> None:
    body = await _recommend(
        api,
        therapy="lithium",
        route="oral",
        phase="induction",
        conditions=[{"system": ICD, "code": "F31.81"}],
        last_dose_change=_days_before(10),
        recent_tests=[
            {"code": {"system": "http://loinc.org", "code": "14334-7"}, "date": _days_before(3)}
        ],
    )
    entry = _left_out(body, "lithium-level")
    assert entry is not None and entry["reason"] == "recently_tested"
    assert entry["next_due"] == _days_before(-4)


async def test_worst_2_ketamine_in_current_mania_is_a_critical_gate(api) -> None:
    body = await _recommend(api, conditions=[{"system": ICD, "code": "F31.2"}])
    first = body["advisories"][0]
    assert (first["id"], first["severity"]) == ("ketamine-current-mania-mixed", "critical")
    severities = [a["severity"] for a in body["advisories"]]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)


async def test_worst_3_minor_no_functional_panels_and_an_age_advisory(api) -> None:
    body = await _recommend(api, patient={"sex": "male", "age": 16})
    assert not [s for s in body["suggestions"] if s["panel"]["tier"] == "complementary"]
    assert _left_out(body, "hs-crp")["reason"] == "not_applicable"  # type: ignore[index]
    assert any(
        a["id"] == "ketamine-minor" and a["severity"] == "warning" for a in body["advisories"]
    )


async def test_worst_4_take_home_sublingual_gets_pregnancy_test_and_advisory(api) -> None:
    body = await _recommend(api, route="sublingual", phase="induction")
    hcg = _suggestion(body, "hcg-urine")
    assert hcg is not None and hcg["priority"] == "essential" and hcg["preselected"]
    assert hcg["retest_days"] == 30
    ids = {a["id"] for a in body["advisories"]}
    assert {
        "ketamine-take-home",
        "ketamine-take-home-assumed",
        "ketamine-pregnancy-possible",
    } <= ids


async def test_worst_5_baseline_labs_done_yesterday_are_not_repeated(api) -> None:
    yesterday = _days_before(1)
    tests = [
        {"code": {"system": "http://loinc.org", "code": code}, "date": yesterday}
        for code in ("24323-8", "24356-8", "2106-3", "58410-2", "3016-3")
    ]
    body = await _recommend(api, findings=[], recent_tests=tests)
    for panel_id in ("hepatic-function-panel", "urinalysis", "hcg-urine", "cbc", "tsh"):
        entry = _left_out(body, panel_id)
        assert entry is not None and entry["reason"] == "recently_tested", panel_id
        assert entry["next_due"] > yesterday


async def test_worst_6_vendor_preference_keeps_the_conventional_inflammation_default(api) -> None:
    body = await _recommend(api, preferences={"vendors": ["Precision Analytical"]})
    crp = _suggestion(body, "hs-crp")
    assert crp is not None and crp["priority"] == "consider" and not crp["preselected"]


async def test_worst_7_product_code_and_snomed_problem_are_not_rejected(api) -> None:
    body = await _recommend(
        api,
        therapy={"system": RXNORM, "code": "238082"},
        conditions=[
            {"system": "http://snomed.info/sct", "code": "35489007"},
            {"system": ICD, "code": "F33.2"},
        ],
        medications=[{"code": {"system": RXNORM, "code": "206970"}}],
    )
    assert body["therapy"] == "ketamine"
    assert [i["path"] for i in body["ignored_codings"]] == ["conditions[0]", "medications[0].code"]


async def test_ssri_with_maoi_is_critical_and_request_families_lifts_not_requested(api) -> None:
    body = await _recommend(
        api,
        therapy="ssri_snri",
        route="oral",
        medications=[{"class_id": "maoi", "started": _days_before(5)}],
        preferences={"request_families": ["neurotransmitter"]},
    )
    assert body["advisories"][0]["id"] == "ssri-snri-maoi"
    assert body["advisories"][0]["severity"] == "critical"
    neuro = _suggestion(body, "zrt-neurotransmitter")
    assert neuro is not None and neuro["priority"] == "consider"


async def test_valproate_metabolic_gate_and_pregnancy(api) -> None:
    body = await _recommend(
        api,
        therapy="valproate",
        route="oral",
        conditions=[{"system": ICD, "code": "E72.20"}],
        patient={"sex": "female", "age": 30, "pregnant": True},
    )
    critical = [a["id"] for a in body["advisories"] if a["severity"] == "critical"]
    assert critical == ["valproate-pregnant", "valproate-metabolic-contraindication"]
    assert _left_out(body, "hcg-urine")["reason"] == "not_applicable"  # type: ignore[index]
