"""Complementary tier vignettes: MAPPING.md "Complementary tier" (families, priorities, preferences)
and cross-cutting rule 4 (specimen and vendor preferences never remove a safety panel).
"""

from __future__ import annotations

import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from tests.domain.builders import (
    FAMILIES,
    HCG_SERUM,
    HCG_URINE,
    HS_CRP,
    by_family,
    codes,
    ctx,
    describe,
    families,
    get,
    left_out,
    reason,
    run,
)

ALL_FOUR = ("ketamine", "esketamine", "ssri_snri")
EXPECTED_FAMILIES = {
    "ketamine": set(FAMILIES),
    "esketamine": set(FAMILIES),
    "ssri_snri": set(FAMILIES),
    "tms": {"inflammation", "hormone"},
    "lithium": {"inflammation"},
    "valproate": {"inflammation"},
    "psilocybin": set(),
}
DEFAULT_PANEL = {
    "inflammation": "hs-crp",
    "hormone": "dutch-complete",
    "gi_stool": "gi-map",
    "neurotransmitter": "zrt-neurotransmitter",
}
EXPLORATORY = ("neurotransmitter", "hormone", "gi_stool")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def family_panel_ids(catalog: Catalog, family: str) -> set[str]:
    return {p.id for p in catalog.panels.values() if p.family == family}


# --- which therapies get which families -----------------------------------------------------------


@pytest.mark.parametrize("therapy", sorted(EXPECTED_FAMILIES))
@pytest.mark.parametrize("phase", ["baseline", "induction"])
def test_families_per_therapy(catalog: Catalog, therapy: str, phase: str) -> None:
    rec = run(catalog, ctx(therapy, phase, age=40))
    assert families(rec) == EXPECTED_FAMILIES[therapy], describe(rec)


@pytest.mark.parametrize("therapy", [*ALL_FOUR, "tms"])
@pytest.mark.parametrize("phase", ["baseline", "induction"])
def test_default_panel_with_the_rest_of_the_family_as_alternatives(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    rec = run(catalog, ctx(therapy, phase))
    for family in EXPECTED_FAMILIES[therapy]:
        suggestion = by_family(rec, family)
        assert suggestion is not None, family
        assert suggestion.panel.id == DEFAULT_PANEL[family]
        assert suggestion.panel.tier == "complementary"
        alternatives = [p.id for p in suggestion.alternatives]
        assert len(alternatives) == len(set(alternatives))
        assert set(alternatives) == family_panel_ids(catalog, family) - {DEFAULT_PANEL[family]}


def test_inflammation_default_is_hs_crp_by_loinc(catalog: Catalog) -> None:
    assert get(run(catalog, ctx("ketamine")), HS_CRP).panel.family == "inflammation"


@pytest.mark.parametrize("therapy", ["lithium", "valproate"])
@pytest.mark.parametrize("phase", ["baseline", "induction"])
def test_mood_stabilisers_get_inflammation_only_as_consider(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    rec = run(
        catalog,
        ctx(
            therapy,
            phase,
            conditions=["F33.2"],
            findings=["inflammatory_condition", "hormonal_symptoms", "gi_symptoms"],
        ),
    )
    assert families(rec) == {"inflammation"}
    assert get(rec, HS_CRP).priority == "consider"


@pytest.mark.parametrize("therapy", sorted(EXPECTED_FAMILIES))
def test_never_at_maintenance(catalog: Catalog, therapy: str) -> None:
    rec = run(
        catalog,
        ctx(
            therapy,
            "maintenance",
            conditions=["F33.2"],
            findings=["inflammatory_condition", "hormonal_symptoms", "gi_symptoms"],
        ),
    )
    assert families(rec) == set(), describe(rec)
    left = {s.panel_id: s.reason for s in rec.suppressed if s.panel_id in DEFAULT_PANEL.values()}
    assert left == {
        DEFAULT_PANEL[family]: "not_indicated_in_phase" for family in EXPECTED_FAMILIES[therapy]
    }


# --- priorities per finding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "therapy,conditions,findings,expected",
    [
        ("ketamine", [], [], "consider"),
        ("ketamine", [], ["inflammatory_condition"], "recommended"),
        ("esketamine", [], ["inflammatory_condition"], "recommended"),
        ("tms", [], ["inflammatory_condition"], "recommended"),
        ("ssri_snri", [], ["inflammatory_condition"], "recommended"),
        ("ssri_snri", ["F33.2"], [], "recommended"),
        ("ssri_snri", ["F32.1"], [], "recommended"),
        ("ssri_snri", ["F32.4"], [], "consider"),  # remission is not a depression condition
        ("ssri_snri", ["F41.1"], [], "consider"),
        ("ssri_snri", [], [], "consider"),
        ("ketamine", ["F33.2"], [], "consider"),  # depression alone does not earn it for ketamine
        ("esketamine", ["F33.2"], [], "consider"),
        ("tms", ["F33.2"], [], "consider"),
        ("ketamine", [], ["hormonal_symptoms", "gi_symptoms", "fatigue"], "consider"),
    ],
)
def test_inflammation_priority(
    catalog: Catalog, therapy: str, conditions: list[str], findings: list[str], expected: str
) -> None:
    rec = run(catalog, ctx(therapy, conditions=conditions, findings=findings))
    assert get(rec, HS_CRP).priority == expected


@pytest.mark.parametrize("therapy", [*ALL_FOUR, "tms"])
@pytest.mark.parametrize(
    "findings,expected,work_up_first",
    [
        ([], "consider", False),
        (["hormonal_symptoms"], "recommended", False),
        (["sleep_disturbance"], "consider", True),
        (["fatigue"], "consider", True),
        (["hormonal_symptoms", "fatigue"], "recommended", True),
        (["gi_symptoms", "inflammatory_condition"], "consider", False),
    ],
)
def test_hormone_priority_and_conventional_work_up(
    catalog: Catalog, therapy: str, findings: list[str], expected: str, work_up_first: bool
) -> None:
    hormone = by_family(run(catalog, ctx(therapy, findings=findings)), "hormone")
    assert hormone is not None
    assert hormone.priority == expected
    assert ("conventional" in hormone.rationale.lower()) is work_up_first, hormone.rationale


@pytest.mark.parametrize("therapy", ALL_FOUR)
@pytest.mark.parametrize(
    "findings,expected",
    [
        ([], "consider"),
        (["gi_symptoms"], "recommended"),
        (["hormonal_symptoms", "inflammatory_condition", "fatigue"], "consider"),
    ],
)
def test_gi_stool_priority(
    catalog: Catalog, therapy: str, findings: list[str], expected: str
) -> None:
    gi = by_family(run(catalog, ctx(therapy, findings=findings)), "gi_stool")
    assert gi is not None
    assert gi.priority == expected
    if "gi_symptoms" in findings:
        assert "conventional gi work-up" in gi.rationale.lower(), gi.rationale


@pytest.mark.parametrize("therapy", ALL_FOUR)
@pytest.mark.parametrize(
    "findings",
    [
        [],
        [
            "gi_symptoms",
            "hormonal_symptoms",
            "sleep_disturbance",
            "fatigue",
            "inflammatory_condition",
            "urinary_symptoms",
            "liver_disease",
            "hypertension",
            "substance_use_concern",
        ],
    ],
    ids=["no-findings", "every-finding"],
)
def test_neurotransmitter_always_consider_with_brain_levels_caution(
    catalog: Catalog, therapy: str, findings: list[str]
) -> None:
    rec = run(catalog, ctx(therapy, conditions=["F33.2", "F31.31"], findings=findings))
    neuro = by_family(rec, "neurotransmitter")
    assert neuro is not None
    assert neuro.priority == "consider"
    assert any("do not reflect brain levels" in c.lower() for c in neuro.cautions), neuro.cautions


# --- evidence_based_only --------------------------------------------------------------------------


@pytest.mark.parametrize("therapy", [*ALL_FOUR, "tms"])
@pytest.mark.parametrize("phase", ["baseline", "induction"])
def test_evidence_based_only_keeps_inflammation_only(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    findings = ["hormonal_symptoms", "gi_symptoms", "inflammatory_condition"]
    everything = run(catalog, ctx(therapy, phase, findings=findings))
    rec = run(catalog, ctx(therapy, phase, findings=findings, evidence_based_only=True))
    assert families(rec) == {"inflammation"}
    assert get(rec, HS_CRP).priority == "recommended"
    for family in EXPECTED_FAMILIES[therapy] & set(EXPLORATORY):
        assert reason(rec, DEFAULT_PANEL[family]) == "excluded_by_preference", family
    assert codes(rec, "safety") == codes(everything, "safety")


# --- specimen and vendor preferences --------------------------------------------------------------


@pytest.mark.parametrize("therapy", ALL_FOUR)
def test_excluding_stool_leaves_out_gi_stool_without_a_stool_alternative(
    catalog: Catalog, therapy: str
) -> None:
    everything = run(catalog, ctx(therapy, findings=["gi_symptoms"]))
    rec = run(catalog, ctx(therapy, findings=["gi_symptoms"], exclude=["stool"]))
    assert by_family(rec, "gi_stool") is None
    assert reason(rec, "gi-map") == "excluded_by_preference"
    offered = [p for s in rec.suggestions for p in (s.panel, *s.alternatives)]
    assert all(p.specimen.type != "stool" for p in offered)
    assert families(rec) == set(FAMILIES) - {"gi_stool"}
    assert codes(rec, "safety") == codes(everything, "safety")


def test_excluding_dried_urine_swaps_the_hormone_default_and_narrows_alternatives(
    catalog: Catalog,
) -> None:
    rec = run(catalog, ctx("ketamine", exclude=["dried_urine"]))
    for family in ("hormone", "neurotransmitter"):
        suggestion = by_family(rec, family)
        assert suggestion is not None, family
        assert suggestion.panel.id != DEFAULT_PANEL[family]
        offered = (suggestion.panel, *suggestion.alternatives)
        assert all(p.specimen.type != "dried_urine" for p in offered)
    assert left_out(rec, "dutch-complete") is None


@pytest.mark.parametrize(
    "excluded",
    [
        ["urine"],
        ["serum"],
        ["whole_blood"],
        ["urine", "serum", "whole_blood", "plasma", "stool", "dried_urine", "saliva"],
    ],
)
@pytest.mark.parametrize(
    "therapy,phase,age",
    [
        ("ketamine", "baseline", 34),
        ("esketamine", "induction", 34),
        ("lithium", "baseline", 34),
        ("lithium", "maintenance", 70),
        ("valproate", "induction", 34),
        ("ssri_snri", "induction", 70),
    ],
)
def test_safety_panels_never_disappear_because_of_preferences(
    catalog: Catalog, therapy: str, phase: str, age: int, excluded: list[str]
) -> None:
    plain = codes(run(catalog, ctx(therapy, phase, age=age)), "safety")
    rec = run(
        catalog,
        ctx(therapy, phase, age=age, exclude=excluded, vendors=["Nobody Labs"]),
    )
    expected = plain
    if "urine" in excluded and HCG_URINE in plain:
        expected = (plain - {HCG_URINE}) | {HCG_SERUM}
    assert codes(rec, "safety") == expected
    assert not [s for s in rec.suppressed if catalog.panels[s.panel_id].tier == "safety"]


@pytest.mark.parametrize(
    "vendors,family,offered",
    [
        (
            ["Genova Diagnostics"],
            "gi_stool",
            {"gi-effects-comprehensive", "gi-effects-fundamentals"},
        ),
        (["Diagnostic Solutions Laboratory"], "gi_stool", {"gi-map"}),
        (["zrt laboratory"], "neurotransmitter", {"zrt-neurotransmitter"}),
        (["ZRT Laboratory"], "inflammation", {"zrt-cardiometabolic", "zrt-hs-crp-blood-spot"}),
        (
            ["Doctor's Data", "Precision Analytical"],
            "neurotransmitter",
            {
                "doctors-data-comprehensive-neurotransmitter",
                "doctors-data-neuroadrenal",
                "doctors-data-neurobasic",
            },
        ),
        (
            ["Doctor's Data", "Precision Analytical"],
            "hormone",
            {"dutch-complete", "dutch-adrenal", "dutch-car", "dutch-plus"},
        ),
    ],
)
def test_vendor_preference_narrows_alternatives_and_picks_a_matching_panel(
    catalog: Catalog, vendors: list[str], family: str, offered: set[str]
) -> None:
    suggestion = by_family(run(catalog, ctx("ketamine", vendors=vendors)), family)
    assert suggestion is not None
    assert {suggestion.panel.id, *(p.id for p in suggestion.alternatives)} == offered
    assert suggestion.panel.id not in {p.id for p in suggestion.alternatives}
    if DEFAULT_PANEL[family] in offered:  # the catalog default wins whenever it fits
        assert suggestion.panel.id == DEFAULT_PANEL[family]


def test_vendor_preference_with_no_panel_in_a_family_leaves_it_out(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", vendors=["Genova Diagnostics"]))
    assert families(rec) == {"gi_stool"}
    for family in ("inflammation", "hormone", "neurotransmitter"):
        assert reason(rec, DEFAULT_PANEL[family]) == "excluded_by_preference", family
