"""The catalog model: panels, evidence, therapies, condition groups, rules and advisories.

Plain msgspec Structs decoded from the TOML files under ``catalog/``. ``Catalog.build`` checks every
cross-reference and indexes rules by therapy, so the engine only ever looks at rules that can match.
"""

from __future__ import annotations

import string
from collections import defaultdict
from typing import Annotated, Final

import msgspec

from service.domain.index import ConditionIndex, WhenIndex
from service.domain.vocabulary import (
    PHASES,
    EvidenceGrade,
    Finding,
    Flag,
    Phase,
    Priority,
    Route,
    Setting,
    Severity,
    Sex,
    SpecimenType,
    Tier,
)

Id = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

#: Fields a rationale or advisory template may use; anything else is a catalog error.
TEMPLATE_FIELDS: Final = frozenset(
    {"therapy", "route", "phase", "conditions", "findings", "age", "sex", "panel", "retest_days"}
)


class CatalogError(ValueError):
    """A catalog file is invalid; the message names the file and entry."""


class Coding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    system: str
    code: str
    display: str | None = None


class Specimen(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``type`` is the main specimen; ``also`` the others a multi-specimen panel needs."""

    type: SpecimenType
    collection: str
    also: tuple[SpecimenType, ...] = ()

    @property
    def types(self) -> tuple[SpecimenType, ...]:
        return (self.type, *self.also)


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    amount: float
    currency: str
    source: str


class Panel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An orderable test or panel.

    ``codes`` are the codes we order with; ``satisfied_by`` are further codings whose recent result
    also satisfies this panel (a CMP satisfies a hepatic function panel).
    ``specimen_fallback`` names the panel used instead when the practitioner excludes this panel's
    specimen type (safety panels never disappear because of a preference).
    """

    id: Id
    name: str
    family: str
    tier: Tier
    vendor: str
    specimen: Specimen
    codes: tuple[Coding, ...]
    analytes: tuple[str, ...] = ()
    satisfied_by: tuple[Coding, ...] = ()
    turnaround: str | None = None
    price: Price | None = None
    caveats: tuple[str, ...] = ()
    default: bool = False
    specimen_fallback: str | None = None
    unknowns: tuple[str, ...] = ()
    #: Orderable from any reference laboratory: a vendor preference never filters it out.
    vendor_neutral: bool = False
    #: A drug level: the therapy or medication class whose start/dose change makes older
    #: results void (MAPPING.md rule 2).
    level_of: str | None = None
    #: A positive (``abnormal``) result in the last 30 days means a known pregnancy.
    positive_means_pregnant: bool = False

    def satisfying_codings(self) -> frozenset[tuple[str, str]]:
        return frozenset((c.system, c.code) for c in (*self.codes, *self.satisfied_by))


class Family(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A panel family. ``evidence_based_only`` preference leaves out families marked exploratory."""

    id: Id
    name: str
    tier: Tier
    exploratory: bool = False
    #: Suggested only when the practitioner asks for the family (``request_families``).
    on_request: bool = False


class Evidence(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    citation: str
    finding: str
    grade: EvidenceGrade
    doi: str | None = None
    pmid: str | None = None
    label: str | None = None
    url: str | None = None
    retracted: bool = False


class TherapyCoding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    system: str
    code: str
    display: str
    verification: str


class Therapy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    name: str
    routes: tuple[Route, ...]
    codings: tuple[TherapyCoding, ...] = ()
    note: str | None = None
    #: Settings the therapy may have; a sent setting outside them raises ``take_home_requested``.
    settings: tuple[Setting, ...] = ("clinic_administered", "take_home")
    #: Routes for which an absent setting means take-home (``take_home_assumed``).
    take_home_routes: tuple[Route, ...] = ()
    #: Medication classes whose recent start counts as a dose change (lithium: interacting drugs).
    titration_classes: tuple[str, ...] = ()


class MedicationClass(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A class of co-medications (MAPPING.md "Medication classes").

    ``includes`` names narrower classes: a medication of an included class also counts as this
    one (``cns_depressant`` includes ``benzodiazepine``). ``codings`` map RxNorm codes to the
    class, each with its verification status; a class without codings is sent as a class id.
    """

    id: Id
    name: str
    includes: tuple[Id, ...] = ()
    codings: tuple[TherapyCoding, ...] = ()
    note: str | None = None


class ConditionGroup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """ICD-10-CM codes matched exactly (``codes``) or by prefix (``prefixes``)."""

    id: Id
    name: str
    codes: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    #: Findings a matching condition sets (union with the findings sent).
    findings: tuple[Finding, ...] = ()

    def matches(self, code: str) -> bool:
        return code in self.codes or any(code.startswith(p) for p in self.prefixes)


class When(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Conditions on a context; every given field must hold (an empty When always holds)."""

    routes: tuple[Route, ...] = ()
    findings_any: tuple[Finding, ...] = ()
    findings_none: tuple[Finding, ...] = ()
    condition_groups_any: tuple[Id, ...] = ()
    sex_any: tuple[Sex, ...] = ()
    age_min: int | None = None
    age_max: int | None = None
    #: Holds when age is unknown or below this (MAPPING: "age < 55 or not given").
    age_under_or_unknown: int | None = None
    #: Possible and not known pregnant (MAPPING.md "Pregnancy").
    pregnancy_possible: bool | None = None
    pregnant: bool | None = None
    flags_any: tuple[Flag, ...] = ()
    flags_none: tuple[Flag, ...] = ()
    medication_classes_any: tuple[Id, ...] = ()
    medication_classes_all: tuple[Id, ...] = ()


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A declarative rule: for these therapies and phases, when ``when`` holds, suggest panels.

    ``panels`` are suggested as they are; ``family`` suggests the family's default panel with the
    others as alternatives. ``applicable_if`` is a precondition whose failure is reported as
    ``not_applicable`` (rather than staying silent). When the therapy matches and ``when`` holds
    but the phase is in ``not_indicated_phases``, the panel is reported as
    ``not_indicated_in_phase``.
    """

    id: Id
    therapies: tuple[Id, ...]
    phases: tuple[Phase, ...]
    priority: Priority
    rationale: str
    evidence: tuple[Id, ...]
    panels: tuple[Id, ...] = ()
    family: Id | None = None
    when: When = When()
    applicable_if: When | None = None
    not_indicated_phases: tuple[Phase, ...] = ()
    retest_days: int | None = None
    cautions: tuple[str, ...] = ()


class Advisory(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Id
    therapies: tuple[Id, ...]
    text: str
    source: str
    severity: Severity
    when: When = When()
    phases: tuple[Phase, ...] = ("baseline", "induction", "maintenance")


class FindingImplication(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A finding that also counts as others (``hypertension_uncontrolled`` -> ``hypertension``)."""

    finding: Finding
    implies: tuple[Finding, ...]


class SpecimenExclusion(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Excluding ``excluded`` also excludes ``also_excludes`` (urine -> dried urine)."""

    excluded: SpecimenType
    also_excludes: tuple[SpecimenType, ...]


class CatalogFiles(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the TOML files hold, before cross-checking."""

    families: tuple[Family, ...]
    panels: tuple[Panel, ...]
    evidence: tuple[Evidence, ...]
    therapies: tuple[Therapy, ...]
    condition_groups: tuple[ConditionGroup, ...]
    rules: tuple[Rule, ...]
    advisories: tuple[Advisory, ...]
    medication_classes: tuple[MedicationClass, ...] = ()
    finding_implications: tuple[FindingImplication, ...] = ()
    specimen_exclusions: tuple[SpecimenExclusion, ...] = ()


class Catalog:
    """A validated, indexed catalog. Immutable after ``build``; one per process."""

    def __init__(self, files: CatalogFiles, version: str, origin: dict[str, str]) -> None:
        self.version = version
        self.files = files
        self.families = {f.id: f for f in files.families}
        self.panels = {p.id: p for p in files.panels}
        self.evidence = {e.id: e for e in files.evidence}
        self.therapies = {t.id: t for t in files.therapies}
        self.condition_groups = {g.id: g for g in files.condition_groups}
        self.rules = {r.id: r for r in files.rules}
        self._origin = origin
        self.therapy_by_coding = {
            (c.system, c.code): t.id for t in files.therapies for c in t.codings
        }
        self.medication_classes = {m.id: m for m in files.medication_classes}
        self.finding_implications: dict[str, tuple[str, ...]] = {
            f.finding: f.implies for f in files.finding_implications
        }
        self.specimen_exclusions: dict[str, tuple[str, ...]] = {
            s.excluded: s.also_excludes for s in files.specimen_exclusions
        }
        self.class_by_coding: dict[tuple[str, str], tuple[str, ...]] = {}
        for med in files.medication_classes:
            for c in med.codings:
                key = (c.system, c.code)
                self.class_by_coding[key] = (*self.class_by_coding.get(key, ()), med.id)
        #: class id -> itself and every class that (transitively) includes it.
        self.class_closure: dict[str, frozenset[str]] = {
            m.id: _containing(m.id, files.medication_classes) for m in files.medication_classes
        }
        rules_by_therapy: dict[str, list[Rule]] = defaultdict(list)
        for rule in files.rules:
            for therapy in rule.therapies:
                rules_by_therapy[therapy].append(rule)
        self.rules_by_therapy = {k: tuple(v) for k, v in rules_by_therapy.items()}
        advisories: dict[str, list[Advisory]] = defaultdict(list)
        for advisory in files.advisories:
            for therapy in advisory.therapies:
                advisories[therapy].append(advisory)
        self.advisories_by_therapy = {k: tuple(v) for k, v in advisories.items()}
        # Request-time indexes (service/domain/index.py): cost follows what can match.
        self.group_index = ConditionIndex(files.condition_groups)
        self.rule_index = {
            (therapy, phase): WhenIndex(
                [r for r in rules if phase in r.phases or phase in r.not_indicated_phases],
                lambda r: r.when,
            )
            for therapy, rules in self.rules_by_therapy.items()
            for phase in sorted(PHASES)
        }
        self.advisory_index = {
            (therapy, phase): WhenIndex([a for a in items if phase in a.phases], lambda a: a.when)
            for therapy, items in self.advisories_by_therapy.items()
            for phase in sorted(PHASES)
        }
        self.panel_codings = {p.id: p.satisfying_codings() for p in files.panels}
        self.pregnancy_panels = tuple(p for p in files.panels if p.positive_means_pregnant)
        self.panels_by_family: dict[str, tuple[Panel, ...]] = {
            fam: tuple(
                sorted(
                    (p for p in files.panels if p.family == fam),
                    key=lambda p: (not p.default, p.name),
                )
            )
            for fam in self.families
        }
        #: Lower-cased words a panel is found by (id, name, vendor, family, analytes, codes).
        self.search_text = {
            p.id: " ".join(
                (p.id, p.name, p.vendor, p.family, *p.analytes, *(c.code for c in p.codes))
            ).casefold()
            for p in files.panels
        }

    @classmethod
    def build(cls, files: CatalogFiles, version: str, origin: dict[str, str]) -> Catalog:
        """Validate cross-references; ``origin`` maps "kind:id" to the file it came from."""
        _validate(files, origin)
        return cls(files, version, origin)


def _containing(class_id: str, classes: tuple[MedicationClass, ...]) -> frozenset[str]:
    found = {class_id}
    frontier = [class_id]
    while frontier:
        current = frontier.pop()
        for med in classes:
            if current in med.includes and med.id not in found:
                found.add(med.id)
                frontier.append(med.id)
    return frozenset(found)


def _fail(origin: dict[str, str], kind: str, entry_id: str, message: str) -> CatalogError:
    where = origin.get(f"{kind}:{entry_id}", "catalog")
    return CatalogError(f"{where}: {kind} '{entry_id}': {message}")


def _unique(origin: dict[str, str], kind: str, ids: list[str]) -> set[str]:
    seen: set[str] = set()
    for entry_id in ids:
        if entry_id in seen:
            raise _fail(origin, kind, entry_id, "duplicate id")
        seen.add(entry_id)
    return seen


def template_fields(template: str) -> set[str]:
    """The ``{field}`` names a template uses (raises ValueError on a malformed template)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check_template(origin: dict[str, str], kind: str, entry_id: str, template: str) -> None:
    try:
        fields = template_fields(template)
    except ValueError as exc:
        raise _fail(origin, kind, entry_id, f"malformed template: {exc}") from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise _fail(
            origin,
            kind,
            entry_id,
            f"unknown template field(s) {sorted(unknown)}; allowed: {sorted(TEMPLATE_FIELDS)}",
        )


def _check_when(
    origin: dict[str, str],
    kind: str,
    entry_id: str,
    when: When,
    groups: set[str],
    classes: set[str] | None = None,
) -> None:
    unknown = set(when.condition_groups_any) - groups
    if unknown:
        raise _fail(origin, kind, entry_id, f"unknown condition group(s) {sorted(unknown)}")
    unknown_classes = set(when.medication_classes_any + when.medication_classes_all) - (
        classes or set()
    )
    if unknown_classes:
        raise _fail(
            origin, kind, entry_id, f"unknown medication class(es) {sorted(unknown_classes)}"
        )
    if set(when.flags_any) & set(when.flags_none):
        raise _fail(origin, kind, entry_id, "a flag is both required and excluded")
    if when.age_min is not None and when.age_max is not None and when.age_min > when.age_max:
        raise _fail(origin, kind, entry_id, "age_min is greater than age_max")


def _check_coding(origin: dict[str, str], panel_id: str, coding: Coding) -> None:
    if not coding.code.strip() or not coding.system.startswith(("http://", "https://", "urn:")):
        raise _fail(origin, "panel", panel_id, f"bad coding {coding.system}|{coding.code}")
    if coding.system == "http://loinc.org" and not _is_loinc(coding.code):
        raise _fail(origin, "panel", panel_id, f"'{coding.code}' is not a valid LOINC code")


def _is_loinc(code: str) -> bool:
    """LOINC codes are digits, a hyphen and a mod-10 check digit."""
    body, _, check = code.partition("-")
    if not (body.isdigit() and check.isdigit() and len(check) == 1):
        return False
    digits = [int(d) for d in reversed(body)]
    total = 0
    for i, d in enumerate(digits):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10 == int(check)


def _validate(files: CatalogFiles, origin: dict[str, str]) -> None:
    families = _unique(origin, "family", [f.id for f in files.families])
    panels = _unique(origin, "panel", [p.id for p in files.panels])
    evidence = _unique(origin, "evidence", [e.id for e in files.evidence])
    therapies = _unique(origin, "therapy", [t.id for t in files.therapies])
    groups = _unique(origin, "condition_group", [g.id for g in files.condition_groups])
    classes = _unique(origin, "medication_class", [m.id for m in files.medication_classes])
    _unique(origin, "rule", [r.id for r in files.rules])
    _unique(origin, "advisory", [a.id for a in files.advisories])
    family_tier = {f.id: f.tier for f in files.families}
    retracted = {e.id for e in files.evidence if e.retracted}

    for ev in files.evidence:
        if not (ev.doi or ev.pmid or ev.label or ev.url):
            raise _fail(origin, "evidence", ev.id, "needs a DOI, PMID, label name or URL")
    for group in files.condition_groups:
        if not (group.codes or group.prefixes):
            raise _fail(origin, "condition_group", group.id, "lists no codes or prefixes")
    for panel in files.panels:
        if panel.family not in families:
            raise _fail(origin, "panel", panel.id, f"unknown family '{panel.family}'")
        if family_tier[panel.family] != panel.tier:
            raise _fail(origin, "panel", panel.id, f"tier differs from family '{panel.family}'")
        if not panel.codes:
            raise _fail(origin, "panel", panel.id, "has no codes")
        for coding in (*panel.codes, *panel.satisfied_by):
            _check_coding(origin, panel.id, coding)
        if panel.specimen_fallback is not None and panel.specimen_fallback not in panels:
            raise _fail(
                origin, "panel", panel.id, f"unknown specimen_fallback '{panel.specimen_fallback}'"
            )
    for family in files.families:
        defaults = [p.id for p in files.panels if p.family == family.id and p.default]
        if family.tier == "complementary" and len(defaults) != 1:
            raise _fail(
                origin, "family", family.id, f"needs exactly one default panel, has {defaults}"
            )
    for therapy in files.therapies:
        for therapy_coding in therapy.codings:
            if therapy_coding.code == "2056959":
                raise _fail(
                    origin, "therapy", therapy.id, "RxNorm 2056959 is unverified; never ship it"
                )
    for med in files.medication_classes:
        unknown_classes = set(med.includes) - classes
        if unknown_classes:
            raise _fail(
                origin, "medication_class", med.id, f"includes unknown {sorted(unknown_classes)}"
            )
        by_id = {m.id: m for m in files.medication_classes}
        seen: set[str] = set()
        frontier = list(med.includes)
        while frontier:
            current = frontier.pop()
            if current == med.id:
                raise _fail(origin, "medication_class", med.id, "includes itself (a cycle)")
            if current not in seen and current in by_id:
                seen.add(current)
                frontier.extend(by_id[current].includes)
    for rule in files.rules:
        if bool(rule.panels) == (rule.family is not None):
            raise _fail(origin, "rule", rule.id, "needs either 'panels' or 'family', not both")
        for therapy_id in rule.therapies:
            if therapy_id not in therapies:
                raise _fail(origin, "rule", rule.id, f"unknown therapy '{therapy_id}'")
        for panel_id in rule.panels:
            if panel_id not in panels:
                raise _fail(origin, "rule", rule.id, f"unknown panel '{panel_id}'")
        if rule.family is not None and rule.family not in families:
            raise _fail(origin, "rule", rule.id, f"unknown family '{rule.family}'")
        if not rule.evidence:
            raise _fail(origin, "rule", rule.id, "cites no evidence")
        for evidence_id in rule.evidence:
            if evidence_id not in evidence:
                raise _fail(origin, "rule", rule.id, f"unknown evidence '{evidence_id}'")
            if evidence_id in retracted:
                raise _fail(origin, "rule", rule.id, f"cites retracted evidence '{evidence_id}'")
        if rule.retest_days is None:
            # MAPPING v2: every panel has a look-back; a rule without one is a contradiction.
            cited = rule.family or ", ".join(rule.panels)
            raise _fail(origin, "rule", rule.id, f"cites {cited} with no retest window")
        if rule.retest_days <= 0:
            raise _fail(origin, "rule", rule.id, "retest_days must be positive")
        tiers = {family_tier[rule.family]} if rule.family else set()
        tiers |= {family_tier[p.family] for p in files.panels if p.id in rule.panels}
        if "complementary" in tiers and rule.priority != "consider":
            raise _fail(
                origin, "rule", rule.id, "complementary panels are always 'consider' (MAPPING v2)"
            )
        _check_template(origin, "rule", rule.id, rule.rationale)
        _check_when(origin, "rule", rule.id, rule.when, groups, classes)
        if rule.applicable_if is not None:
            _check_when(origin, "rule", rule.id, rule.applicable_if, groups, classes)
    for advisory in files.advisories:
        for therapy_id in advisory.therapies:
            if therapy_id not in therapies:
                raise _fail(origin, "advisory", advisory.id, f"unknown therapy '{therapy_id}'")
        _check_template(origin, "advisory", advisory.id, advisory.text)
        _check_when(origin, "advisory", advisory.id, advisory.when, groups, classes)
    for panel in files.panels:
        if panel.level_of is not None and panel.level_of not in therapies | classes:
            raise _fail(origin, "panel", panel.id, f"level_of unknown '{panel.level_of}'")
    for therapy in files.therapies:
        unknown_titration = set(therapy.titration_classes) - classes
        if unknown_titration:
            raise _fail(
                origin, "therapy", therapy.id, f"unknown titration class(es) {unknown_titration}"
            )
