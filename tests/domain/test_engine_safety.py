"""Safety tier vignettes: one or more per row of MAPPING.md "Safety tier".

Each test builds a small patient context, runs the engine on the real catalog and checks the
suggested panels by their codes, with priority and retest interval, or why a panel was left out.
"""

from __future__ import annotations

import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from tests.domain.builders import (
    CALCIUM,
    CBC,
    CREATININE,
    EGFR,
    HCG_SERUM,
    HCG_URINE,
    HEPATIC,
    KETAMINE_URINE,
    LITHIUM_LEVEL,
    NORKETAMINE_URINE,
    SODIUM,
    TSH,
    UDS,
    URINALYSIS,
    advisory_ids,
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
DOSING = ("baseline", "induction")
LITHIUM_MONITORING = (CREATININE, SODIUM, CALCIUM, TSH)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# --- ketamine, esketamine · baseline, induction, maintenance: hepatic and urinalysis --------------


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", ["baseline", "induction", "maintenance"])
@pytest.mark.parametrize(
    "code,finding", [(HEPATIC, "liver_disease"), (URINALYSIS, "urinary_symptoms")]
)
def test_hepatic_and_urinalysis_recommended_and_essential_with_their_finding(
    catalog: Catalog, therapy: str, phase: str, code: str, finding: str
) -> None:
    plain = get(run(catalog, ctx(therapy, phase)), code)
    assert (plain.priority, plain.retest_days) == ("recommended", 90)

    escalated = get(run(catalog, ctx(therapy, phase, findings=[finding])), code)
    assert (escalated.priority, escalated.retest_days) == ("essential", 90)


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize(
    "code,other_finding", [(HEPATIC, "urinary_symptoms"), (URINALYSIS, "liver_disease")]
)
def test_the_other_finding_does_not_escalate(
    catalog: Catalog, therapy: str, code: str, other_finding: str
) -> None:
    assert get(run(catalog, ctx(therapy, findings=[other_finding])), code).priority == (
        "recommended"
    )


@pytest.mark.parametrize("therapy", KETAMINES)
def test_maintenance_is_only_hepatic_and_urinalysis(catalog: Catalog, therapy: str) -> None:
    rec = run(
        catalog,
        ctx(
            therapy,
            "maintenance",
            conditions=["F33.2"],
            findings=["substance_use_concern", "liver_disease"],
        ),
    )
    assert codes(rec, "safety") == {HEPATIC, URINALYSIS}, describe(rec)
    assert get(rec, HEPATIC).priority == "essential"
    assert get(rec, URINALYSIS).priority == "recommended"


# --- ketamine, esketamine · pregnancy test --------------------------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", DOSING)
def test_urine_hcg_essential_when_pregnancy_possible(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    rec = run(catalog, ctx(therapy, phase, sex="female", age=34))
    hcg = get(rec, HCG_URINE)
    assert (hcg.priority, hcg.retest_days) == ("essential", 7)
    assert find(rec, HCG_SERUM) is None


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", DOSING)
def test_serum_hcg_when_urine_is_excluded(catalog: Catalog, therapy: str, phase: str) -> None:
    rec = run(catalog, ctx(therapy, phase, exclude=["urine"]))
    hcg = get(rec, HCG_SERUM)
    assert (hcg.priority, hcg.retest_days) == ("essential", 7)
    assert find(rec, HCG_URINE) is None


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", DOSING)
@pytest.mark.parametrize(
    "patient",
    [
        {"sex": "male", "age": 34},
        {"sex": "female", "age": 60},
        {"sex": "female", "age": 34, "pregnancy_possible": False},
    ],
    ids=["male", "female-60", "stated-not-possible"],
)
def test_pregnancy_test_not_applicable_when_pregnancy_impossible(
    catalog: Catalog, therapy: str, phase: str, patient: dict[str, object]
) -> None:
    rec = run(catalog, ctx(therapy, phase, **patient))  # type: ignore[arg-type]
    assert find(rec, HCG_URINE) is None
    assert find(rec, HCG_SERUM) is None
    entry = left_out(rec, "hcg-urine")
    assert entry is not None, describe(rec)
    assert entry.reason == "not_applicable"
    assert "pregnancy" in entry.detail.lower()


@pytest.mark.parametrize("therapy", KETAMINES)
def test_no_pregnancy_test_at_maintenance(catalog: Catalog, therapy: str) -> None:
    rec = run(catalog, ctx(therapy, "maintenance"))
    assert not {HCG_URINE, HCG_SERUM} & codes(rec)
    assert left_out(rec, "hcg-urine") is None


# --- ketamine, esketamine · urine drug screen -----------------------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", DOSING)
def test_urine_drug_screen_recommended_with_ketamine_caution(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    uds = get(run(catalog, ctx(therapy, phase)), UDS)
    assert (uds.priority, uds.retest_days) == ("recommended", 90)
    assert any("not detect ketamine" in c.lower() for c in uds.cautions), uds.cautions


@pytest.mark.parametrize("therapy", KETAMINES)
def test_no_urine_drug_screen_at_maintenance(catalog: Catalog, therapy: str) -> None:
    assert find(run(catalog, ctx(therapy, "maintenance")), UDS) is None


# --- ketamine, esketamine · ketamine/norketamine confirmation -------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
def test_ketamine_confirmation_at_baseline_with_substance_use_concern(
    catalog: Catalog, therapy: str
) -> None:
    rec = run(catalog, ctx(therapy, "baseline", findings=["substance_use_concern"]))
    confirmation = get(rec, KETAMINE_URINE)
    assert {KETAMINE_URINE, NORKETAMINE_URINE} <= {c.code for c in confirmation.panel.codes}
    assert (confirmation.priority, confirmation.retest_days) == ("recommended", None)


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", ["induction", "maintenance"])
def test_ketamine_confirmation_not_indicated_once_dosing_started(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    rec = run(catalog, ctx(therapy, phase, findings=["substance_use_concern"]))
    assert find(rec, KETAMINE_URINE) is None
    assert reason(rec, "ketamine-norketamine-urine") == "not_indicated_in_phase"


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", DOSING)
def test_no_ketamine_confirmation_without_substance_use_concern(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    rec = run(catalog, ctx(therapy, phase, findings=["liver_disease", "hypertension"]))
    assert not {KETAMINE_URINE, NORKETAMINE_URINE} & codes(rec)
    assert left_out(rec, "ketamine-norketamine-urine") is None


# --- CBC: ketamine, not esketamine ----------------------------------------------------------------


@pytest.mark.parametrize("phase", DOSING)
def test_cbc_consider_for_ketamine(catalog: Catalog, phase: str) -> None:
    cbc = get(run(catalog, ctx("ketamine", phase)), CBC)
    assert (cbc.priority, cbc.retest_days) == ("consider", 180)


@pytest.mark.parametrize("phase", ["baseline", "induction", "maintenance"])
def test_no_cbc_for_esketamine(catalog: Catalog, phase: str) -> None:
    rec = run(catalog, ctx("esketamine", phase, conditions=["F33.2"]))
    assert find(rec, CBC) is None
    assert left_out(rec, "cbc") is None


def test_no_cbc_for_ketamine_at_maintenance(catalog: Catalog) -> None:
    assert find(run(catalog, ctx("ketamine", "maintenance")), CBC) is None


# --- TSH with depression or bipolar depression ----------------------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", DOSING)
@pytest.mark.parametrize(
    "condition,expected",
    [
        ("F33.2", True),  # recurrent depression, severe: active episode
        ("F32.A", True),  # depression, unspecified
        ("F32.4", False),  # single episode, partial remission
        ("F33.41", False),  # recurrent, partial remission
        ("F31.31", True),  # bipolar, current episode depressed, mild
        ("F31.5", True),  # bipolar depression with psychotic features
        ("F31.9", False),  # bipolar, unspecified: bipolar but not bipolar depression
        ("F41.1", False),  # generalised anxiety
    ],
)
def test_tsh_only_with_depression_or_bipolar_depression(
    catalog: Catalog, therapy: str, phase: str, condition: str, expected: bool
) -> None:
    rec = run(catalog, ctx(therapy, phase, conditions=[condition]))
    tsh = find(rec, TSH)
    if expected:
        assert tsh is not None, describe(rec)
        assert (tsh.priority, tsh.retest_days) == ("consider", 180)
    else:
        assert tsh is None, describe(rec)


@pytest.mark.parametrize("therapy", KETAMINES)
def test_no_tsh_at_maintenance(catalog: Catalog, therapy: str) -> None:
    assert find(run(catalog, ctx(therapy, "maintenance", conditions=["F33.2"])), TSH) is None


# --- ketamine, esketamine · the whole safety set --------------------------------------------------


@pytest.mark.parametrize(
    "therapy,expected",
    [
        ("ketamine", {HEPATIC, URINALYSIS, HCG_URINE, UDS, CBC}),
        ("esketamine", {HEPATIC, URINALYSIS, HCG_URINE, UDS}),
    ],
)
def test_ketamine_baseline_safety_set_without_findings(
    catalog: Catalog, therapy: str, expected: set[str]
) -> None:
    assert codes(run(catalog, ctx(therapy)), "safety") == expected


# --- lithium --------------------------------------------------------------------------------------


def test_lithium_baseline_labs_essential_without_retest(catalog: Catalog) -> None:
    rec = run(catalog, ctx("lithium", "baseline", sex="male", age=40))
    assert codes(rec, "safety") == {CREATININE, EGFR, SODIUM, CALCIUM, TSH, CBC}, describe(rec)
    for code in (CREATININE, EGFR, SODIUM, CALCIUM, TSH, CBC):
        assert (get(rec, code).priority, get(rec, code).retest_days) == ("essential", None)
    assert get(rec, CREATININE) is get(rec, EGFR), "creatinine and eGFR are one panel"
    assert reason(rec, "hcg-urine") == "not_applicable"


def test_lithium_baseline_pregnancy_test_when_possible(catalog: Catalog) -> None:
    rec = run(catalog, ctx("lithium", "baseline", sex="female", age=30))
    hcg = get(rec, HCG_URINE)
    assert (hcg.priority, hcg.retest_days) == ("essential", 7)
    assert get(run(catalog, ctx("lithium", exclude=["urine"])), HCG_SERUM).priority == ("essential")


@pytest.mark.parametrize("phase", ["induction", "maintenance"])
@pytest.mark.parametrize("age,interval", [(40, 180), (64, 180), (65, 90), (70, 90), (None, 180)])
def test_lithium_monitoring(catalog: Catalog, phase: str, age: int | None, interval: int) -> None:
    rec = run(catalog, ctx("lithium", phase, sex="female", age=age))
    level = get(rec, LITHIUM_LEVEL)
    assert (level.priority, level.retest_days) == ("essential", 90)
    for code in LITHIUM_MONITORING:
        monitoring = get(rec, code)
        assert (monitoring.priority, monitoring.retest_days) == ("recommended", interval), code
    assert codes(rec, "safety") == {LITHIUM_LEVEL, CREATININE, EGFR, SODIUM, CALCIUM, TSH}
    assert find(rec, HCG_URINE) is None


@pytest.mark.parametrize("phase", ["induction", "maintenance"])
@pytest.mark.parametrize(
    "code,panel_id",
    [
        (CREATININE, "creatinine-egfr"),
        (EGFR, "creatinine-egfr"),
        (SODIUM, "sodium"),
        (CALCIUM, "calcium"),
        (TSH, "tsh"),
    ],
)
@pytest.mark.parametrize("age,suppressed", [(70, False), (40, True)])
def test_lithium_monitoring_tested_120_days_ago(
    catalog: Catalog, phase: str, code: str, panel_id: str, age: int, suppressed: bool
) -> None:
    """120 days ago is outside the 90-day interval at 70, inside the 180-day one at 40."""
    rec = run(catalog, ctx("lithium", phase, age=age, recent=[past_test(120, code=code)]))
    if suppressed:
        assert find(rec, code) is None
        entry = left_out(rec, panel_id)
        assert entry is not None, describe(rec)
        assert (entry.reason, entry.last_tested) == ("recently_tested", past_test(120).date)
    else:
        assert get(rec, code).retest_days == 90
        assert left_out(rec, panel_id) is None
    assert get(rec, LITHIUM_LEVEL).priority == "essential"


# --- valproate ------------------------------------------------------------------------------------


def test_valproate_baseline(catalog: Catalog) -> None:
    rec = run(catalog, ctx("valproate", "baseline", sex="female", age=28))
    assert codes(rec, "safety") == {HEPATIC, CBC, HCG_URINE}, describe(rec)
    assert (get(rec, HEPATIC).priority, get(rec, HEPATIC).retest_days) == ("essential", None)
    assert (get(rec, CBC).priority, get(rec, CBC).retest_days) == ("essential", None)
    assert (get(rec, HCG_URINE).priority, get(rec, HCG_URINE).retest_days) == ("essential", 7)


def test_valproate_baseline_pregnancy_not_applicable_for_men(catalog: Catalog) -> None:
    rec = run(catalog, ctx("valproate", "baseline", sex="male", age=28))
    assert codes(rec, "safety") == {HEPATIC, CBC}
    assert reason(rec, "hcg-urine") == "not_applicable"


def test_valproate_induction(catalog: Catalog) -> None:
    rec = run(catalog, ctx("valproate", "induction", sex="female", age=28))
    assert codes(rec, "safety") == {HEPATIC, CBC}, describe(rec)
    assert (get(rec, HEPATIC).priority, get(rec, HEPATIC).retest_days) == ("essential", 30)
    assert (get(rec, CBC).priority, get(rec, CBC).retest_days) == ("recommended", 90)


def test_valproate_maintenance(catalog: Catalog) -> None:
    rec = run(catalog, ctx("valproate", "maintenance", sex="female", age=28))
    assert codes(rec, "safety") == {HEPATIC, CBC}, describe(rec)
    for code in (HEPATIC, CBC):
        assert (get(rec, code).priority, get(rec, code).retest_days) == ("recommended", 180)


# --- ssri_snri ------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase,interval", [("baseline", None), ("induction", 14)])
@pytest.mark.parametrize("age", [65, 80])
def test_ssri_snri_sodium_from_65(
    catalog: Catalog, phase: str, interval: int | None, age: int
) -> None:
    rec = run(catalog, ctx("ssri_snri", phase, age=age))
    assert codes(rec, "safety") == {SODIUM}, describe(rec)
    assert (get(rec, SODIUM).priority, get(rec, SODIUM).retest_days) == ("recommended", interval)


@pytest.mark.parametrize(
    "phase,age",
    [
        ("baseline", 64),
        ("induction", 64),
        ("baseline", None),
        ("induction", None),
        ("maintenance", 70),
    ],
)
def test_ssri_snri_no_safety_labs_otherwise(catalog: Catalog, phase: str, age: int | None) -> None:
    rec = run(catalog, ctx("ssri_snri", phase, age=age))
    assert codes(rec, "safety") == set(), describe(rec)


# --- psilocybin and tms ---------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["baseline", "induction", "maintenance"])
def test_psilocybin_no_labs_advisory_only(catalog: Catalog, phase: str) -> None:
    rec = run(
        catalog,
        ctx(
            "psilocybin",
            phase,
            conditions=["F33.2"],
            findings=["liver_disease", "gi_symptoms", "inflammatory_condition"],
        ),
    )
    assert rec.suggestions == ()
    assert rec.suppressed == ()
    assert advisory_ids(rec) == {"psilocybin-investigational"}


@pytest.mark.parametrize("phase", ["baseline", "induction", "maintenance"])
def test_tms_no_safety_labs(catalog: Catalog, phase: str) -> None:
    rec = run(
        catalog,
        ctx("tms", phase, conditions=["F33.2"], findings=["liver_disease", "urinary_symptoms"]),
    )
    assert codes(rec, "safety") == set(), describe(rec)
    assert not [s for s in rec.suppressed if s.panel_id in {"hcg-urine", "hepatic-function-panel"}]
