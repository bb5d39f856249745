"""Small builders for the engine vignette tests: a context, a recent test, and lookups.

The tests name panels by the codes they are ordered with (``suggestion.panel.codes``), mostly
LOINC, so a catalog edit that swaps a code is caught. Left-out panels carry no codes, so they are
looked up by panel id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from service.domain.catalog import Catalog
from service.domain.context import Medication, Preferences, RecentTest, TherapyContext
from service.domain.engine import recommend
from service.domain.recommendation import IgnoredCoding, Recommendation, Suggestion, Suppressed
from service.domain.vocabulary import LOINC

TODAY = dt.date(2025, 6, 2)

# --- codes of the safety panels (MAPPING.md "Safety tier") ----------------------------------------
HEPATIC = "24325-3"
CMP = "24323-8"
URINALYSIS = "24356-8"
HCG_URINE = "2106-3"
HCG_SERUM = "2110-5"
UDS = "urine-drug-screen-immunoassay"  # no verified LOINC: local code urn:labrec:local
KETAMINE_URINE = "20537-7"
NORKETAMINE_URINE = "18322-8"
CBC = "58410-2"
TSH = "3016-3"
CREATININE = "2160-0"
EGFR = "98979-8"
SODIUM = "2951-2"
CALCIUM = "17861-6"
LITHIUM_LEVEL = "14334-7"
HS_CRP = "30522-7"
# v2 panels
BMP = "24321-2"
URINE_CULTURE = "630-4"
TTG_IGA = "46128-5"
CALPROTECTIN = "38445-3"
TESTOSTERONE = "2986-8"
FSH = "15067-2"
PROLACTIN = "2842-3"
FERRITIN = "2276-4"
B12 = "2132-9"
VALPROATE_LEVEL = "4086-5"
HBA1C = "4548-4"
LIPIDS = "24331-1"
COAGULATION = "pt-inr"  # local code until a LOINC is verified

THERAPIES = ("ketamine", "esketamine", "lithium", "valproate", "ssri_snri", "psilocybin", "tms")
PHASES = ("baseline", "induction", "maintenance")
FAMILIES = ("neurotransmitter", "hormone", "gi_stool", "inflammation")


def ctx(
    therapy: str = "ketamine",
    phase: str = "baseline",
    sex: str = "female",
    age: int | None = 34,
    *,
    conditions: Iterable[str] = (),
    findings: Iterable[str] = (),
    recent: Iterable[RecentTest] = (),
    exclude: Iterable[str] = (),
    evidence_based_only: bool = False,
    vendors: Iterable[str] = (),
    pregnancy_possible: bool | None = None,
    route: str | None = None,
    pregnant: bool | None = None,
    setting: str | None = None,
    started_days_ago: int | None = None,
    dose_change_days_ago: int | None = None,
    medications: Iterable[tuple[str, int | None]] = (),
    request_families: Iterable[str] = (),
    ignored: Iterable[str] = (),
) -> TherapyContext:
    """A resolved therapy context; defaults to a 34-year-old woman at ketamine baseline.

    ``medications`` are (class id, days since started or None); ``ignored`` are paths of
    codings the edge could not map.
    """
    return TherapyContext(
        therapy=therapy,
        phase=phase,  # type: ignore[arg-type]
        sex=sex,  # type: ignore[arg-type]
        route=route,  # type: ignore[arg-type]
        condition_codes=tuple(conditions),
        age=age,
        pregnancy_possible=pregnancy_possible,
        findings=frozenset(findings),  # type: ignore[arg-type]
        recent_tests=tuple(recent),
        preferences=Preferences(
            exclude_specimen_types=frozenset(exclude),  # type: ignore[arg-type]
            evidence_based_only=evidence_based_only,
            vendors=tuple(vendors),
            request_families=frozenset(request_families),  # type: ignore[arg-type]
        ),
        pregnant=pregnant,
        setting=setting,  # type: ignore[arg-type]
        therapy_started=_ago(started_days_ago),
        last_dose_change=_ago(dose_change_days_ago),
        medications=tuple(Medication(class_id=c, started=_ago(days)) for c, days in medications),
        ignored_codings=tuple(IgnoredCoding(path=p, reason="unmapped") for p in ignored),
    )


def _ago(days: int | None) -> dt.date | None:
    return None if days is None else TODAY - dt.timedelta(days=days)


def past_test(
    days_ago: int,
    *,
    code: str | None = None,
    panel: str | None = None,
    system: str = LOINC,
    abnormal: bool = False,
) -> RecentTest:
    """A test done ``days_ago`` days before TODAY, named by a coding or by a panel id."""
    return RecentTest(
        date=TODAY - dt.timedelta(days=days_ago),
        system=system if code is not None else None,
        code=code,
        panel_id=panel,
        abnormal=abnormal,
    )


def severity_of(rec: Recommendation, advisory_id: str) -> str | None:
    found = [a.severity for a in rec.advisories if a.id == advisory_id]
    return found[0] if found else None


def run(catalog: Catalog, context: TherapyContext) -> Recommendation:
    return recommend(catalog, context, TODAY)


# --- lookups --------------------------------------------------------------------------------------


def codes_of(suggestion: Suggestion) -> set[str]:
    return {c.code for c in suggestion.panel.codes}


def find(rec: Recommendation, code: str) -> Suggestion | None:
    """The suggestion whose panel is ordered with ``code``, or None."""
    found = [s for s in rec.suggestions if code in codes_of(s)]
    assert len(found) <= 1, f"{code} suggested {len(found)} times"
    return found[0] if found else None


def get(rec: Recommendation, code: str) -> Suggestion:
    """The suggestion ordered with ``code``; fails listing what was suggested instead."""
    found = find(rec, code)
    assert found is not None, f"{code} not suggested; got {describe(rec)}"
    return found


def codes(rec: Recommendation, tier: str | None = None) -> set[str]:
    """All codes of the suggested panels (of one tier when given)."""
    return {
        code
        for s in rec.suggestions
        if tier is None or s.panel.tier == tier
        for code in codes_of(s)
    }


def by_family(rec: Recommendation, family: str) -> Suggestion | None:
    found = [s for s in rec.suggestions if s.panel.family == family]
    assert len(found) <= 1, f"family {family} suggested {len(found)} times"
    return found[0] if found else None


def families(rec: Recommendation) -> set[str]:
    return {s.panel.family for s in rec.suggestions if s.panel.tier == "complementary"}


def left_out(rec: Recommendation, panel_id: str) -> Suppressed | None:
    found = [s for s in rec.suppressed if s.panel_id == panel_id]
    assert len(found) <= 1, f"{panel_id} left out {len(found)} times"
    return found[0] if found else None


def reason(rec: Recommendation, panel_id: str) -> str | None:
    entry = left_out(rec, panel_id)
    return entry.reason if entry else None


def advisory_ids(rec: Recommendation) -> set[str]:
    return {a.id for a in rec.advisories}


def describe(rec: Recommendation) -> list[str]:
    """A compact listing for assertion messages."""
    return [f"{s.panel.id}:{s.priority}:{s.retest_days}" for s in rec.suggestions] + [
        f"-{s.panel_id}:{s.reason}" for s in rec.suppressed
    ]
