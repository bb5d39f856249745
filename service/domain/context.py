"""A therapy context after resolution against the catalog: what the engine reasons about.

The edge (REST, CDS Hooks, UI) turns requests into this shape; the engine never sees codings it
would have to resolve itself, and ``pregnancy_possible`` is always decided.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from service.domain.recommendation import IgnoredCoding
from service.domain.vocabulary import FamilyId, Finding, Phase, Route, Setting, Sex, SpecimenType


class RecentTest(msgspec.Struct, frozen=True):
    """A test done recently, named by coding (system, code) or by catalog panel id."""

    date: dt.date
    system: str | None = None
    code: str | None = None
    panel_id: str | None = None
    #: Flagged abnormal (or a positive hCG): never satisfies a look-back.
    abnormal: bool = False


class Medication(msgspec.Struct, frozen=True):
    """Another current medication, resolved to a catalog medication class."""

    class_id: str
    started: dt.date | None = None


class Preferences(msgspec.Struct, frozen=True):
    exclude_specimen_types: frozenset[SpecimenType] = frozenset()
    evidence_based_only: bool = False
    vendors: tuple[str, ...] = ()
    request_families: frozenset[FamilyId] = frozenset()


class TherapyContext(msgspec.Struct, frozen=True):
    therapy: str
    phase: Phase
    sex: Sex
    route: Route | None = None
    condition_codes: tuple[str, ...] = ()
    age: int | None = None
    pregnancy_possible: bool | None = None
    findings: frozenset[Finding] = frozenset()
    recent_tests: tuple[RecentTest, ...] = ()
    preferences: Preferences = Preferences()
    as_of: dt.date | None = None
    pregnant: bool | None = None
    setting: Setting | None = None
    therapy_started: dt.date | None = None
    last_dose_change: dt.date | None = None
    medications: tuple[Medication, ...] = ()
    #: Codings the edge could not map; carried into the answer (MAPPING.md rule 7).
    ignored_codings: tuple[IgnoredCoding, ...] = ()


def default_pregnancy_possible(sex: Sex, age: int | None) -> bool:
    """MAPPING.md: false for male; false when age is known and outside 12-55; otherwise true."""
    if sex == "male":
        return False
    return not (age is not None and not 12 <= age <= 55)


def normalise_icd10(code: str) -> str:
    """Upper-case and put the dot after the category (``f332`` -> ``F33.2``)."""
    code = code.strip().upper().replace(" ", "")
    if "." not in code and len(code) > 3:
        code = f"{code[:3]}.{code[3:]}"
    return code
