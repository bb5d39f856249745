"""Safety tier vignettes (MAPPING.md v2 "Safety tier"): one or more per row.

Each test builds a small patient context, runs the engine on the real catalog and checks the
suggested panels by their codes, with priority, retest interval and pre-selection, or why a panel
was left out. Rewritten for v2 (the v1 file encoded: no urinalysis change after baseline, no
pregnancy test in maintenance, no look-back on baseline labs, a 90-day lithium level always,
KETAU only at baseline).
"""

from __future__ import annotations

import datetime as dt

import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from tests.domain.builders import (
    BMP,
    CALCIUM,
    CBC,
    CMP,
    COAGULATION,
    CREATININE,
    HCG_SERUM,
    HCG_URINE,
    HEPATIC,
    KETAMINE_URINE,
    LITHIUM_LEVEL,
    SODIUM,
    TODAY,
    TSH,
    UDS,
    URINALYSIS,
    URINE_CULTURE,
    VALPROATE_LEVEL,
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

KETAMINES = ("ketamine", "esketamine")
PHASES = ("baseline", "induction", "maintenance")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _check(catalog: Catalog, context, code: str, priority: str, retest: int) -> None:  # type: ignore[no-untyped-def]
    suggestion = get(run(catalog, context), code)
    assert (suggestion.priority, suggestion.retest_days) == (priority, retest), describe(
        run(catalog, context)
    )
    assert suggestion.preselected is (priority != "consider")


# --- (es)ketamine · all: hepatic (CMP satisfies) --------------------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", PHASES)
def test_hepatic_recommended_essential_with_liver_disease(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    _check(catalog, ctx(therapy, phase), HEPATIC, "recommended", 90)
    _check(catalog, ctx(therapy, phase, findings=["liver_disease"]), HEPATIC, "essential", 90)
    rec = run(catalog, ctx(therapy, phase, recent=[past_test(20, code=CMP)]))
    assert reason(rec, "hepatic-function-panel") == "recently_tested"


# --- urinalysis -----------------------------------------------------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
def test_urinalysis_recommended_at_baseline(catalog: Catalog, therapy: str) -> None:
    _check(catalog, ctx(therapy, "baseline"), URINALYSIS, "recommended", 90)


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", ["induction", "maintenance"])
def test_symptom_free_urinalysis_after_baseline_is_consider(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    _check(catalog, ctx(therapy, phase, route="intranasal" if therapy == "esketamine" else "iv"),
           URINALYSIS, "consider", 90)  # fmt: skip


@pytest.mark.parametrize("phase", ["induction", "maintenance"])
def test_urinalysis_recommended_for_take_home_ketamine(catalog: Catalog, phase: str) -> None:
    _check(catalog, ctx("ketamine", phase, route="oral"), URINALYSIS, "recommended", 90)


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", PHASES)
def test_urinary_symptoms_escalate_urinalysis_renal_and_culture(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    context = ctx(therapy, phase, findings=["urinary_symptoms"])
    _check(catalog, context, URINALYSIS, "essential", 30)
    _check(catalog, context, CREATININE, "recommended", 90)
    _check(catalog, context, URINE_CULTURE, "recommended", 30)


def test_urinary_symptoms_from_an_icd10_code(catalog: Catalog) -> None:
    """N30.0 (acute cystitis) in the problem list escalates like the sent finding."""
    _check(catalog, ctx("ketamine", "maintenance", conditions=["N30.00"]), URINALYSIS,
           "essential", 30)  # fmt: skip


def test_bmp_satisfies_creatinine(catalog: Catalog) -> None:
    rec = run(
        catalog, ctx("ketamine", findings=["urinary_symptoms"], recent=[past_test(5, code=BMP)])
    )
    assert find(rec, CREATININE) is None
    assert reason(rec, "creatinine-egfr") == "recently_tested"


# --- pregnancy test: every phase, 7 d at baseline, 30 d after ------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase,retest", [("baseline", 7), ("induction", 30), ("maintenance", 30)])
def test_hcg_every_phase_when_pregnancy_possible(
    catalog: Catalog, therapy: str, phase: str, retest: int
) -> None:
    _check(catalog, ctx(therapy, phase), HCG_URINE, "essential", retest)
    assert "missed period" in get(run(catalog, ctx(therapy, phase)), HCG_URINE).rationale


def test_baseline_hcg_older_than_7_days_is_repeated(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", recent=[past_test(8, code=HCG_URINE)]))
    assert get(rec, HCG_URINE).priority == "essential"
    rec = run(catalog, ctx("ketamine", recent=[past_test(6, code=HCG_URINE)]))
    assert reason(rec, "hcg-urine") == "recently_tested"


@pytest.mark.parametrize("therapy", KETAMINES)
def test_serum_hcg_when_urine_is_excluded(catalog: Catalog, therapy: str) -> None:
    rec = run(catalog, ctx(therapy, "maintenance", exclude=["urine"]))
    assert get(rec, HCG_SERUM).priority == "essential"
    assert find(rec, HCG_URINE) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sex": "male", "age": 30},
        {"sex": "female", "age": 60},
        {"sex": "female", "age": 30, "pregnancy_possible": False},
        {"sex": "female", "age": 30, "pregnant": True},
    ],
    ids=["male", "female-60", "stated-not-possible", "known-pregnant"],
)
def test_pregnancy_test_not_applicable(catalog: Catalog, kwargs: dict) -> None:  # type: ignore[type-arg]
    rec = run(catalog, ctx("ketamine", "induction", **kwargs))
    assert find(rec, HCG_URINE) is None
    assert reason(rec, "hcg-urine") == "not_applicable"


def test_pregnant_wins_over_not_possible_and_male_sex(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", sex="male", pregnant=True, pregnancy_possible=False))
    entry = left_out(rec, "hcg-urine")
    assert entry is not None and "already known" in entry.detail
    assert "ketamine-pregnant" in {a.id for a in rec.advisories}


def test_positive_hcg_in_30_days_counts_as_pregnant(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", recent=[past_test(10, code=HCG_URINE, abnormal=True)]))
    assert reason(rec, "hcg-urine") == "not_applicable"
    assert "ketamine-pregnant" in {a.id for a in rec.advisories}
    old = run(catalog, ctx("ketamine", recent=[past_test(40, code=HCG_URINE, abnormal=True)]))
    assert get(old, HCG_URINE).priority == "essential"


# --- urine drug screen ----------------------------------------------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", ["baseline", "induction"])
def test_uds_baseline_induction(catalog: Catalog, therapy: str, phase: str) -> None:
    _check(catalog, ctx(therapy, phase), UDS, "recommended", 90)


def test_uds_in_maintenance_only_for_take_home(catalog: Catalog) -> None:
    assert find(run(catalog, ctx("ketamine", "maintenance", route="iv")), UDS) is None
    _check(catalog, ctx("ketamine", "maintenance", route="oral"), UDS, "recommended", 90)
    assert find(run(catalog, ctx("esketamine", "maintenance")), UDS) is None


# --- KETAU (ketamine/norketamine urine) -----------------------------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
def test_ketau_at_baseline_with_substance_use(catalog: Catalog, therapy: str) -> None:
    context = ctx(therapy, findings=["substance_use_concern"])
    _check(catalog, context, KETAMINE_URINE, "recommended", 3)
    assert "1-2 days" in get(run(catalog, context), KETAMINE_URINE).rationale


def test_ketau_consider_at_baseline_for_take_home(catalog: Catalog) -> None:
    _check(catalog, ctx("ketamine", route="sublingual"), KETAMINE_URINE, "consider", 3)
    assert find(run(catalog, ctx("ketamine", route="iv")), KETAMINE_URINE) is None


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", ["induction", "maintenance"])
def test_ketau_after_baseline_in_clinic_with_concern(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    route = "intranasal" if therapy == "esketamine" else "iv"
    context = ctx(therapy, phase, route=route, findings=["substance_use_concern"])
    _check(catalog, context, KETAMINE_URINE, "consider", 30)
    assert (
        "3 days after the last supervised dose"
        in get(run(catalog, context), KETAMINE_URINE).rationale
    )


@pytest.mark.parametrize("phase", ["induction", "maintenance"])
def test_ketau_recommended_for_take_home_after_baseline(catalog: Catalog, phase: str) -> None:
    _check(catalog, ctx("ketamine", phase, route="oral"), KETAMINE_URINE, "recommended", 90)


def test_ketau_panel_says_it_sees_only_1_to_2_days(catalog: Catalog) -> None:
    caveats = " ".join(catalog.panels["ketamine-norketamine-urine"].caveats)
    assert "1-2 days" in caveats and "80357" in caveats


# --- CBC (ketamine only), TSH with depression -----------------------------------------------------


@pytest.mark.parametrize("phase", ["baseline", "induction"])
def test_cbc_consider_for_ketamine_only(catalog: Catalog, phase: str) -> None:
    _check(catalog, ctx("ketamine", phase), CBC, "consider", 180)
    assert find(run(catalog, ctx("esketamine", phase)), CBC) is None


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("code", ["F33.2", "F31.81", "F31.4"])
def test_tsh_with_depression_or_bipolar_depression(
    catalog: Catalog, therapy: str, code: str
) -> None:
    _check(catalog, ctx(therapy, conditions=[code]), TSH, "consider", 180)
    assert find(run(catalog, ctx(therapy, conditions=["F41.1"])), TSH) is None


# --- lithium --------------------------------------------------------------------------------------


def test_lithium_baseline(catalog: Catalog) -> None:
    context = ctx("lithium", "baseline")
    for code in (CREATININE, SODIUM, CALCIUM):
        _check(catalog, context, code, "essential", 30)
    for code in (TSH, CBC):
        _check(catalog, context, code, "essential", 90)
    _check(catalog, context, HCG_URINE, "essential", 7)


def test_lithium_baseline_bmp_satisfies_renal_sodium_calcium(catalog: Catalog) -> None:
    """Worst output #5: five baseline labs done yesterday must not all be suggested again."""
    recent = [past_test(1, code=BMP), past_test(1, code=TSH), past_test(1, code=CBC)]
    rec = run(catalog, ctx("lithium", "baseline", sex="male", recent=recent))
    for panel_id in ("creatinine-egfr", "sodium", "calcium", "tsh", "cbc"):
        assert reason(rec, panel_id) == "recently_tested", describe(rec)
    assert [s.panel.tier for s in rec.suggestions] == ["complementary"]


@pytest.mark.parametrize(
    "kwargs,retest",
    [
        ({"started_days_ago": 500}, 180),
        ({"started_days_ago": 200}, 90),  # first treatment year
        ({"started_days_ago": 500, "age": 70}, 90),
        ({"started_days_ago": 500, "medications": [("nsaid", 400)]}, 90),
        ({"started_days_ago": 500, "findings": ["renal_impairment"]}, 90),
        ({"started_days_ago": 500, "conditions": ["N18.4"]}, 90),
        ({"started_days_ago": 500, "dose_change_days_ago": 10}, 7),
        ({"started_days_ago": 500, "findings": ["level_not_stable"]}, 7),
        ({"started_days_ago": 500, "medications": [("ace_inhibitor", 5)]}, 7),
        ({}, 7),  # induction without dates counts as titration
    ],
    ids=[
        "stable",
        "year-1",
        "age-70",
        "nsaid",
        "renal",
        "ckd4-code",
        "dose-change",
        "not-stable",
        "new-interacting",
        "no-dates",
    ],
)
def test_lithium_level_interval(catalog: Catalog, kwargs: dict, retest: int) -> None:  # type: ignore[type-arg]
    phase = "induction" if not kwargs else "maintenance"
    _check(catalog, ctx("lithium", phase, **kwargs), LITHIUM_LEVEL, "essential", retest)


def test_lithium_titration_level_3_days_ago_is_due_in_4(catalog: Catalog) -> None:
    """Worst output #1: during titration the next level is due in days, not ~90."""
    context = ctx(
        "lithium", "induction", dose_change_days_ago=10, recent=[past_test(3, code=LITHIUM_LEVEL)]
    )
    entry = left_out(run(catalog, context), "lithium-level")
    assert entry is not None and entry.reason == "recently_tested"
    assert entry.next_due == TODAY + dt.timedelta(days=4)


def test_level_before_the_last_dose_change_never_counts(catalog: Catalog) -> None:
    context = ctx(
        "lithium",
        "maintenance",
        started_days_ago=500,
        dose_change_days_ago=40,
        recent=[past_test(45, code=LITHIUM_LEVEL)],
    )
    assert get(run(catalog, context), LITHIUM_LEVEL).priority == "essential"


def test_level_before_an_interacting_drug_started_never_counts(catalog: Catalog) -> None:
    context = ctx(
        "lithium",
        "maintenance",
        started_days_ago=500,
        medications=[("thiazide", 40)],
        recent=[past_test(45, code=LITHIUM_LEVEL)],
    )
    assert find(run(catalog, context), LITHIUM_LEVEL) is not None


def test_abnormal_result_never_satisfies(catalog: Catalog) -> None:
    context = ctx(
        "lithium",
        "maintenance",
        started_days_ago=500,
        recent=[past_test(10, code=LITHIUM_LEVEL, abnormal=True)],
    )
    assert find(run(catalog, context), LITHIUM_LEVEL) is not None


@pytest.mark.parametrize(
    "kwargs,retest",
    [
        ({}, 180),
        ({"age": 70}, 90),
        ({"medications": [("arb", 400)]}, 90),
        ({"findings": ["renal_impairment"]}, 90),
    ],
    ids=["plain", "age-70", "arb", "renal"],
)
def test_lithium_renal_sodium_interval(catalog: Catalog, kwargs: dict, retest: int) -> None:  # type: ignore[type-arg]
    context = ctx("lithium", "maintenance", started_days_ago=500, **kwargs)
    _check(catalog, context, CREATININE, "recommended", retest)
    _check(catalog, context, SODIUM, "recommended", retest)
    _check(catalog, context, CALCIUM, "recommended", 180)
    _check(catalog, context, TSH, "recommended", 180)


# --- valproate ------------------------------------------------------------------------------------


def test_valproate_baseline(catalog: Catalog) -> None:
    context = ctx("valproate", "baseline")
    _check(catalog, context, HEPATIC, "essential", 30)
    _check(catalog, context, CBC, "essential", 30)
    _check(catalog, context, HCG_URINE, "essential", 7)
    _check(catalog, context, COAGULATION, "recommended", 30)


def test_valproate_induction(catalog: Catalog) -> None:
    context = ctx("valproate", "induction", started_days_ago=60)
    _check(catalog, context, HEPATIC, "essential", 30)
    _check(catalog, context, CBC, "recommended", 90)
    _check(catalog, context, VALPROATE_LEVEL, "recommended", 90)
    _check(catalog, context, HCG_URINE, "recommended", 365)
    assert "4087-3" in get(run(catalog, context), VALPROATE_LEVEL).rationale


def test_valproate_level_after_dose_change(catalog: Catalog) -> None:
    context = ctx("valproate", "maintenance", started_days_ago=900, dose_change_days_ago=10)
    _check(catalog, context, VALPROATE_LEVEL, "recommended", 28)
    assert find(run(catalog, ctx("valproate", "maintenance", started_days_ago=900)),
                VALPROATE_LEVEL) is None  # fmt: skip
    stale = ctx(
        "valproate",
        "maintenance",
        started_days_ago=900,
        dose_change_days_ago=10,
        recent=[past_test(12, code=VALPROATE_LEVEL)],
    )
    assert find(run(catalog, stale), VALPROATE_LEVEL) is not None


def test_valproate_maintenance(catalog: Catalog) -> None:
    context = ctx("valproate", "maintenance", started_days_ago=900)
    _check(catalog, context, HEPATIC, "recommended", 180)
    _check(catalog, context, CBC, "recommended", 180)
    _check(catalog, context, HCG_URINE, "recommended", 365)


# --- ssri_snri ---------------------------------------------------------------------------------


@pytest.mark.parametrize("phase,retest", [("baseline", 30), ("induction", 14)])
@pytest.mark.parametrize(
    "kwargs",
    [{"age": 70}, {"age": 40, "medications": [("thiazide", None)]}],
    ids=["70", "thiazide"],
)
def test_ssri_sodium_older_or_thiazide(
    catalog: Catalog,
    phase: str,
    retest: int,
    kwargs: dict,  # type: ignore[type-arg]
) -> None:
    _check(catalog, ctx("ssri_snri", phase, **kwargs), SODIUM, "recommended", retest)


def test_ssri_no_sodium_otherwise(catalog: Catalog) -> None:
    assert find(run(catalog, ctx("ssri_snri", age=40)), SODIUM) is None
    assert find(run(catalog, ctx("ssri_snri", age=None)), SODIUM) is None


# --- psilocybin, tms ------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
def test_psilocybin_gets_no_labs_even_with_findings(catalog: Catalog, phase: str) -> None:
    rec = run(
        catalog,
        ctx(
            "psilocybin",
            phase,
            findings=["fatigue", "gi_symptoms"],
            medications=[("antipsychotic", 10)],
        ),
    )
    assert rec.suggestions == ()


def test_tms_gets_no_drug_labs(catalog: Catalog) -> None:
    rec = run(catalog, ctx("tms", "baseline"))
    assert codes(rec, "safety") == set()
