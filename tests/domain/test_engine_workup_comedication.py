"""MAPPING.md v2 "Conventional work-up of a finding", "Co-medication monitoring" and the derived
facts (findings from ICD-10-CM groups, medication-class hierarchy, derived flags)."""

from __future__ import annotations

import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from tests.domain.builders import (
    B12,
    CALPROTECTIN,
    CBC,
    CREATININE,
    FERRITIN,
    FSH,
    HBA1C,
    HEPATIC,
    LIPIDS,
    LITHIUM_LEVEL,
    PROLACTIN,
    TESTOSTERONE,
    TSH,
    TTG_IGA,
    ctx,
    describe,
    find,
    get,
    past_test,
    reason,
    run,
)

WORKUP_THERAPIES = ("ketamine", "esketamine", "lithium", "valproate", "ssri_snri", "tms")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _check(catalog: Catalog, context, code: str, priority: str, retest: int) -> None:  # type: ignore[no-untyped-def]
    rec = run(catalog, context)
    suggestion = get(rec, code)
    assert (suggestion.priority, suggestion.retest_days) == (priority, retest), describe(rec)
    assert suggestion.preselected is (priority != "consider")


# --- work-up of a finding (every therapy but psilocybin, every phase) -----------------------------


@pytest.mark.parametrize("therapy", WORKUP_THERAPIES)
@pytest.mark.parametrize("phase", ["baseline", "maintenance"])
def test_gi_symptoms_work_up(catalog: Catalog, therapy: str, phase: str) -> None:
    context = ctx(therapy, phase, started_days_ago=400, findings=["gi_symptoms"])
    _check(catalog, context, TTG_IGA, "recommended", 365)
    _check(catalog, context, CALPROTECTIN, "consider", 90)
    assert "2458-8" in {c.code for c in get(run(catalog, context), TTG_IGA).panel.codes}


@pytest.mark.parametrize("therapy", WORKUP_THERAPIES)
def test_hormonal_symptoms_work_up_by_sex(catalog: Catalog, therapy: str) -> None:
    male = ctx(
        therapy, "maintenance", sex="male", started_days_ago=400, findings=["hormonal_symptoms"]
    )
    _check(catalog, male, TSH, "recommended", 90)
    _check(catalog, male, TESTOSTERONE, "recommended", 90)
    _check(catalog, male, PROLACTIN, "consider", 90)
    assert find(run(catalog, male), FSH) is None
    female = ctx(therapy, "maintenance", started_days_ago=400, findings=["hormonal_symptoms"])
    _check(catalog, female, FSH, "consider", 90)
    assert find(run(catalog, female), TESTOSTERONE) is None


def test_prolactin_recommended_with_an_antipsychotic(catalog: Catalog) -> None:
    context = ctx("ketamine", findings=["hormonal_symptoms"], medications=[("antipsychotic", None)])
    _check(catalog, context, PROLACTIN, "recommended", 90)


@pytest.mark.parametrize("therapy", WORKUP_THERAPIES)
def test_fatigue_work_up(catalog: Catalog, therapy: str) -> None:
    context = ctx(therapy, "maintenance", started_days_ago=400, findings=["fatigue"])
    for code in (CBC, FERRITIN, TSH):
        _check(catalog, context, code, "recommended", 90)
    _check(catalog, context, B12, "recommended", 365)


def test_ferritin_satisfied_by_its_alternate_code(catalog: Catalog) -> None:
    rec = run(
        catalog, ctx("ketamine", findings=["fatigue"], recent=[past_test(20, code="20567-4")])
    )
    assert reason(rec, "ferritin") == "recently_tested"


# --- co-medication monitoring --------------------------------------------------------------------


@pytest.mark.parametrize("therapy", WORKUP_THERAPIES)
@pytest.mark.parametrize("started,retest", [(30, 84), (400, 365), (None, 365)])
def test_antipsychotic_metabolic_monitoring(
    catalog: Catalog, therapy: str, started: int | None, retest: int
) -> None:
    context = ctx(therapy, medications=[("antipsychotic", started)])
    _check(catalog, context, HBA1C, "recommended", retest)
    _check(catalog, context, LIPIDS, "recommended", retest)


def test_clozapine_counts_as_an_antipsychotic(catalog: Catalog) -> None:
    _check(catalog, ctx("ssri_snri", medications=[("clozapine", 10)]), HBA1C, "recommended", 84)


def test_fasting_glucose_satisfies_hba1c(catalog: Catalog) -> None:
    rec = run(
        catalog,
        ctx(
            "ketamine", medications=[("antipsychotic", 400)], recent=[past_test(30, code="1558-6")]
        ),
    )
    assert reason(rec, "hba1c") == "recently_tested"


@pytest.mark.parametrize("therapy", ["ketamine", "esketamine", "valproate", "ssri_snri", "tms"])
def test_lithium_as_co_medication(catalog: Catalog, therapy: str) -> None:
    context = ctx(therapy, "maintenance", started_days_ago=400, medications=[("lithium", 300)])
    for code in (LITHIUM_LEVEL, CREATININE, TSH):
        _check(catalog, context, code, "consider", 180)


def test_co_medication_level_before_its_start_never_counts(catalog: Catalog) -> None:
    context = ctx(
        "ketamine",
        "maintenance",
        medications=[("lithium", 20)],
        recent=[past_test(25, code=LITHIUM_LEVEL)],
    )
    assert find(run(catalog, context), LITHIUM_LEVEL) is not None
    context = ctx(
        "ketamine",
        "maintenance",
        medications=[("lithium", 20)],
        recent=[past_test(10, code=LITHIUM_LEVEL)],
    )
    assert reason(run(catalog, context), "lithium-level") == "recently_tested"


@pytest.mark.parametrize("therapy", ["ketamine", "esketamine", "lithium", "ssri_snri", "tms"])
def test_valproate_as_co_medication(catalog: Catalog, therapy: str) -> None:
    context = ctx(therapy, "maintenance", started_days_ago=400, medications=[("valproate", None)])
    rec = run(catalog, context)
    for code in (HEPATIC, CBC):
        assert "comed-valproate" in get(rec, code).rules, code
    if therapy in ("lithium", "ssri_snri", "tms"):  # no own hepatic/CBC rule in maintenance
        _check(catalog, context, HEPATIC, "consider", 180)


# --- derived facts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,finding_code",
    [("K70.30", "hepatic"), ("B18.2", "hepatic"), ("F10.20", "ketau"), ("R39.15", "urine")],
)
def test_findings_derived_from_icd10_escalate_essential(
    catalog: Catalog, code: str, finding_code: str
) -> None:
    rec = run(catalog, ctx("ketamine", "baseline", conditions=[code]))
    if finding_code == "hepatic":
        assert get(rec, HEPATIC).priority == "essential"
    elif finding_code == "ketau":
        assert get(rec, "20537-7").priority == "recommended"
    else:
        assert get(rec, "24356-8").priority == "essential"


def test_a_sent_finding_cannot_cancel_a_derived_one(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", conditions=["K74.60"], findings=["fatigue"]))
    assert get(rec, HEPATIC).priority == "essential"


@pytest.mark.parametrize("code", ["N18.2", "F17.210", "N18.1"])
def test_codes_outside_the_groups_set_nothing(catalog: Catalog, code: str) -> None:
    rec = run(catalog, ctx("lithium", "maintenance", started_days_ago=500, conditions=[code]))
    assert get(rec, LITHIUM_LEVEL).retest_days == 180


def test_class_hierarchy_nsaid_counts_as_lithium_interacting(catalog: Catalog) -> None:
    rec = run(
        catalog, ctx("lithium", "maintenance", started_days_ago=500, medications=[("nsaid", 300)])
    )
    assert get(rec, LITHIUM_LEVEL).retest_days == 90
    assert "lithium-interacting" in {a.id for a in rec.advisories}
