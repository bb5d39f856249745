"""Advisories (not labs): every bullet of MAPPING.md "Advisories", present when it should be and
absent when it should not.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from tests.domain.builders import PHASES, advisory_ids, ctx, run

ESKETAMINE_ALWAYS = {
    "esketamine-blood-pressure",
    "esketamine-rems-observation",
    "esketamine-no-driving",
    "esketamine-contraindications",
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def ids(catalog: Catalog, therapy: str, phase: str = "baseline", **kw: Any) -> set[str]:
    return advisory_ids(run(catalog, ctx(therapy, phase, **kw)))


# --- the full set for plain contexts --------------------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(
    "therapy,patient,expected",
    [
        ("ketamine", {"sex": "male", "age": 40}, {"ketamine-vital-signs"}),
        ("esketamine", {"sex": "male", "age": 40}, ESKETAMINE_ALWAYS),
        ("esketamine", {"sex": "female", "age": 30}, ESKETAMINE_ALWAYS | {"esketamine-pregnancy"}),
        ("lithium", {"sex": "male", "age": 40}, {"lithium-levels-toxicity-interactions"}),
        (
            "lithium",
            {"sex": "female", "age": 30},
            {"lithium-levels-toxicity-interactions", "lithium-pregnancy"},
        ),
        ("valproate", {"sex": "male", "age": 40}, {"valproate-pancreatitis-hyperammonaemia"}),
        (
            "valproate",
            {"sex": "female", "age": 30},
            {"valproate-pancreatitis-hyperammonaemia", "valproate-pregnancy"},
        ),
        ("ssri_snri", {"sex": "female", "age": 40}, set()),
        ("ssri_snri", {"sex": "female", "age": 70}, {"ssri-snri-older-sodium"}),
        ("psilocybin", {"sex": "female", "age": 30}, {"psilocybin-investigational"}),
        ("tms", {"sex": "female", "age": 30}, set()),
    ],
)
def test_advisories_of_a_plain_context(
    catalog: Catalog, therapy: str, phase: str, patient: dict[str, Any], expected: set[str]
) -> None:
    assert ids(catalog, therapy, phase, **patient) == expected


def test_every_advisory_has_id_text_and_source(catalog: Catalog) -> None:
    rec = run(
        catalog,
        ctx("esketamine", conditions=["F31.5"], findings=["hypertension", "liver_disease"]),
    )
    assert len(rec.advisories) >= 8
    for note in rec.advisories:
        assert note.id and note.text.strip() and note.source.strip()
        assert "{" not in note.text, "unfilled template field"


# --- ketamine: vital signs ------------------------------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
def test_ketamine_vital_signs(catalog: Catalog, phase: str) -> None:
    text = {a.id: a.text for a in run(catalog, ctx("ketamine", phase)).advisories}[
        "ketamine-vital-signs"
    ]
    for word in ("blood pressure", "heart rate", "oxygen saturation"):
        assert word in text.lower()


# --- esketamine, every context --------------------------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(
    "patient",
    [
        {"sex": "male", "age": 70},
        {"sex": "female", "age": 25, "findings": ["hypertension", "liver_disease"]},
        {"sex": "unknown", "age": None, "conditions": ["F33.3", "F31.31"]},
        {"sex": "other", "age": 50, "evidence_based_only": True, "exclude": ["urine"]},
    ],
    ids=["male-70", "findings", "conditions", "preferences"],
)
def test_esketamine_advisories_in_every_context(
    catalog: Catalog, phase: str, patient: dict[str, Any]
) -> None:
    assert ids(catalog, "esketamine", phase, **patient) >= ESKETAMINE_ALWAYS


def test_esketamine_advisory_content(catalog: Catalog) -> None:
    text = {a.id: a.text.lower() for a in run(catalog, ctx("esketamine")).advisories}
    assert "40 minutes" in text["esketamine-blood-pressure"]
    assert "blood pressure" in text["esketamine-blood-pressure"]
    rems = text["esketamine-rems-observation"]
    assert "2 hours" in rems and "rems" in rems and "pulse oximetry" in rems
    assert "respiratory depression" in rems
    assert "next day" in text["esketamine-no-driving"]
    contraindications = text["esketamine-contraindications"]
    for phrase in ("aneurysmal vascular disease", "arteriovenous malformation", "intracerebral"):
        assert phrase in contraindications


# --- ketamine, esketamine with a finding or condition ---------------------------------------------


@pytest.mark.parametrize("therapy", ["ketamine", "esketamine"])
@pytest.mark.parametrize("phase", PHASES)
def test_hypertension(catalog: Catalog, therapy: str, phase: str) -> None:
    advisory = "ketamine-esketamine-hypertension"
    rec = run(catalog, ctx(therapy, phase, findings=["hypertension"]))
    text = {a.id: a.text.lower() for a in rec.advisories}[advisory]
    assert "blood pressure" in text and "control before dosing" in text
    assert advisory not in ids(catalog, therapy, phase, findings=["liver_disease"])


@pytest.mark.parametrize("therapy", ["lithium", "valproate", "ssri_snri", "tms", "psilocybin"])
def test_hypertension_advisory_only_for_ketamines(catalog: Catalog, therapy: str) -> None:
    assert "ketamine-esketamine-hypertension" not in ids(
        catalog, therapy, findings=["hypertension"]
    )


@pytest.mark.parametrize("therapy", ["ketamine", "esketamine"])
@pytest.mark.parametrize(
    "condition,expected",
    [("F31.9", True), ("F31.31", True), ("F31.0", True), ("F33.2", False), ("F41.1", False)],
)
def test_bipolar_manic_switch(
    catalog: Catalog, therapy: str, condition: str, expected: bool
) -> None:
    found = "ketamine-esketamine-bipolar" in ids(catalog, therapy, conditions=[condition])
    assert found is expected


def test_bipolar_advisory_mentions_mood_stabiliser_monitoring(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", conditions=["F31.9"]))
    text = {a.id: a.text.lower() for a in rec.advisories}["ketamine-esketamine-bipolar"]
    assert "mania" in text and "mood-stabiliser" in text


@pytest.mark.parametrize(
    "therapy,condition,expected",
    [
        ("esketamine", "F33.3", True),
        ("esketamine", "F32.3", True),
        ("esketamine", "F31.5", True),
        ("esketamine", "F33.2", False),
        ("esketamine", "F31.31", False),
        ("ketamine", "F33.3", False),
    ],
)
def test_esketamine_psychotic_features(
    catalog: Catalog, therapy: str, condition: str, expected: bool
) -> None:
    found = "esketamine-psychotic-features" in ids(catalog, therapy, conditions=[condition])
    assert found is expected


@pytest.mark.parametrize(
    "therapy,advisory",
    [("esketamine", "esketamine-liver-disease"), ("valproate", "valproate-liver-disease")],
)
@pytest.mark.parametrize("phase", PHASES)
def test_liver_disease(catalog: Catalog, therapy: str, advisory: str, phase: str) -> None:
    assert advisory in ids(catalog, therapy, phase, findings=["liver_disease"])
    assert advisory not in ids(catalog, therapy, phase, findings=["hypertension"])


@pytest.mark.parametrize("therapy", ["ketamine", "lithium", "ssri_snri"])
def test_no_liver_disease_advisory_for_other_therapies(catalog: Catalog, therapy: str) -> None:
    found = ids(catalog, therapy, findings=["liver_disease"])
    assert not {"esketamine-liver-disease", "valproate-liver-disease"} & found


def test_valproate_liver_disease_says_contraindicated(catalog: Catalog) -> None:
    rec = run(catalog, ctx("valproate", findings=["liver_disease"]))
    assert "contraindicated" in {a.id: a.text for a in rec.advisories}["valproate-liver-disease"]


# --- pregnancy possible ---------------------------------------------------------------------------


PREGNANCY_ADVISORY = {
    "esketamine": "esketamine-pregnancy",
    "valproate": "valproate-pregnancy",
    "lithium": "lithium-pregnancy",
}


@pytest.mark.parametrize("therapy", sorted(PREGNANCY_ADVISORY))
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(
    "patient,expected",
    [
        ({"sex": "female", "age": 30}, True),
        ({"sex": "unknown", "age": None}, True),
        ({"sex": "male", "age": 30, "pregnancy_possible": True}, True),
        ({"sex": "male", "age": 30}, False),
        ({"sex": "female", "age": 60}, False),
        ({"sex": "female", "age": 30, "pregnancy_possible": False}, False),
    ],
    ids=["female-30", "unknown", "stated-possible", "male", "female-60", "stated-not-possible"],
)
def test_pregnancy_advisory(
    catalog: Catalog, therapy: str, phase: str, patient: dict[str, Any], expected: bool
) -> None:
    found = PREGNANCY_ADVISORY[therapy] in ids(catalog, therapy, phase, **patient)
    assert found is expected


@pytest.mark.parametrize("therapy", ["ketamine", "ssri_snri", "tms", "psilocybin"])
def test_no_pregnancy_advisory_for_other_therapies(catalog: Catalog, therapy: str) -> None:
    assert not set(PREGNANCY_ADVISORY.values()) & ids(catalog, therapy, sex="female", age=30)


def test_pregnancy_advisories_counsel_contraception(catalog: Catalog) -> None:
    for therapy, advisory in PREGNANCY_ADVISORY.items():
        rec = run(catalog, ctx(therapy, sex="female", age=30))
        assert "contraception" in {a.id: a.text for a in rec.advisories}[advisory]


@pytest.mark.parametrize(
    "conditions,expected", [(["G43.909"], True), (["G43.A0", "F33.2"], True), (["F33.2"], False)]
)
@pytest.mark.parametrize("phase", PHASES)
def test_valproate_migraine_in_pregnancy(
    catalog: Catalog, conditions: list[str], expected: bool, phase: str
) -> None:
    found = "valproate-migraine-pregnancy" in ids(
        catalog, "valproate", phase, sex="female", age=30, conditions=conditions
    )
    assert found is expected


# --- valproate, lithium, ssri_snri, psilocybin ----------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
def test_valproate_pancreatitis_and_hyperammonaemia(catalog: Catalog, phase: str) -> None:
    rec = run(catalog, ctx("valproate", phase, sex="male"))
    text = {a.id: a.text.lower() for a in rec.advisories}["valproate-pancreatitis-hyperammonaemia"]
    assert "pancreatitis" in text and "hyperammonaemia" in text


@pytest.mark.parametrize("phase", PHASES)
def test_lithium_levels_toxicity_interactions(catalog: Catalog, phase: str) -> None:
    rec = run(catalog, ctx("lithium", phase, sex="male"))
    text = {a.id: a.text.lower() for a in rec.advisories}["lithium-levels-toxicity-interactions"]
    for phrase in ("12 hours", "toxicity", "nsaid", "ace inhibitor", "diuretic", "dehydration"):
        assert phrase in text, phrase
    assert "angiotensin-receptor blocker" in text or "arb" in text


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("age,expected", [(65, True), (82, True), (64, False), (None, False)])
def test_ssri_snri_older_adults_sodium(
    catalog: Catalog, phase: str, age: int | None, expected: bool
) -> None:
    rec = run(catalog, ctx("ssri_snri", phase, age=age))
    notes = {a.id: a.text for a in rec.advisories}
    assert ("ssri-snri-older-sodium" in notes) is expected
    if expected:
        assert f"Age {age}" in notes["ssri-snri-older-sodium"]
        assert "sodium" in notes["ssri-snri-older-sodium"]


@pytest.mark.parametrize("phase", PHASES)
def test_psilocybin_investigational(catalog: Catalog, phase: str) -> None:
    rec = run(catalog, ctx("psilocybin", phase))
    text = {a.id: a.text.lower() for a in rec.advisories}["psilocybin-investigational"]
    assert "investigational" in text and "trial protocol" in text
