"""The recommendation engine: a resolved therapy context and a catalog in, a Recommendation out.

Pure and deterministic: the same context, catalog and date always give the same output. Only the
rules indexed under the context's therapy are evaluated.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import TypeVar

from service.domain.catalog import Catalog, Evidence, Panel, Rule, When, template_fields
from service.domain.context import TherapyContext, default_pregnancy_possible
from service.domain.recommendation import (
    AdvisoryNote,
    Recommendation,
    Suggestion,
    Suppressed,
)
from service.domain.vocabulary import (
    PRIORITY_RANK,
    SEVERITY_RANK,
    TIER_RANK,
    Priority,
    SuppressionReason,
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Facts:
    """The context plus what is derived from it once per request."""

    context: TherapyContext
    groups: frozenset[str]
    pregnancy_possible: bool
    template_values: dict[str, str]


@dataclass(slots=True)
class _Pending:
    """A panel suggested by one or more rules, merged per MAPPING.md cross-cutting rule 1."""

    panel: Panel
    priority: Priority
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
    facts = _facts(catalog, context)
    as_of = context.as_of or today
    pending: dict[str, _Pending] = {}
    left_out: dict[str, Suppressed] = {}

    index = catalog.rule_index.get((context.therapy, context.phase))
    rules = index.candidates(facts.groups, context.findings, context.route) if index else ()
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
                    _not_applicable_detail(rule.applicable_if),
                )
            continue
        chosen = _choose_panel(catalog, rule, context, left_out)
        if chosen is None:
            continue
        for panel, alternatives in chosen:
            entry = pending.get(panel.id)
            if entry is None:
                entry = pending[panel.id] = _Pending(
                    panel=panel,
                    priority=rule.priority,
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
        last = _last_tested(catalog, entry.panel, context, as_of)
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


def _facts(catalog: Catalog, context: TherapyContext) -> _Facts:
    groups = catalog.group_index.groups_of(context.condition_codes)
    pregnancy = (
        context.pregnancy_possible
        if context.pregnancy_possible is not None
        else default_pregnancy_possible(context.sex, context.age)
    )
    group_names = [catalog.condition_groups[g].name for g in sorted(groups)]
    values = {
        "therapy": catalog.therapies[context.therapy].name,
        "route": context.route or "unspecified route",
        "phase": context.phase,
        "conditions": ", ".join(group_names) or "no matched condition",
        "findings": ", ".join(sorted(f.replace("_", " ") for f in context.findings)) or "none",
        "age": str(context.age) if context.age is not None else "unknown",
        "sex": context.sex,
    }
    return _Facts(context, groups, pregnancy, values)


def _holds(when: When, facts: _Facts) -> bool:
    ctx = facts.context
    age = ctx.age
    return (
        (not when.routes or ctx.route in when.routes)
        and (not when.findings_any or not ctx.findings.isdisjoint(when.findings_any))
        and ctx.findings.isdisjoint(when.findings_none)
        and (
            not when.condition_groups_any or not facts.groups.isdisjoint(when.condition_groups_any)
        )
        and (not when.sex_any or ctx.sex in when.sex_any)
        and (when.age_min is None or (age is not None and age >= when.age_min))
        and (when.age_max is None or (age is not None and age <= when.age_max))
        and (when.pregnancy_possible is None or facts.pregnancy_possible == when.pregnancy_possible)
    )


def _not_applicable_detail(precondition: When) -> str:
    if precondition.pregnancy_possible is True:
        return "Pregnancy is not possible for this patient (by sex, age or the stated context)."
    return "The patient context does not meet this test's precondition."


def _rule_panels(catalog: Catalog, rule: Rule) -> list[Panel]:
    if rule.family is not None:
        return [catalog.panels_by_family[rule.family][0]]
    return [catalog.panels[p] for p in rule.panels]


def _choose_panel(
    catalog: Catalog, rule: Rule, context: TherapyContext, left_out: dict[str, Suppressed]
) -> list[tuple[Panel, tuple[Panel, ...]]] | None:
    """The panels a matched rule suggests, after preferences; None when all were excluded."""
    prefs = context.preferences
    if rule.family is None:
        # Safety panels never disappear because of a preference; a specimen fallback may apply.
        chosen: list[tuple[Panel, tuple[Panel, ...]]] = []
        for panel_id in rule.panels:
            panel = catalog.panels[panel_id]
            if panel.specimen.type in prefs.exclude_specimen_types and panel.specimen_fallback:
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
        if p.specimen.type not in prefs.exclude_specimen_types
        and (not vendors or p.vendor.casefold() in vendors)
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
    return [(candidates[0], tuple(candidates[1:]))]


def _leave_out(
    left_out: dict[str, Suppressed],
    panel: Panel,
    reason: SuppressionReason,
    rule: Rule,
    detail: str,
) -> None:
    existing = left_out.get(panel.id)
    rules = (*existing.rules, rule.id) if existing and existing.reason == reason else (rule.id,)
    left_out[panel.id] = Suppressed(
        panel_id=panel.id, panel_name=panel.name, reason=reason, detail=detail, rules=rules
    )


def _last_tested(
    catalog: Catalog, panel: Panel, context: TherapyContext, as_of: dt.date
) -> dt.date | None:
    if not context.recent_tests:
        return None
    codings = catalog.panel_codings[panel.id]
    dates = [
        min(test.date, as_of)
        for test in context.recent_tests
        if test.panel_id == panel.id
        or (test.system is not None and (test.system, test.code) in codings)
    ]
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
        for a in index.candidates(facts.groups, ctx.findings, ctx.route)
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
