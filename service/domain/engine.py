"""The recommendation engine: a resolved therapy context and a catalog in, a Recommendation out.

Pure and deterministic: the same context, catalog and date always give the same output. Only the
rules indexed under the context's therapy are evaluated. Facts (findings derived from condition
groups, medication classes, pregnancy and the derived flags of MAPPING.md v2) are computed once per
request, before any rule.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Final, TypeVar

from service.domain.catalog import Catalog, Evidence, Panel, Rule, When, template_fields
from service.domain.context import Medication, TherapyContext, default_pregnancy_possible
from service.domain.recommendation import (
    AdvisoryNote,
    Recommendation,
    Suggestion,
    Suppressed,
)
from service.domain.vocabulary import (
    PRIORITY_RANK,
    REASON_RANK,
    SEVERITY_RANK,
    TIER_RANK,
    Priority,
    SuppressionReason,
)

_T = TypeVar("_T")

#: MAPPING.md "Derived once per request" thresholds, in days.
TITRATION_DAYS: Final = 28
FIRST_YEAR_DAYS: Final = 365
ANTIPSYCHOTIC_RECENT_DAYS: Final = 182
POSITIVE_HCG_DAYS: Final = 30
ADULT_AGE: Final = 18


@dataclass(frozen=True, slots=True)
class _Facts:
    """The context plus what is derived from it once per request."""

    context: TherapyContext
    as_of: dt.date
    groups: frozenset[str]
    findings: frozenset[str]
    classes: frozenset[str]
    #: class id -> the latest known ``started`` of a medication in it (None: not given).
    class_started: dict[str, dt.date | None]
    pregnancy_possible: bool
    pregnant: bool
    flags: frozenset[str]
    template_values: dict[str, str]


@dataclass(slots=True)
class _Pending:
    """A panel suggested by one or more rules, merged per MAPPING.md cross-cutting rule 1."""

    panel: Panel
    priority: Priority
    family_rule: bool = False
    rationales: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    cautions: list[str] = field(default_factory=list)
    alternatives: tuple[Panel, ...] = ()
    retest_days: int | None = None

    def merge(self, rule: Rule, rationale: str, evidence: list[Evidence]) -> None:
        if PRIORITY_RANK[rule.priority] < PRIORITY_RANK[self.priority]:
            self.priority = rule.priority
        _extend_unique(self.rationales, [rationale])
        _extend_unique(self.evidence, evidence)
        _extend_unique(self.rules, [rule.id])
        _extend_unique(self.cautions, list(rule.cautions))
        if rule.retest_days is not None:
            self.retest_days = min(rule.retest_days, self.retest_days or rule.retest_days)


def _extend_unique(target: list[_T], items: list[_T]) -> None:
    for item in items:
        if item not in target:
            target.append(item)


def recommend(catalog: Catalog, context: TherapyContext, today: dt.date) -> Recommendation:
    """Apply every rule for the context's therapy and return suggestions, left-outs, advisories."""
    as_of = context.as_of or today
    facts = _facts(catalog, context, as_of)
    pending: dict[str, _Pending] = {}
    left_out: dict[str, Suppressed] = {}
    excluded = _excluded_types(catalog, context)

    index = catalog.rule_index.get((context.therapy, context.phase))
    rules = index.candidates(facts.groups, facts.findings, context.route) if index else ()
    for rule in rules:
        if not _holds(rule.when, facts):
            continue
        if context.phase in rule.not_indicated_phases:
            for panel in _rule_panels(catalog, rule):
                _leave_out(
                    left_out,
                    panel,
                    "not_indicated_in_phase",
                    rule,
                    f"Not indicated in the {context.phase} phase.",
                )
            continue
        if context.phase not in rule.phases:
            continue
        if rule.applicable_if is not None and not _holds(rule.applicable_if, facts):
            for panel in _rule_panels(catalog, rule):
                _leave_out(
                    left_out,
                    panel,
                    "not_applicable",
                    rule,
                    _not_applicable_detail(rule.applicable_if, facts),
                )
            continue
        chosen = _choose_panel(catalog, rule, context, excluded, left_out)
        if chosen is None:
            continue
        for panel, alternatives in chosen:
            entry = pending.get(panel.id)
            if entry is None:
                entry = pending[panel.id] = _Pending(
                    panel=panel,
                    priority=rule.priority,
                    family_rule=rule.family is not None,
                    cautions=list(panel.caveats),
                    alternatives=alternatives,
                )
            rationale = _static_text(rule.rationale)
            if rationale is None:
                rationale = rule.rationale.format_map(
                    {
                        **facts.template_values,
                        "panel": panel.name,
                        "retest_days": str(rule.retest_days) if rule.retest_days else "n/a",
                    }
                )
            entry.merge(rule, rationale, [catalog.evidence[e] for e in rule.evidence])

    suggestions: list[Suggestion] = []
    for entry in pending.values():
        last = _last_tested(catalog, entry, facts)
        if (
            last is not None
            and entry.retest_days is not None
            and (as_of - last).days < entry.retest_days
        ):
            left_out[entry.panel.id] = Suppressed(
                panel_id=entry.panel.id,
                panel_name=entry.panel.name,
                reason="recently_tested",
                detail=f"Tested on {last.isoformat()}, within the {entry.retest_days}-day "
                "retest interval.",
                rules=tuple(entry.rules),
                last_tested=last,
                next_due=last + dt.timedelta(days=entry.retest_days),
            )
            continue
        # Rule 1: a panel any rule suggests is never also left out.
        left_out.pop(entry.panel.id, None)
        suggestions.append(
            Suggestion(
                panel=entry.panel,
                priority=entry.priority,
                rationale=" ".join(entry.rationales),
                evidence=tuple(entry.evidence),
                rules=tuple(entry.rules),
                cautions=tuple(entry.cautions),
                alternatives=entry.alternatives,
                retest_days=entry.retest_days,
                preselected=entry.panel.tier == "safety" and entry.priority != "consider",
            )
        )
    suggestions.sort(
        key=lambda s: (TIER_RANK[s.panel.tier], PRIORITY_RANK[s.priority], s.panel.name, s.panel.id)
    )
    suppressed = sorted(left_out.values(), key=lambda s: (s.panel_name, s.panel_id, s.reason))
    return Recommendation(
        catalog_version=catalog.version,
        as_of=as_of,
        suggestions=tuple(suggestions),
        suppressed=tuple(suppressed),
        advisories=_advisories(catalog, facts),
        ignored_codings=context.ignored_codings,
    )


def _days_ago(date: dt.date | None, as_of: dt.date) -> int | None:
    """Days from ``date`` to the request date; a date after it counts as that date."""
    return None if date is None else max(0, (as_of - date).days)


def _facts(catalog: Catalog, context: TherapyContext, as_of: dt.date) -> _Facts:
    groups = catalog.group_index.groups_of(context.condition_codes)
    findings: set[str] = set(context.findings)
    for group in groups:
        findings.update(catalog.condition_groups[group].findings)
    for finding in list(findings):
        findings.update(catalog.finding_implications.get(finding, ()))

    class_started: dict[str, dt.date | None] = {}
    for med in context.medications:
        for class_id in catalog.class_closure.get(med.class_id, frozenset({med.class_id})):
            dates = [d for d in (class_started.get(class_id), med.started) if d is not None]
            class_started[class_id] = max(dates, default=None)
    classes = frozenset(class_started)

    pregnant = bool(context.pregnant) or _positive_hcg(catalog, context, as_of)
    if pregnant:
        possible = True
    elif context.pregnancy_possible is not None:
        possible = context.pregnancy_possible
    else:
        possible = default_pregnancy_possible(context.sex, context.age)

    flags = _flags(catalog, context, as_of, findings, context.medications)
    if pregnant:
        flags.add("pregnant")

    group_names = [catalog.condition_groups[g].name for g in sorted(groups)]
    values = {
        "therapy": catalog.therapies[context.therapy].name,
        "route": context.route or "unspecified route",
        "phase": context.phase,
        "conditions": ", ".join(group_names) or "no matched condition",
        "findings": ", ".join(sorted(f.replace("_", " ") for f in findings)) or "none",
        "age": str(context.age) if context.age is not None else "unknown",
        "sex": context.sex,
    }
    return _Facts(
        context=context,
        as_of=as_of,
        groups=groups,
        findings=frozenset(findings),
        classes=classes,
        class_started=class_started,
        pregnancy_possible=possible,
        pregnant=pregnant,
        flags=frozenset(flags),
        template_values=values,
    )


def _flags(
    catalog: Catalog,
    context: TherapyContext,
    as_of: dt.date,
    findings: set[str],
    medications: tuple[Medication, ...],
) -> set[str]:
    therapy = catalog.therapies[context.therapy]
    flags: set[str] = set()
    if context.age is not None and context.age < ADULT_AGE:
        flags.add("minor")
    # Setting: a sent setting the therapy cannot have (esketamine at home) stays clinic and
    # raises the REMS gate; an absent one is take-home for the therapy's take-home routes.
    if context.setting is not None:
        if context.setting in therapy.settings:
            if context.setting == "take_home":
                flags.add("take_home")
        else:
            flags.add("take_home_requested")
    elif context.route is not None and context.route in therapy.take_home_routes:
        flags.update(("take_home", "take_home_assumed"))
    # Dose titration (MAPPING.md "Derived once per request").
    reference = context.last_dose_change or context.therapy_started
    recent_change = reference is not None and (_days_ago(reference, as_of) or 0) <= TITRATION_DAYS
    titrating_class = any(
        med.started is not None
        and (_days_ago(med.started, as_of) or 0) <= TITRATION_DAYS
        and not catalog.class_closure.get(med.class_id, frozenset()).isdisjoint(
            therapy.titration_classes
        )
        for med in medications
    )
    if (
        not findings.isdisjoint(("dose_changed_recently", "level_not_stable"))
        or recent_change
        or (context.phase == "induction" and reference is None)
        or titrating_class
    ):
        flags.add("dose_titration")
    started_days = _days_ago(context.therapy_started, as_of)
    if (
        context.phase in ("baseline", "induction")
        or started_days is None
        or started_days <= FIRST_YEAR_DAYS
    ):
        flags.add("first_treatment_year")
    if any(
        med.started is not None
        and (_days_ago(med.started, as_of) or 0) <= ANTIPSYCHOTIC_RECENT_DAYS
        and "antipsychotic" in catalog.class_closure.get(med.class_id, frozenset())
        for med in medications
    ):
        flags.add("antipsychotic_recent")
    if any(c.path.startswith("medications") for c in context.ignored_codings):
        flags.add("unmapped_medication")
    return flags


def _positive_hcg(catalog: Catalog, context: TherapyContext, as_of: dt.date) -> bool:
    """An hCG sent as abnormal (positive) in the last 30 days counts as a known pregnancy."""
    for test in context.recent_tests:
        if not test.abnormal or (_days_ago(test.date, as_of) or 0) > POSITIVE_HCG_DAYS:
            continue
        for panel in catalog.pregnancy_panels:
            if test.panel_id == panel.id or (
                test.system is not None
                and (test.system, test.code) in catalog.panel_codings[panel.id]
            ):
                return True
    return False


def _holds(when: When, facts: _Facts) -> bool:
    ctx = facts.context
    age = ctx.age
    return (
        (not when.routes or ctx.route in when.routes)
        and (not when.findings_any or not facts.findings.isdisjoint(when.findings_any))
        and facts.findings.isdisjoint(when.findings_none)
        and (
            not when.condition_groups_any or not facts.groups.isdisjoint(when.condition_groups_any)
        )
        and (not when.sex_any or ctx.sex in when.sex_any)
        and (when.age_min is None or (age is not None and age >= when.age_min))
        and (when.age_max is None or (age is not None and age <= when.age_max))
        and (when.age_under_or_unknown is None or age is None or age < when.age_under_or_unknown)
        and (
            when.pregnancy_possible is None
            or (facts.pregnancy_possible and not facts.pregnant) == when.pregnancy_possible
        )
        and (when.pregnant is None or facts.pregnant == when.pregnant)
        and (not when.flags_any or not facts.flags.isdisjoint(when.flags_any))
        and facts.flags.isdisjoint(when.flags_none)
        and (
            not when.medication_classes_any
            or not facts.classes.isdisjoint(when.medication_classes_any)
        )
        and facts.classes.issuperset(when.medication_classes_all)
    )


def _not_applicable_detail(precondition: When, facts: _Facts) -> str:
    if precondition.pregnancy_possible is True:
        if facts.pregnant:
            return "Pregnancy is already known (stated, or a positive hCG in the last 30 days)."
        return "Pregnancy is not possible for this patient (by sex, age or the stated context)."
    if "minor" in precondition.flags_none and "minor" in facts.flags:
        return "Complementary panels are not suggested for patients under 18."
    return "The patient context does not meet this test's precondition."


def _rule_panels(catalog: Catalog, rule: Rule) -> list[Panel]:
    if rule.family is not None:
        return [catalog.panels_by_family[rule.family][0]]
    return [catalog.panels[p] for p in rule.panels]


def _excluded_types(catalog: Catalog, context: TherapyContext) -> frozenset[str]:
    excluded: set[str] = set(context.preferences.exclude_specimen_types)
    for specimen in list(excluded):
        excluded.update(catalog.specimen_exclusions.get(specimen, ()))
    return frozenset(excluded)


def _choose_panel(
    catalog: Catalog,
    rule: Rule,
    context: TherapyContext,
    excluded: frozenset[str],
    left_out: dict[str, Suppressed],
) -> list[tuple[Panel, tuple[Panel, ...]]] | None:
    """The panels a matched rule suggests, after preferences; None when all were excluded."""
    prefs = context.preferences
    if rule.family is None:
        # Safety panels never disappear because of a preference; a specimen fallback may apply.
        chosen: list[tuple[Panel, tuple[Panel, ...]]] = []
        for panel_id in rule.panels:
            panel = catalog.panels[panel_id]
            if panel.specimen_fallback and not excluded.isdisjoint(panel.specimen.types):
                panel = catalog.panels[panel.specimen_fallback]
            chosen.append((panel, ()))
        return chosen
    family = catalog.families[rule.family]
    default = catalog.panels_by_family[family.id][0]
    if prefs.evidence_based_only and family.exploratory:
        _leave_out(
            left_out,
            default,
            "excluded_by_preference",
            rule,
            f"The {family.name} family is exploratory; left out because only "
            "evidence-based panels were requested.",
        )
        return None
    vendors = {v.casefold() for v in prefs.vendors}
    candidates = [
        p
        for p in catalog.panels_by_family[family.id]
        if excluded.isdisjoint(p.specimen.types)
        and (not vendors or p.vendor_neutral or p.vendor.casefold() in vendors)
    ]
    if not candidates:
        _leave_out(
            left_out,
            default,
            "excluded_by_preference",
            rule,
            f"No panel of the {family.name} family fits the specimen and vendor preferences.",
        )
        return None
    if family.on_request and family.id not in prefs.request_families:
        _leave_out(
            left_out,
            default,
            "not_requested",
            rule,
            f"The {family.name} family is suggested only on request "
            "(preferences.request_families).",
        )
        return None
    return [(candidates[0], tuple(candidates[1:]))]


def _leave_out(
    left_out: dict[str, Suppressed],
    panel: Panel,
    reason: SuppressionReason,
    rule: Rule,
    detail: str,
) -> None:
    """Rule 3: one reason per panel, the first in MAPPING order that applies."""
    existing = left_out.get(panel.id)
    if existing is not None and REASON_RANK[existing.reason] < REASON_RANK[reason]:
        return
    rules = (*existing.rules, rule.id) if existing and existing.reason == reason else (rule.id,)
    left_out[panel.id] = Suppressed(
        panel_id=panel.id, panel_name=panel.name, reason=reason, detail=detail, rules=rules
    )


def _level_reference(catalog: Catalog, panel: Panel, facts: _Facts) -> dt.date | None:
    """The date before which a drug level never counts (MAPPING.md rule 2)."""
    ctx = facts.context
    if panel.level_of is None:
        return None
    if panel.level_of == ctx.therapy:
        dates = [ctx.last_dose_change or ctx.therapy_started]
        therapy = catalog.therapies[ctx.therapy]
        dates += [facts.class_started.get(c) for c in therapy.titration_classes]
    else:
        dates = [facts.class_started.get(panel.level_of)]
    known = [d for d in dates if d is not None]
    return max(known, default=None)


def _last_tested(catalog: Catalog, entry: _Pending, facts: _Facts) -> dt.date | None:
    context = facts.context
    if not context.recent_tests:
        return None
    panels = catalog.panels_by_family[entry.panel.family] if entry.family_rule else (entry.panel,)
    reference = _level_reference(catalog, entry.panel, facts)
    dates: list[dt.date] = []
    for test in context.recent_tests:
        if test.abnormal:
            continue  # an abnormal result calls for a repeat, never satisfies a look-back
        # A level drawn on or before the dose change is not at the new steady state.
        if reference is not None and test.date <= reference:
            continue
        for panel in panels:
            if test.panel_id == panel.id or (
                test.system is not None
                and (test.system, test.code) in catalog.panel_codings[panel.id]
            ):
                dates.append(min(test.date, facts.as_of))
                break
    return max(dates, default=None)


def _advisories(catalog: Catalog, facts: _Facts) -> tuple[AdvisoryNote, ...]:
    ctx = facts.context
    index = catalog.advisory_index.get((ctx.therapy, ctx.phase))
    if index is None:
        return ()
    notes = [
        AdvisoryNote(
            id=a.id,
            text=_static_text(a.text) or a.text.format_map(facts.template_values),
            source=a.source,
            severity=a.severity,
        )
        for a in index.candidates(facts.groups, facts.findings, ctx.route)
        if _holds(a.when, facts)
    ]
    # MAPPING.md rule 6: critical first, then warning, then info; catalog order within (stable).
    notes.sort(key=lambda n: SEVERITY_RANK[n.severity])
    return tuple(notes)


@functools.lru_cache(maxsize=4096)
def _static_text(template: str) -> str | None:
    """A template without ``{fields}``, rendered once; None when it needs the context."""
    try:
        if template_fields(template):
            return None
    except ValueError:
        return None  # malformed: format_map raises as it always did
    return template.format_map({})
