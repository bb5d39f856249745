"""Cross-cutting rules of MAPPING.md: merging (1), recently tested (2), left-out reasons (3),
evidence (5), order (6), determinism and catalog version (7), and the pregnancy_possible default
of "Vocabulary of a therapy context".
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import re

import msgspec
import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from service.domain.context import RecentTest, TherapyContext
from service.domain.recommendation import Recommendation
from service.domain.vocabulary import PRIORITY_RANK, TIER_RANK
from tests.domain.builders import (
    CBC,
    CMP,
    HCG_SERUM,
    HCG_URINE,
    HEPATIC,
    LITHIUM_LEVEL,
    PHASES,
    SODIUM,
    THERAPIES,
    TODAY,
    TSH,
    URINALYSIS,
    codes,
    ctx,
    describe,
    find,
    get,
    left_out,
    past_test,
    reason,
    run,
)

ALL_FINDINGS = (
    "gi_symptoms",
    "hormonal_symptoms",
    "sleep_disturbance",
    "fatigue",
    "inflammatory_condition",
    "urinary_symptoms",
    "liver_disease",
    "hypertension",
    "substance_use_concern",
)
CONVENTIONAL_GRADES = {
    "expert_consensus",  # v2: McIntyre 2021 and Sanacora 2017 regraded from guideline
    "regulatory_label",
    "guideline",
    "systematic_review",
    "cohort",
    "case_series",
    "clinical_convention",
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def sweep_contexts() -> list[TherapyContext]:
    """Every therapy and phase, with no findings and with all of them, young and old."""
    contexts = []
    for therapy, phase in itertools.product(THERAPIES, PHASES):
        contexts.append(ctx(therapy, phase, sex="female", age=30))
        contexts.append(
            ctx(
                therapy,
                phase,
                sex="female",
                age=70,
                conditions=["F33.2", "F31.5", "G43.909"],
                findings=ALL_FINDINGS,
            )
        )
    return contexts


@pytest.fixture(scope="module")
def sweep(catalog: Catalog) -> list[Recommendation]:
    return [run(catalog, context) for context in sweep_contexts()]


# --- 1. a panel appears at most once; merging -----------------------------------------------------


def test_each_panel_at_most_once_and_never_both_suggested_and_left_out(
    sweep: list[Recommendation],
) -> None:
    for rec in sweep:
        suggested = [s.panel.id for s in rec.suggestions]
        left = [s.panel_id for s in rec.suppressed]
        assert len(suggested) == len(set(suggested)), describe(rec)
        assert len(left) == len(set(left)), describe(rec)
        assert not set(suggested) & set(left), describe(rec)


def test_merge_takes_highest_priority_and_joins_rules_evidence_and_rationales(
    catalog: Catalog,
) -> None:
    hepatic = get(run(catalog, ctx("ketamine", findings=["liver_disease"])), HEPATIC)
    assert hepatic.priority == "essential"
    assert set(hepatic.rules) == {"ketamine-hepatic", "ketamine-hepatic-liver-disease"}
    evidence = [e.id for e in hepatic.evidence]
    assert len(evidence) == len(set(evidence)), "merged evidence is de-duplicated"
    assert {"cotter-2021", "clinical-convention-baseline-workup"} <= set(evidence)
    assert "Liver tests (baseline)" in hepatic.rationale
    assert "Liver disease is recorded" in hepatic.rationale


def test_merge_takes_the_shortest_retest_interval(catalog: Catalog) -> None:
    sodium = get(run(catalog, ctx("lithium", "maintenance", age=70)), SODIUM)
    assert set(sodium.rules) == {
        "lithium-monitoring-renal-sodium",
        "lithium-monitoring-renal-sodium-older",
    }
    assert sodium.retest_days == 90
    assert "Age 70" in sodium.rationale


def test_merged_complementary_escalation_keeps_the_associative_base_text(
    catalog: Catalog,
) -> None:
    crp = get(run(catalog, ctx("ssri_snri", conditions=["F33.2"])), "30522-7")
    assert crp.priority == "consider"  # v2: complementary is always consider
    assert not crp.preselected
    assert set(crp.rules) == {"inflammation-consider", "inflammation-ssri-snri-depression"}
    assert "no panel has been shown to predict" in crp.rationale.lower()


def test_suggestions_carry_their_panel_caveats_and_rule_cautions(
    catalog: Catalog, sweep: list[Recommendation]
) -> None:
    for rec in sweep:
        for s in rec.suggestions:
            expected = set(s.panel.caveats)
            for rule_id in s.rules:
                expected |= set(catalog.rules[rule_id].cautions)
            assert expected <= set(s.cautions), s.panel.id
            assert len(s.cautions) == len(set(s.cautions)), s.panel.id


# --- 2. recently tested ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recent,panel_id,code",
    [
        (past_test(30, code=HEPATIC), "hepatic-function-panel", HEPATIC),
        (past_test(30, code=CMP), "hepatic-function-panel", HEPATIC),  # a CMP satisfies it
        (past_test(30, panel="hepatic-function-panel"), "hepatic-function-panel", HEPATIC),
        (past_test(30, code=URINALYSIS), "urinalysis", URINALYSIS),
        (past_test(30, panel="urinalysis"), "urinalysis", URINALYSIS),
        (past_test(3, code=HCG_URINE), "hcg-urine", HCG_URINE),
        (past_test(3, code=HCG_SERUM), "hcg-urine", HCG_URINE),
        (past_test(100, code="57021-8"), "cbc", CBC),  # CBC with differential satisfies CBC
        (past_test(100, code="11580-8"), "tsh", TSH),  # a TSH method variant
    ],
    ids=[
        "hepatic-loinc",
        "hepatic-by-cmp",
        "hepatic-panel-id",
        "urinalysis-loinc",
        "urinalysis-panel-id",
        "hcg-urine",
        "hcg-serum-satisfies-urine",
        "cbc-with-differential",
        "tsh-variant",
    ],
)
def test_recently_tested_is_left_out_with_the_date(
    catalog: Catalog, recent: RecentTest, panel_id: str, code: str
) -> None:
    rec = run(catalog, ctx("ketamine", conditions=["F33.2"], recent=[recent]))
    assert find(rec, code) is None, describe(rec)
    entry = left_out(rec, panel_id)
    assert entry is not None, describe(rec)
    assert entry.reason == "recently_tested"
    assert entry.last_tested == recent.date
    assert recent.date.isoformat() in entry.detail
    assert entry.rules


def test_serum_fallback_is_suppressed_by_a_recent_urine_hcg(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", exclude=["urine"], recent=[past_test(2, code=HCG_URINE)]))
    assert not {HCG_URINE, HCG_SERUM} & codes(rec)
    assert reason(rec, "hcg-serum") == "recently_tested"


@pytest.mark.parametrize(
    "days_ago,suppressed",
    [(0, True), (1, True), (89, True), (90, False), (91, False), (400, False)],
)
def test_retest_interval_boundary(catalog: Catalog, days_ago: int, suppressed: bool) -> None:
    """Exactly retest_days ago is due again (hepatic panel: 90 days)."""
    rec = run(catalog, ctx("ketamine", recent=[past_test(days_ago, code=HEPATIC)]))
    assert (find(rec, HEPATIC) is None) is suppressed
    assert (reason(rec, "hepatic-function-panel") == "recently_tested") is suppressed


@pytest.mark.parametrize("days_ago,suppressed", [(6, True), (7, False)])
def test_pregnancy_test_boundary(catalog: Catalog, days_ago: int, suppressed: bool) -> None:
    rec = run(catalog, ctx("esketamine", recent=[past_test(days_ago, code=HCG_URINE)]))
    assert (find(rec, HCG_URINE) is None) is suppressed


def test_latest_of_several_recent_tests_counts(catalog: Catalog) -> None:
    recent = [past_test(200, code=HEPATIC), past_test(10, code=CMP), past_test(120, code=HEPATIC)]
    entry = left_out(run(catalog, ctx("ketamine", recent=recent)), "hepatic-function-panel")
    assert entry is not None
    assert entry.last_tested == recent[1].date


@pytest.mark.parametrize(
    "recent",
    [
        past_test(10, code=HEPATIC, system="urn:some-lab:local"),  # same code, other system
        past_test(10, code="2951-2"),  # a sodium says nothing about the liver
        past_test(10, panel="urinalysis"),
        past_test(10, panel="cbc"),
    ],
    ids=["other-system", "other-loinc", "other-panel-id", "cbc-panel-id"],
)
def test_unrelated_recent_test_does_not_suppress(catalog: Catalog, recent: RecentTest) -> None:
    rec = run(catalog, ctx("ketamine", recent=[recent]))
    assert get(rec, HEPATIC).priority == "recommended"


def test_recent_test_of_an_essential_panel_still_suppresses(catalog: Catalog) -> None:
    # v2: a stable patient in maintenance (no titration): 90-day window in the first year.
    context = msgspec.structs.replace(
        ctx("lithium", "maintenance", recent=[past_test(30, code=LITHIUM_LEVEL)]),
        therapy_started=TODAY - dt.timedelta(days=200),
    )
    rec = run(catalog, context)
    assert find(rec, LITHIUM_LEVEL) is None
    assert reason(rec, "lithium-level") == "recently_tested"


def test_baseline_labs_have_a_look_back_too(catalog: Catalog) -> None:
    """v2 (was: no retest interval for lithium baseline labs): every safety panel has a look-back;
    a sodium 2 days old is not repeated."""
    rec = run(catalog, ctx("lithium", "baseline", sex="male", recent=[past_test(2, code=SODIUM)]))
    assert find(rec, SODIUM) is None
    entry = left_out(rec, "sodium")
    assert entry is not None and entry.reason == "recently_tested"
    assert entry.next_due == TODAY + dt.timedelta(days=28)


# --- pregnancy_possible default -------------------------------------------------------------------


@pytest.mark.parametrize(
    "sex,age,stated,expected",
    [
        ("male", 30, None, False),
        ("male", None, None, False),
        ("female", 12, None, True),
        ("female", 34, None, True),
        ("female", 55, None, True),
        ("female", 11, None, False),
        ("female", 56, None, False),
        ("female", None, None, True),
        ("other", 30, None, True),
        ("unknown", None, None, True),
        ("unknown", 70, None, False),
        ("female", 30, False, False),
        ("female", 70, True, True),
        ("male", 30, True, True),
    ],
)
def test_pregnancy_possible_default(
    catalog: Catalog, sex: str, age: int | None, stated: bool | None, expected: bool
) -> None:
    rec = run(catalog, ctx("ketamine", sex=sex, age=age, pregnancy_possible=stated))
    assert (find(rec, HCG_URINE) is not None) is expected, describe(rec)
    assert (reason(rec, "hcg-urine") == "not_applicable") is not expected


# --- 3. every left-out panel has a reason from the vocabulary -------------------------------------


def test_left_out_reasons_are_from_the_vocabulary(sweep: list[Recommendation]) -> None:
    allowed = {
        "recently_tested",
        "excluded_by_preference",
        "not_applicable",
        "not_indicated_in_phase",
        "not_requested",
    }
    seen = set()
    for rec in sweep:
        for entry in rec.suppressed:
            assert entry.reason in allowed
            assert entry.detail and entry.rules
            assert (entry.last_tested is not None) is (entry.reason == "recently_tested")
            seen.add(entry.reason)
    assert {"not_applicable", "not_indicated_in_phase"} <= seen


# --- 5. evidence ----------------------------------------------------------------------------------


def test_every_suggestion_carries_graded_evidence(sweep: list[Recommendation]) -> None:
    for rec in sweep:
        for s in rec.suggestions:
            assert s.evidence, s.panel.id
            for e in s.evidence:
                assert e.grade, e.id
                assert e.doi or e.pmid or e.label or e.url, e.id
                assert not e.retracted, f"{s.panel.id} cites retracted {e.id}"


def test_complementary_evidence_is_association_level_and_says_so(
    sweep: list[Recommendation],
) -> None:
    complementary = [s for rec in sweep for s in rec.suggestions if s.panel.tier == "complementary"]
    assert complementary
    for s in complementary:
        assert {e.grade for e in s.evidence} <= {"association", "critique"}, s.panel.id
        assert re.search(r"associati", s.rationale, re.IGNORECASE), s.panel.id


def test_safety_evidence_is_graded_as_conventional_evidence(sweep: list[Recommendation]) -> None:
    for rec in sweep:
        for s in rec.suggestions:
            if s.panel.tier == "safety":
                assert {e.grade for e in s.evidence} <= CONVENTIONAL_GRADES, s.panel.id


@pytest.mark.parametrize("code", [CBC, TSH])
def test_convention_rows_are_graded_clinical_convention(catalog: Catalog, code: str) -> None:
    suggestion = get(run(catalog, ctx("ketamine", conditions=["F33.2"])), code)
    assert {e.grade for e in suggestion.evidence} == {"clinical_convention"}
    assert "clinical convention" in suggestion.rationale.lower()


def test_retracted_evidence_exists_but_is_never_cited(
    catalog: Catalog, sweep: list[Recommendation]
) -> None:
    retracted = {e.id for e in catalog.evidence.values() if e.retracted}
    assert retracted, "the catalog keeps Hinz 2011 as a retracted record"
    cited = {e.id for rec in sweep for s in rec.suggestions for e in s.evidence}
    assert cited and not cited & retracted


# --- 6. order -------------------------------------------------------------------------------------


def test_order_safety_first_then_priority_then_name(sweep: list[Recommendation]) -> None:
    for rec in sweep:
        keys = [
            (TIER_RANK[s.panel.tier], PRIORITY_RANK[s.priority], s.panel.name)
            for s in rec.suggestions
        ]
        assert keys == sorted(keys), describe(rec)


def test_order_of_a_concrete_vignette(catalog: Catalog) -> None:
    rec = run(
        catalog,
        ctx("ketamine", conditions=["F33.2"], findings=["urinary_symptoms", "gi_symptoms"]),
    )
    # v2: the conventional GI work-up and urinary work-up join; complementary all consider;
    # neurotransmitter only on request.
    assert [s.panel.id for s in rec.suggestions] == [
        "hcg-urine",  # Pregnancy test ... (essential)
        "urinalysis",  # Urinalysis, complete (essential with urinary_symptoms)
        "celiac-serology",  # Celiac serology (recommended with gi_symptoms)
        "creatinine-egfr",  # Creatinine with eGFR (recommended with urinary_symptoms)
        "hepatic-function-panel",  # Hepatic function panel (recommended)
        "urine-culture",  # Urine culture (recommended with urinary_symptoms)
        "urine-drug-screen",  # Urine drug screen (recommended)
        "cbc",  # Complete blood count (consider)
        "fecal-calprotectin",  # Fecal calprotectin (consider)
        "tsh",  # Thyroid-stimulating hormone (consider)
        "dutch-complete",  # DUTCH Complete (consider)
        "gi-map",  # GI-MAP (consider)
        "hs-crp",  # High-sensitivity CRP (consider)
    ]
    assert reason(rec, "zrt-neurotransmitter") == "not_requested"


# --- 7. determinism and catalog version -----------------------------------------------------------


def _encoded(rec: Recommendation) -> bytes:
    return msgspec.json.encode(rec)


def test_same_input_gives_the_same_output(catalog: Catalog) -> None:
    context = ctx(
        "esketamine",
        "induction",
        conditions=["F33.2", "F31.5"],
        findings=["liver_disease", "hormonal_symptoms"],
        recent=[past_test(10, code=CMP)],
    )
    first, second = run(catalog, context), run(catalog, context)
    assert first == second
    assert _encoded(first) == _encoded(second)


@pytest.mark.parametrize("seed", range(5))
def test_output_does_not_depend_on_input_order(catalog: Catalog, seed: int) -> None:
    findings = list(ALL_FINDINGS)
    conditions = ["F33.2", "F31.31", "F41.1", "G43.909"]
    recent = [past_test(10, code=CMP), past_test(40, panel="urinalysis"), past_test(3, code=TSH)]
    reference = run(
        catalog, ctx("ketamine", findings=findings, conditions=conditions, recent=recent)
    )
    shuffler = random.Random(seed)
    for items in (findings, conditions, recent):
        shuffler.shuffle(items)
    shuffled = run(
        catalog, ctx("ketamine", findings=findings, conditions=conditions, recent=recent)
    )
    assert _encoded(shuffled) == _encoded(reference)


def test_response_names_the_catalog_version_and_date(
    catalog: Catalog, sweep: list[Recommendation]
) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", catalog.version)
    assert load_catalog().version == catalog.version
    for rec in sweep:
        assert rec.catalog_version == catalog.version
        assert rec.as_of == TODAY
