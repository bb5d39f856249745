"""The catalog loader: the real catalog loads, and broken catalogs fail naming the file and entry.

Broken catalogs are built by copying the real ``catalog/`` directory to a temporary directory and
then adding a small file or editing one line, so each test shows only what it breaks.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.catalog_loader import DEFAULT_CATALOG_DIR, load_catalog
from service.domain.catalog import Catalog, CatalogError, When, template_fields
from service.domain.vocabulary import RXNORM

EXTRA = "zz-extra.toml"

COMPLEMENTARY_FAMILIES = {"neurotransmitter", "hormone", "gi_stool", "inflammation"}


# --- builders -------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    """A TOML literal for the small values these tests write (JSON strings are valid TOML)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml_entry(section: str, **fields: Any) -> str:
    """One ``[[section]]`` table."""
    lines = [f"[[{section}]]", *(f"{k} = {_toml_value(v)}" for k, v in fields.items())]
    return "\n".join(lines) + "\n\n"


def rule(**overrides: Any) -> str:
    """A valid rule against the real catalog, with fields overridden."""
    fields: dict[str, Any] = {
        "id": "extra-rule",
        "therapies": ["ketamine"],
        "phases": ["baseline"],
        "priority": "consider",
        "retest_days": 90,
        "panels": ["cbc"],
        "evidence": ["clinical-convention-baseline-workup"],
        "rationale": "Extra rule for {therapy} at {phase}.",
    }
    fields.update(overrides)
    return toml_entry("rule", **fields)


def panel(**overrides: Any) -> str:
    """A valid safety panel against the real catalog, with fields overridden."""
    fields: dict[str, Any] = {
        "id": "extra-panel",
        "name": "Extra panel",
        "family": "renal_electrolytes",
        "tier": "safety",
        "vendor": "Any CLIA-certified reference laboratory",
        "specimen": {"type": "serum", "collection": "Venipuncture"},
        "codes": [{"system": "http://loinc.org", "code": "2951-2"}],
    }
    fields.update(overrides)
    return toml_entry("panel", **fields)


def catalog_copy(
    tmp_path: Path,
    extra: str | None = None,
    edits: dict[str, tuple[str, str]] | None = None,
) -> Path:
    """Copy the real catalog, optionally add ``zz-extra.toml`` and replace text in named files."""
    directory = tmp_path / "catalog"
    shutil.copytree(DEFAULT_CATALOG_DIR, directory, ignore=shutil.ignore_patterns("*.md"))
    if extra is not None:
        (directory / EXTRA).write_text(extra, encoding="utf-8")
    for name, (old, new) in (edits or {}).items():
        path = directory / name
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} must occur exactly once in {name}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    return directory


def load_error(directory: Path) -> str:
    with pytest.raises(CatalogError) as info:
        load_catalog(directory)
    return str(info.value)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# --- the real catalog -----------------------------------------------------------------------------


def test_real_catalog_loads(catalog: Catalog) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", catalog.version)
    assert set(catalog.therapies) == {
        "ketamine",
        "esketamine",
        "lithium",
        "valproate",
        "ssri_snri",
        "psilocybin",
        "tms",
    }
    # v2: the finding-setting groups (liver, urinary, substance use, ...) joined the v1 ones.
    assert set(catalog.condition_groups) == {
        "depression",
        "bipolar",
        "bipolar_depression",
        "current_mania_mixed",
        "psychotic_features",
        "psychotic_disorder",
        "ptsd",
        "anxiety",
        "chronic_pain",
        "migraine",
        "liver_disease",
        "urinary_symptoms",
        "substance_use",
        "hypertension",
        "hypertension_crisis",
        "vascular_contraindication",
        "renal_impairment",
        "breastfeeding",
        "valproate_metabolic",
    }
    assert catalog.rules and catalog.files.advisories


def test_complementary_families_have_one_default_and_alternatives(catalog: Catalog) -> None:
    complementary = {f.id for f in catalog.families.values() if f.tier == "complementary"}
    # v2: homocysteine and the cardiometabolic profiles left inflammation for a family no rule
    # suggests.
    assert complementary == COMPLEMENTARY_FAMILIES | {"cardiometabolic"}
    assert not any(r.family == "cardiometabolic" for r in catalog.rules.values())
    exploratory = {f.id for f in catalog.families.values() if f.exploratory}
    assert exploratory == {"neurotransmitter", "hormone", "gi_stool", "cardiometabolic"}
    inflammation = {p.id for p in catalog.panels_by_family["inflammation"]}
    assert not inflammation & {
        "homocysteine",
        "zrt-cardiometabolic",
        "nutripath-inflammation-profile",
    }
    for family in COMPLEMENTARY_FAMILIES:
        panels = catalog.panels_by_family[family]
        assert len(panels) >= 2, family
        assert [p.default for p in panels].count(True) == 1, family
    assert catalog.panels_by_family["inflammation"][0].id == "hs-crp"


def test_rules_cite_only_sound_evidence(catalog: Catalog) -> None:
    for rule in catalog.rules.values():
        grades = {catalog.evidence[e].grade for e in rule.evidence}
        assert not any(catalog.evidence[e].retracted for e in rule.evidence), rule.id
        if rule.family is not None:
            assert grades <= {"association", "critique"}, rule.id


def test_complementary_escalations_come_with_the_plain_disclaimer(catalog: Catalog) -> None:
    """Every complementary rule fires together with an unconditional rule that says, plainly, that
    the evidence is associative and that no panel predicts or monitors ketamine response."""
    family_rules = [r for r in catalog.rules.values() if r.family is not None]
    for rule in family_rules:
        assert "associative" in rule.rationale, rule.id
        base = [
            r
            for r in family_rules
            if r.family == rule.family and r.when == When() and set(rule.phases) <= set(r.phases)
        ]
        covered = {t for r in base for t in r.therapies}
        assert base and set(rule.therapies) <= covered, (
            f"{rule.id} has no unconditional rule for its family"
        )
        assert rule.priority == "consider", rule.id
        assert rule.applicable_if is not None and "minor" in rule.applicable_if.flags_none
        assert any(
            "predict or monitor response to ketamine or esketamine" in r.rationale for r in base
        ), rule.id
        assert "maintenance" in rule.not_indicated_phases, rule.id


def test_age_in_a_template_only_where_age_is_known(catalog: Catalog) -> None:
    """``{age}`` renders as "unknown" without an age, so only age-gated entries may use it."""
    for entry in (*catalog.rules.values(), *catalog.files.advisories):
        text = entry.rationale if hasattr(entry, "rationale") else entry.text
        if "age" in template_fields(text):
            when = entry.when
            assert (
                when.age_min is not None or when.age_max is not None or "minor" in when.flags_any
            ), entry.id


def test_esketamine_codings_exclude_the_unverified_code(catalog: Catalog) -> None:
    codes = {c.code for t in catalog.therapies.values() for c in t.codings}
    assert "2056959" not in codes
    assert catalog.therapy_by_coding[(RXNORM, "2201623")] == "esketamine"
    assert all(c.verification for t in catalog.therapies.values() for c in t.codings)


@pytest.mark.parametrize(
    "code,expected",
    [
        ("F32.2", True),
        ("F32.A", True),
        ("F33.9", True),
        ("F32.4", False),
        ("F32.5", False),
        ("F33.41", False),
        ("F32.81", False),
        ("F31.4", False),
    ],
)
def test_depression_group_leaves_out_remission_codes(
    catalog: Catalog, code: str, expected: bool
) -> None:
    assert catalog.condition_groups["depression"].matches(code) is expected


def test_prefix_groups(catalog: Catalog) -> None:
    assert catalog.condition_groups["bipolar"].matches("F31.9")
    assert catalog.condition_groups["anxiety"].matches("F41.1")
    assert catalog.condition_groups["migraine"].matches("G43.709")
    assert not catalog.condition_groups["chronic_pain"].matches("G89.3")


# --- rejections -----------------------------------------------------------------------------------


def test_duplicate_id(tmp_path: Path) -> None:
    message = load_error(catalog_copy(tmp_path, rule() + rule()))
    assert f"{EXTRA}: rule 'extra-rule': duplicate id" in message


def test_unknown_panel_in_rule(tmp_path: Path) -> None:
    message = load_error(catalog_copy(tmp_path, rule(panels=["no-such-panel"])))
    assert f"{EXTRA}: rule 'extra-rule': unknown panel 'no-such-panel'" in message


def test_unknown_evidence(tmp_path: Path) -> None:
    message = load_error(catalog_copy(tmp_path, rule(evidence=["no-such-evidence"])))
    assert f"{EXTRA}: rule 'extra-rule': unknown evidence 'no-such-evidence'" in message


def test_unknown_template_field(tmp_path: Path) -> None:
    message = load_error(catalog_copy(tmp_path, rule(rationale="For {patient_name}.")))
    assert f"{EXTRA}: rule 'extra-rule': unknown template field(s) ['patient_name']" in message


def test_bad_loinc_check_digit(tmp_path: Path) -> None:
    bad = panel(codes=[{"system": "http://loinc.org", "code": "2951-3"}])
    message = load_error(catalog_copy(tmp_path, bad))
    assert f"{EXTRA}: panel 'extra-panel': '2951-3' is not a valid LOINC code" in message


def test_bad_loinc_check_digit_in_a_real_file(tmp_path: Path) -> None:
    edit = {"panels-safety.toml": ('code = "14334-7"', 'code = "14334-8"')}
    message = load_error(catalog_copy(tmp_path, edits=edit))
    assert "panels-safety.toml: panel 'lithium-level': '14334-8' is not a valid LOINC" in message


def test_unknown_condition_group(tmp_path: Path) -> None:
    bad = rule(when={"condition_groups_any": ["no_such_group"]})
    message = load_error(catalog_copy(tmp_path, bad))
    assert f"{EXTRA}: rule 'extra-rule': unknown condition group(s) ['no_such_group']" in message


def test_rule_without_retest_window(tmp_path: Path) -> None:
    """MAPPING v2: every panel has a look-back; the loader refuses the contradiction."""
    extra = rule().replace("retest_days = 90\n", "")
    message = load_error(catalog_copy(tmp_path, extra))
    assert f"{EXTRA}: rule 'extra-rule': cites cbc with no retest window" in message


def test_complementary_rule_above_consider(tmp_path: Path) -> None:
    extra = rule(panels=[], family="inflammation", priority="recommended")
    extra = extra.replace("panels = []\n", "")
    message = load_error(catalog_copy(tmp_path, extra))
    assert "complementary panels are always 'consider'" in message


def test_unknown_medication_class(tmp_path: Path) -> None:
    message = load_error(
        catalog_copy(tmp_path, rule(when={"medication_classes_any": ["nootropic"]}))
    )
    assert f"{EXTRA}: rule 'extra-rule': unknown medication class(es) ['nootropic']" in message


def test_medication_class_cycle(tmp_path: Path) -> None:
    extra = toml_entry(
        "medication_class", id="nsaid-loop", name="x", includes=["lithium_interacting"]
    )
    extra = extra.replace('id = "nsaid-loop"', 'id = "nsaid_loop"')
    edit = {"medications.toml": ('includes = ["nsaid", ', 'includes = ["nsaid_loop", "nsaid", ')}
    message = load_error(catalog_copy(tmp_path, extra, edits=edit))
    assert "includes itself (a cycle)" in message


def test_level_of_unknown(tmp_path: Path) -> None:
    edit = {"panels-safety.toml": ('level_of = "lithium"', 'level_of = "unobtainium"')}
    message = load_error(catalog_copy(tmp_path, edits=edit))
    assert "panel 'lithium-level': level_of unknown 'unobtainium'" in message


def test_advisory_needs_a_severity(tmp_path: Path) -> None:
    edit = {
        "advisories.toml": (
            'severity = "critical"\nwhen = { condition_groups_any = ["current_mania_mixed"] }',
            'when = { condition_groups_any = ["current_mania_mixed"] }',
        )
    }
    message = load_error(catalog_copy(tmp_path, edits=edit))
    assert "advisory 'ketamine-current-mania-mixed'" in message and "severity" in message


def test_retracted_evidence_cited(tmp_path: Path) -> None:
    message = load_error(catalog_copy(tmp_path, rule(evidence=["hinz-2011"])))
    assert f"{EXTRA}: rule 'extra-rule': cites retracted evidence 'hinz-2011'" in message


def test_esketamine_unverified_rxnorm_code(tmp_path: Path) -> None:
    edit = {"therapies.toml": ('code = "2201623"', 'code = "2056959"')}
    message = load_error(catalog_copy(tmp_path, edits=edit))
    assert "therapies.toml: therapy 'esketamine': RxNorm 2056959" in message


def test_unknown_top_level_section(tmp_path: Path) -> None:
    extra = toml_entry("medication", id="x")
    message = load_error(catalog_copy(tmp_path, extra))
    assert f"{EXTRA}: unknown section 'medication'" in message


def test_unknown_field_in_entry(tmp_path: Path) -> None:
    message = load_error(catalog_copy(tmp_path, rule(prioritee="consider")))
    assert f"{EXTRA}: rule 'extra-rule':" in message
    assert "prioritee" in message


def test_invalid_toml(tmp_path: Path) -> None:
    message = load_error(catalog_copy(tmp_path, '[[rule]\nid = "broken'))
    assert message.startswith(f"{EXTRA}: not valid TOML")
    assert "line 1" in message


@pytest.mark.parametrize(
    "old,new",
    [
        ('default = true\nvendor = "Diagnostic', 'vendor = "Diagnostic'),
        ('id = "gi-effects-comprehensive"\n', 'id = "gi-effects-comprehensive"\ndefault = true\n'),
    ],
    ids=["no-default", "two-defaults"],
)
def test_complementary_family_needs_exactly_one_default(tmp_path: Path, old: str, new: str) -> None:
    edit = {"panels-complementary.toml": (old, new)}
    message = load_error(catalog_copy(tmp_path, edits=edit))
    assert "families.toml: family 'gi_stool': needs exactly one default panel" in message


# --- version --------------------------------------------------------------------------------------


def test_version_is_stable_and_follows_content(tmp_path: Path, catalog: Catalog) -> None:
    assert load_catalog().version == catalog.version
    directory = catalog_copy(tmp_path)
    assert load_catalog(directory).version == catalog.version  # content hash, not path
    with (directory / "evidence.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n# a comment changes the content\n")
    changed = load_catalog(directory).version
    assert changed != catalog.version
    assert load_catalog(directory).version == changed
