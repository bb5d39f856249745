"""Advisories and safety gates (MAPPING.md v2): one test per row, with its severity, present when
it should be and absent when it should not; critical first.

Rewritten for v2. The v1 file encoded: no severity, no gates for mania/psychotic disorder, vascular
disease, uncontrolled hypertension, minors, co-medications or take-home use, and the
pregnancy-possible advisory only for esketamine.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from service.domain.vocabulary import SEVERITY_RANK
from tests.domain.builders import PHASES, advisory_ids, ctx, run, severity_of

KETAMINES = ("ketamine", "esketamine")
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


def sev(
    catalog: Catalog, advisory: str, therapy: str, phase: str = "baseline", **kw: Any
) -> str | None:
    return severity_of(run(catalog, ctx(therapy, phase, **kw)), advisory)


# --- plain contexts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "therapy,patient,expected",
    [
        ("ketamine", {"sex": "male", "age": 40, "route": "iv"}, {"ketamine-vital-signs"}),
        ("esketamine", {"sex": "male", "age": 40}, ESKETAMINE_ALWAYS),
        (
            "lithium",
            {"sex": "male", "age": 40},
            {"lithium-levels-toxicity-interactions", "lithium-baseline-weight-ecg"},
        ),
        ("valproate", {"sex": "male", "age": 60}, {"valproate-pancreatitis-hyperammonaemia"}),
        ("ssri_snri", {"sex": "female", "age": 40}, set()),
        ("psilocybin", {"sex": "female", "age": 30}, {"psilocybin-investigational"}),
        ("tms", {"sex": "female", "age": 30}, set()),
    ],
)
def test_advisories_of_a_plain_baseline_context(
    catalog: Catalog, therapy: str, patient: dict[str, Any], expected: set[str]
) -> None:
    assert ids(catalog, therapy, "baseline", **patient) == expected


def test_every_advisory_has_id_text_source_and_severity(catalog: Catalog) -> None:
    rec = run(
        catalog,
        ctx("esketamine", conditions=["F31.2", "I16.0"], findings=["liver_disease"], age=16),
    )
    assert len(rec.advisories) >= 8
    for note in rec.advisories:
        assert note.id and note.text.strip() and note.source.strip()
        assert note.severity in ("info", "warning", "critical")
        assert "{" not in note.text, "unfilled template field"
    ranks = [SEVERITY_RANK[a.severity] for a in rec.advisories]
    assert ranks == sorted(ranks), "critical first, then warning, then info"


# --- (es)ketamine gates ---------------------------------------------------------------------------


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("code", ["F31.2", "F31.13", "F30.11", "F31.61", "F31.0", "F30.9"])
def test_current_mania_or_mixed_is_critical(catalog: Catalog, therapy: str, code: str) -> None:
    """Worst output #2: IV ketamine in a current manic episode with psychotic features."""
    rec = run(catalog, ctx(therapy, conditions=[code], route=None))
    assert severity_of(rec, "ketamine-current-mania-mixed") == "critical"
    assert rec.advisories[0].severity == "critical"
    assert rec.suggestions, "gates never remove labs"


@pytest.mark.parametrize("code", ["F30.3", "F30.4", "F31.71", "F31.32"])
def test_remission_or_depression_is_not_the_mania_gate(catalog: Catalog, code: str) -> None:
    assert "ketamine-current-mania-mixed" not in ids(catalog, "ketamine", conditions=[code])


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("code", ["F20.9", "F25.0", "F22", "F29"])
def test_primary_psychotic_disorder_is_critical(catalog: Catalog, therapy: str, code: str) -> None:
    assert sev(catalog, "ketamine-psychotic-disorder", therapy, conditions=[code]) == "critical"


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("code", ["F33.3", "F32.3", "F31.5", "F21"])
def test_psychotic_features_warning(catalog: Catalog, therapy: str, code: str) -> None:
    assert sev(catalog, "ketamine-psychotic-features", therapy, conditions=[code]) == "warning"


@pytest.mark.parametrize("therapy", KETAMINES)
def test_bipolar_warning(catalog: Catalog, therapy: str) -> None:
    assert sev(catalog, "ketamine-esketamine-bipolar", therapy, conditions=["F31.81"]) == "warning"


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize(
    "kw",
    [
        {"findings": ["vascular_contraindication"]},
        {"conditions": ["I67.1"]},
        {"conditions": ["Q28.2"]},
    ],
    ids=["finding", "I67.1", "Q28.2"],
)
def test_vascular_contraindication_critical(catalog: Catalog, therapy: str, kw: dict) -> None:  # type: ignore[type-arg]
    assert sev(catalog, "ketamine-vascular-contraindication", therapy, **kw) == "critical"


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize(
    "kw",
    [{"findings": ["hypertension_uncontrolled"]}, {"conditions": ["I16.1"]}],
    ids=["sent", "I16"],
)
def test_uncontrolled_hypertension_critical_and_counts_as_hypertension(
    catalog: Catalog,
    therapy: str,
    kw: dict,  # type: ignore[type-arg]
) -> None:
    rec = run(catalog, ctx(therapy, **kw))
    assert severity_of(rec, "ketamine-hypertension-uncontrolled") == "critical"
    assert severity_of(rec, "ketamine-esketamine-hypertension") == "warning"


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize("phase", PHASES)
def test_hypertension_warning_from_code_or_finding(
    catalog: Catalog, therapy: str, phase: str
) -> None:
    assert (
        sev(catalog, "ketamine-esketamine-hypertension", therapy, phase, conditions=["I10"])
        == "warning"
    )
    assert "ketamine-hypertension-uncontrolled" not in ids(
        catalog, therapy, phase, conditions=["I10"]
    )


@pytest.mark.parametrize("therapy", KETAMINES)
@pytest.mark.parametrize(
    "cls,advisory",
    [
        ("maoi", "ketamine-maoi-psychostimulant"),
        ("psychostimulant", "ketamine-maoi-psychostimulant"),
        ("benzodiazepine", "ketamine-cns-depressant"),
        ("opioid", "ketamine-cns-depressant"),
    ],
)
def test_co_medication_warnings(catalog: Catalog, therapy: str, cls: str, advisory: str) -> None:
    assert sev(catalog, advisory, therapy, medications=[(cls, None)]) == "warning"


@pytest.mark.parametrize("therapy", KETAMINES)
def test_substance_use_warning_from_code(catalog: Catalog, therapy: str) -> None:
    assert sev(catalog, "ketamine-substance-use", therapy, conditions=["F14.20"]) == "warning"
    assert "ketamine-substance-use" not in ids(catalog, therapy, conditions=["F17.210"])


@pytest.mark.parametrize(
    "therapy,advisory", [("ketamine", "ketamine-minor"), ("esketamine", "esketamine-minor")]
)
def test_minor_warning(catalog: Catalog, therapy: str, advisory: str) -> None:
    """Worst output #3: a 16-year-old got no advisory about age."""
    assert sev(catalog, advisory, therapy, age=16) == "warning"
    assert advisory not in ids(catalog, therapy, age=18)
    assert advisory not in ids(catalog, therapy, age=None)


@pytest.mark.parametrize("therapy", KETAMINES)
def test_pregnancy_rows(catalog: Catalog, therapy: str) -> None:
    assert sev(catalog, "ketamine-pregnancy-possible", therapy) == "warning"
    assert sev(catalog, "ketamine-pregnant", therapy, pregnant=True) == "warning"
    assert "ketamine-pregnancy-possible" not in ids(catalog, therapy, pregnant=True)
    assert sev(catalog, "ketamine-breastfeeding", therapy, conditions=["Z39.1"]) == "warning"
    assert "ketamine-pregnancy-possible" not in ids(catalog, therapy, sex="male")


@pytest.mark.parametrize("phase", ["induction", "maintenance"])
@pytest.mark.parametrize("therapy", KETAMINES)
def test_urinary_symptoms_each_visit_info(catalog: Catalog, therapy: str, phase: str) -> None:
    assert sev(catalog, "ketamine-urinary-each-visit", therapy, phase) == "info"
    assert "ketamine-urinary-each-visit" not in ids(catalog, therapy, "baseline")


def test_take_home_ketamine(catalog: Catalog) -> None:
    """Worst output #4: take-home sublingual ketamine with pregnancy possible."""
    rec = run(catalog, ctx("ketamine", "induction", route="sublingual"))
    assert severity_of(rec, "ketamine-take-home") == "warning"
    assert severity_of(rec, "ketamine-take-home-assumed") == "info"
    assert severity_of(rec, "ketamine-pregnancy-possible") == "warning"
    hcg = [s for s in rec.suggestions if s.panel.id == "hcg-urine"]
    assert hcg and hcg[0].priority == "essential" and hcg[0].retest_days == 30
    stated = ids(catalog, "ketamine", "induction", route="sublingual", setting="take_home")
    assert "ketamine-take-home" in stated and "ketamine-take-home-assumed" not in stated
    clinic = ids(
        catalog, "ketamine", "induction", route="sublingual", setting="clinic_administered"
    )
    assert "ketamine-take-home" not in clinic
    assert "ketamine-take-home" not in ids(catalog, "ketamine", "induction", route="iv")


def test_esketamine_take_home_raises_the_rems_gate(catalog: Catalog) -> None:
    rec = run(catalog, ctx("esketamine", "induction", setting="take_home"))
    assert severity_of(rec, "esketamine-rems-take-home") == "critical"
    assert "ketamine-take-home" not in advisory_ids(rec)
    assert "esketamine-rems-take-home" not in ids(catalog, "esketamine", "induction")


def test_esketamine_older_adults_info(catalog: Catalog) -> None:
    assert sev(catalog, "esketamine-older-adults", "esketamine", "induction", age=70) == "info"
    assert "esketamine-older-adults" not in ids(catalog, "esketamine", "maintenance", age=70)


def test_esketamine_liver_disease_warning(catalog: Catalog) -> None:
    assert (
        sev(catalog, "esketamine-liver-disease", "esketamine", conditions=["K74.60"]) == "warning"
    )


@pytest.mark.parametrize("phase", PHASES)
def test_esketamine_every_context(catalog: Catalog, phase: str) -> None:
    assert ids(catalog, "esketamine", phase, conditions=["F31.2"]) >= ESKETAMINE_ALWAYS


# --- valproate ------------------------------------------------------------------------------------


def test_valproate_pregnant_is_critical(catalog: Catalog) -> None:
    assert sev(catalog, "valproate-pregnant", "valproate", "induction", pregnant=True) == "critical"


@pytest.mark.parametrize(
    "kw", [{"findings": ["liver_disease"]}, {"conditions": ["K70.30"]}], ids=["finding", "K70"]
)
def test_valproate_liver_disease_is_critical(catalog: Catalog, kw: dict) -> None:  # type: ignore[type-arg]
    assert sev(catalog, "valproate-liver-disease", "valproate", **kw) == "critical"


@pytest.mark.parametrize("code", ["E72.20", "E88.40", "G31.81"])
def test_valproate_metabolic_contraindication_is_critical(catalog: Catalog, code: str) -> None:
    assert (
        sev(catalog, "valproate-metabolic-contraindication", "valproate", conditions=[code])
        == "critical"
    )


def test_valproate_pregnancy_possible_and_migraine(catalog: Catalog) -> None:
    assert sev(catalog, "valproate-pregnancy", "valproate") == "warning"
    assert (
        sev(catalog, "valproate-migraine-pregnancy", "valproate", conditions=["G43.909"])
        == "warning"
    )


@pytest.mark.parametrize(
    "age,present", [(30, True), (None, True), (54, True), (55, False), (70, False)]
)
def test_valproate_mhra_two_specialists(catalog: Catalog, age: int | None, present: bool) -> None:
    found = "valproate-mhra-two-specialists" in ids(catalog, "valproate", sex="male", age=age)
    assert found is present
    assert "valproate-mhra-two-specialists" not in ids(catalog, "valproate", "induction", age=age)


def test_valproate_as_co_medication_is_capped_at_warning(catalog: Catalog) -> None:
    rec = run(
        catalog,
        ctx("ketamine", pregnant=True, findings=["liver_disease"], conditions=["E72.20"],
            medications=[("valproate", None)]),
    )  # fmt: skip
    for advisory in (
        "comed-valproate-pregnant",
        "comed-valproate-liver-disease",
        "comed-valproate-metabolic",
    ):
        assert severity_of(rec, advisory) == "warning", advisory
    assert "valproate-mhra-two-specialists" not in advisory_ids(rec)


# --- lithium --------------------------------------------------------------------------------------


def test_lithium_rows(catalog: Catalog) -> None:
    assert (
        sev(
            catalog,
            "lithium-interacting",
            "lithium",
            "maintenance",
            medications=[("thiazide", None)],
        )
        == "warning"
    )
    assert sev(catalog, "lithium-pregnancy", "lithium") == "warning"
    assert sev(catalog, "lithium-pregnant", "lithium", pregnant=True) == "warning"
    assert sev(catalog, "lithium-renal-impairment", "lithium", conditions=["N18.30"]) == "warning"
    assert "lithium-renal-impairment" not in ids(catalog, "lithium", conditions=["N18.2"])
    assert sev(catalog, "lithium-breastfeeding", "lithium", findings=["breastfeeding"]) == "warning"
    assert "lithium-baseline-weight-ecg" not in ids(catalog, "lithium", "maintenance")


def test_lithium_as_co_medication(catalog: Catalog) -> None:
    rec = run(
        catalog,
        ctx(
            "esketamine",
            findings=["renal_impairment"],
            medications=[("lithium", None), ("nsaid", 3)],
        ),
    )
    assert severity_of(rec, "comed-lithium-interacting") == "warning"
    assert severity_of(rec, "comed-lithium-renal") == "warning"
    assert severity_of(rec, "comed-lithium-pregnancy") == "warning"
    assert "lithium-levels-toxicity-interactions" not in advisory_ids(rec)


# --- ssri_snri, every therapy ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["maoi"])
def test_ssri_with_maoi_is_critical(catalog: Catalog, cls: str) -> None:
    assert sev(catalog, "ssri-snri-maoi", "ssri_snri", medications=[(cls, 5)]) == "critical"


def test_ssri_age_rows(catalog: Catalog) -> None:
    assert sev(catalog, "ssri-snri-young", "ssri_snri", age=22) == "warning"
    assert sev(catalog, "ssri-snri-older-sodium", "ssri_snri", age=70) == "info"
    assert "ssri-snri-young" not in ids(catalog, "ssri_snri", age=None)


@pytest.mark.parametrize("therapy", ["ketamine", "lithium", "tms", "psilocybin"])
def test_antipsychotic_clozapine_and_unmapped_medication(catalog: Catalog, therapy: str) -> None:
    rec = run(
        catalog, ctx(therapy, medications=[("clozapine", 30)], ignored=["medications[1].code"])
    )
    assert severity_of(rec, "antipsychotic-metabolic-monitoring") == "info"
    assert severity_of(rec, "clozapine-anc") == "warning"
    assert severity_of(rec, "unmapped-medication") == "info"


def test_psilocybin_investigational(catalog: Catalog) -> None:
    assert sev(catalog, "psilocybin-investigational", "psilocybin") == "info"
