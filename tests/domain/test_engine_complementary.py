"""Complementary tier vignettes (MAPPING.md v2 "Complementary tier") and cross-cutting rule 4.

Rewritten for v2. The v1 file encoded: escalation of complementary panels to `recommended` with a
finding, the neurotransmitter panel by default, vendor filters that dropped vendor-neutral panels,
homocysteine and cardiometabolic panels as inflammation alternatives, single-specimen panels, and
complementary panels for minors.
"""

from __future__ import annotations

import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from tests.domain.builders import (
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
    past_test,
    reason,
    run,
)

ALL_THREE = ("ketamine", "esketamine", "ssri_snri")
EXPECTED_FAMILIES = {
    "ketamine": {"inflammation", "hormone", "gi_stool"},
    "esketamine": {"inflammation", "hormone", "gi_stool"},
    "ssri_snri": {"inflammation", "hormone", "gi_stool"},
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
ALL_FINDINGS = [
    "gi_symptoms",
    "hormonal_symptoms",
    "sleep_disturbance",
    "fatigue",
    "inflammatory_condition",
]


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


@pytest.mark.parametrize("therapy", ALL_THREE)
def test_neurotransmitter_only_on_request(catalog: Catalog, therapy: str) -> None:
    rec = run(catalog, ctx(therapy))
    assert reason(rec, "zrt-neurotransmitter") == "not_requested"
    asked = run(catalog, ctx(therapy, request_families=["neurotransmitter"]))
    suggestion = by_family(asked, "neurotransmitter")
    assert suggestion is not None and suggestion.priority == "consider"
    assert not suggestion.preselected
    assert {e.grade for e in suggestion.evidence} == {"critique"}
    assert any("brain levels" in c for c in suggestion.cautions)


@pytest.mark.parametrize("therapy", ["lithium", "tms", "psilocybin"])
def test_request_never_adds_a_family_the_therapy_does_not_get(
    catalog: Catalog, therapy: str
) -> None:
    rec = run(catalog, ctx(therapy, request_families=["neurotransmitter", "gi_stool"]))
    assert families(rec) == EXPECTED_FAMILIES[therapy]


@pytest.mark.parametrize("therapy", [*ALL_THREE, "tms"])
def test_default_panel_with_the_rest_of_the_family_as_alternatives(
    catalog: Catalog, therapy: str
) -> None:
    rec = run(catalog, ctx(therapy, request_families=["neurotransmitter"]))
    for family in EXPECTED_FAMILIES[therapy]:
        suggestion = by_family(rec, family)
        assert suggestion is not None, family
        assert suggestion.panel.id == DEFAULT_PANEL[family]
        alternatives = [p.id for p in suggestion.alternatives]
        assert len(alternatives) == len(set(alternatives))
        assert set(alternatives) == family_panel_ids(catalog, family) - {DEFAULT_PANEL[family]}


def test_inflammation_no_longer_offers_homocysteine_or_cardiometabolic(catalog: Catalog) -> None:
    crp = get(run(catalog, ctx("ketamine")), HS_CRP)
    offered = {p.id for p in crp.alternatives}
    assert not offered & {"homocysteine", "zrt-cardiometabolic", "nutripath-inflammation-profile"}


# --- always consider, never pre-selected ----------------------------------------------------------


@pytest.mark.parametrize("therapy", sorted(EXPECTED_FAMILIES))
@pytest.mark.parametrize("conditions", [[], ["F33.2"]])
def test_complementary_always_consider_never_preselected(
    catalog: Catalog, therapy: str, conditions: list[str]
) -> None:
    rec = run(
        catalog,
        ctx(
            therapy,
            conditions=conditions,
            findings=ALL_FINDINGS,
            request_families=["neurotransmitter"],
        ),
    )
    for s in rec.suggestions:
        if s.panel.tier == "complementary":
            assert s.priority == "consider" and not s.preselected, s.panel.id
            assert s.retest_days == 365
            assert not s.rationale.lower().startswith("order"), s.panel.id


@pytest.mark.parametrize("therapy", ALL_THREE)
def test_findings_escalate_the_conventional_work_up_first(catalog: Catalog, therapy: str) -> None:
    rec = run(catalog, ctx(therapy, findings=["gi_symptoms", "fatigue", "hormonal_symptoms"]))
    safety = [s for s in rec.suggestions if s.panel.tier == "safety"]
    assert {"celiac-serology", "ferritin", "vitamin-b12"} <= {s.panel.id for s in safety}
    assert "conventional work-up" in get(rec, "gi-map").rationale
    assert "conventional work-up" in by_family(rec, "hormone").rationale  # type: ignore[union-attr]
    tiers = [s.panel.tier for s in rec.suggestions]
    assert tiers == sorted(tiers, key=lambda t: t != "safety")


def test_gi_stool_cites_porcari(catalog: Catalog) -> None:
    gi = get(run(catalog, ctx("ketamine", findings=["gi_symptoms"])), "gi-map")
    assert "porcari-2025" in {e.id for e in gi.evidence}


@pytest.mark.parametrize("therapy", sorted(EXPECTED_FAMILIES))
def test_never_at_maintenance(catalog: Catalog, therapy: str) -> None:
    rec = run(catalog, ctx(therapy, "maintenance", findings=ALL_FINDINGS, conditions=["F33.2"]))
    assert families(rec) == set(), describe(rec)
    for family in EXPECTED_FAMILIES[therapy]:
        assert reason(rec, DEFAULT_PANEL[family]) == "not_indicated_in_phase"


# --- minors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("therapy", [*ALL_THREE, "tms", "lithium"])
def test_no_functional_panels_for_a_minor(catalog: Catalog, therapy: str) -> None:
    """Worst output #3: a 16-year-old got two functional panels pre-selected."""
    rec = run(
        catalog,
        ctx(therapy, age=16, findings=ALL_FINDINGS, request_families=["neurotransmitter"]),
    )
    assert families(rec) == set()
    for family in EXPECTED_FAMILIES[therapy]:
        entry = left_out(rec, DEFAULT_PANEL[family])
        assert entry is not None and entry.reason == "not_applicable"
        assert "under 18" in entry.detail


def test_unknown_age_is_not_a_minor(catalog: Catalog) -> None:
    assert families(run(catalog, ctx("ketamine", age=None))) == EXPECTED_FAMILIES["ketamine"]


# --- preferences ----------------------------------------------------------------------------------


@pytest.mark.parametrize("therapy", ALL_THREE)
def test_evidence_based_only_keeps_inflammation_only(catalog: Catalog, therapy: str) -> None:
    rec = run(catalog, ctx(therapy, evidence_based_only=True))
    assert families(rec) == {"inflammation"}
    for family in ("hormone", "gi_stool", "neurotransmitter"):
        # excluded_by_preference comes before not_requested (rule 3)
        assert reason(rec, DEFAULT_PANEL[family]) == "excluded_by_preference", family


def test_excluding_urine_also_excludes_dried_urine(catalog: Catalog) -> None:
    hormone = by_family(run(catalog, ctx("ketamine", exclude=["urine"])), "hormone")
    assert hormone is not None
    offered = {hormone.panel.id, *(p.id for p in hormone.alternatives)}
    assert offered == {"dutch-car", "ayumetrix-adrenal-stress"}


def test_excluding_one_specimen_of_a_multi_specimen_panel_excludes_it(catalog: Catalog) -> None:
    assert catalog.panels["dutch-plus"].specimen.types == ("dried_urine", "saliva")
    hormone = by_family(run(catalog, ctx("ketamine", exclude=["saliva"])), "hormone")
    assert hormone is not None
    offered = {hormone.panel.id, *(p.id for p in hormone.alternatives)}
    assert offered == {"dutch-complete", "dutch-adrenal"}
    crp = get(run(catalog, ctx("ketamine", exclude=["serum"])), "4537-7")  # ESR, whole blood
    assert "quest-basic-inflammation" not in {p.id for p in crp.alternatives}


def test_excluding_stool_leaves_out_gi_stool(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", exclude=["stool"]))
    assert "gi_stool" not in families(rec)
    assert reason(rec, "gi-map") == "excluded_by_preference"


def test_vendor_filter_keeps_vendor_neutral_panels(catalog: Catalog) -> None:
    """Worst output #6: a vendor preference silently dropped the conventional inflammation
    default."""
    rec = run(catalog, ctx("ketamine", vendors=["ZRT Laboratory"]))
    crp = get(rec, HS_CRP)
    offered = {p.id for p in crp.alternatives}
    assert "zrt-hs-crp-blood-spot" in offered and "il-6" in offered
    assert "quest-basic-inflammation" not in offered


def test_vendor_filter_narrows_vendor_branded_families(catalog: Catalog) -> None:
    gi = by_family(run(catalog, ctx("ketamine", vendors=["Genova Diagnostics"])), "gi_stool")
    assert gi is not None
    assert {gi.panel.id, *(p.id for p in gi.alternatives)} == {
        "gi-effects-comprehensive",
        "gi-effects-fundamentals",
    }
    rec = run(catalog, ctx("ketamine", vendors=["Genova Diagnostics"]))
    assert reason(rec, "dutch-complete") == "excluded_by_preference"


def test_family_wide_look_back(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", recent=[past_test(200, code="26881-3")]))  # IL-6
    entry = left_out(rec, "hs-crp")
    assert entry is not None and entry.reason == "recently_tested"
    assert by_family(rec, "inflammation") is None


@pytest.mark.parametrize("excluded", [["urine"], ["serum"], ["urine", "serum", "whole_blood"]])
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
    rec = run(catalog, ctx(therapy, phase, age=age, exclude=excluded, vendors=["Nobody Labs"]))
    expected = plain
    if "urine" in excluded and HCG_URINE in plain:
        expected = (plain - {HCG_URINE}) | {HCG_SERUM}
    assert codes(rec, "safety") == expected
    assert not [s for s in rec.suppressed if catalog.panels[s.panel_id].tier == "safety"]
