"""MAPPING v2 answer fields: preselected, next_due, advisory severity order, ignored codings."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from service.catalog_loader import load_catalog
from service.domain.catalog import Catalog
from service.domain.recommendation import IgnoredCoding
from service.domain.vocabulary import SEVERITY_RANK
from tests.domain.builders import HEPATIC, TODAY, ctx, get, left_out, past_test, run


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_preselected_only_for_safety_essential_or_recommended(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", "baseline", findings=["gi_symptoms"]))
    assert rec.suggestions
    for s in rec.suggestions:
        expected = s.panel.tier == "safety" and s.priority in ("essential", "recommended")
        assert s.preselected is expected, s.panel.id
    assert any(s.preselected for s in rec.suggestions)
    assert any(not s.preselected for s in rec.suggestions)


def test_recently_tested_gives_next_due(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", "induction", recent=[past_test(10, code=HEPATIC)]))
    entry = left_out(rec, "hepatic-function-panel")
    assert entry is not None and entry.reason == "recently_tested"
    assert entry.last_tested == TODAY - dt.timedelta(days=10)
    assert entry.next_due == TODAY + dt.timedelta(days=80)


def test_advisories_are_sorted_critical_first(catalog: Catalog) -> None:
    rec = run(
        catalog,
        ctx("valproate", "baseline", conditions=["G43.909"], findings=["liver_disease"]),
    )
    ranks = [SEVERITY_RANK[a.severity] for a in rec.advisories]
    assert ranks == sorted(ranks)
    assert rec.advisories[0].severity == "critical"
    assert {a.severity for a in rec.advisories} >= {"critical", "warning", "info"}


def test_ignored_codings_pass_through(catalog: Catalog) -> None:
    ignored = (IgnoredCoding(path="conditions[0]", reason="not ICD-10-CM"),)
    context = ctx("ketamine")
    rec = run(catalog, msgspec.structs.replace(context, ignored_codings=ignored))
    assert rec.ignored_codings == ignored
    assert get(rec, HEPATIC).preselected


# --- rule 3: one reason per panel, the first in MAPPING order -------------------------------------


def test_not_indicated_in_phase_wins_over_not_applicable_for_a_minor(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", "maintenance", age=16))
    assert left_out(rec, "hs-crp").reason == "not_indicated_in_phase"  # type: ignore[union-attr]


def test_not_applicable_wins_over_preferences_and_not_requested(catalog: Catalog) -> None:
    rec = run(catalog, ctx("ketamine", age=16, evidence_based_only=True, exclude=["stool"]))
    for panel_id in ("gi-map", "zrt-neurotransmitter", "dutch-complete", "hs-crp"):
        assert left_out(rec, panel_id).reason == "not_applicable", panel_id  # type: ignore[union-attr]


# --- setting and dates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route,take_home", [("oral", True), ("sublingual", True), ("intranasal", True), ("iv", False),
                        ("im", False), (None, False)]
)  # fmt: skip
def test_ketamine_setting_default_by_route(
    catalog: Catalog, route: str | None, take_home: bool
) -> None:
    ids = {a.id for a in run(catalog, ctx("ketamine", "induction", route=route)).advisories}
    assert ("ketamine-take-home-assumed" in ids) is take_home
    assert ("ketamine-take-home" in ids) is take_home


def test_dates_after_as_of_count_as_as_of(catalog: Catalog) -> None:
    """A dose change dated after the request date counts as that date: still titrating."""
    context = ctx("lithium", "maintenance", started_days_ago=900, dose_change_days_ago=-5)
    assert get(run(catalog, context), "14334-7").retest_days == 7


def test_level_drawn_on_the_day_of_the_change_does_not_count(catalog: Catalog) -> None:
    """Closest safe reading of "drawn before the last dose change": the same day does not count
    either (a level needs 5-7 days at the new dose)."""
    context = ctx(
        "lithium",
        "maintenance",
        started_days_ago=900,
        dose_change_days_ago=40,
        recent=[past_test(40, code="14334-7")],
    )
    assert get(run(catalog, context), "14334-7").priority == "essential"


def test_same_input_same_output_with_v2_fields(catalog: Catalog) -> None:
    context = ctx(
        "ketamine",
        "induction",
        route="oral",
        conditions=["F31.2", "K70.30", "I16.0"],
        medications=[("benzodiazepine", 3), ("antipsychotic", 20)],
        recent=[past_test(10, code=HEPATIC, abnormal=True)],
        ignored=["conditions[3]"],
    )
    first, second = run(catalog, context), run(catalog, context)
    assert msgspec.json.encode(first) == msgspec.json.encode(second)
