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
