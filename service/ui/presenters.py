"""Shapes the use cases' output for the templates: tiers, evidence links, review totals.

Presentation only: nothing here decides what is suggested or ordered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final, get_args

import msgspec

from service.domain.catalog import Catalog, Evidence, Panel
from service.domain.vocabulary import FamilyId
from service.ui import labels
from service.usecases.dto import (
    EvidenceOut,
    OrderRequest,
    RecommendationOut,
    RecommendationRequest,
    SuggestionOut,
)

TIER_ORDER: Final = ("safety", "complementary")


class TierGroup(msgspec.Struct, frozen=True):
    tier: str
    suggestions: list[SuggestionOut]


class ReviewLine(msgspec.Struct, frozen=True):
    id: str
    name: str
    specimen: str
    specimen_collection: str
    turnaround: str | None
    price: str | None


class ReviewSummary(msgspec.Struct, frozen=True):
    lines: list[ReviewLine]
    specimen_types: list[str]
    price_total: str | None
    priced: int


def by_tier(recommendation: RecommendationOut) -> list[TierGroup]:
    return [
        TierGroup(tier=tier, suggestions=items)
        for tier in TIER_ORDER
        if (items := [s for s in recommendation.suggestions if s.panel.tier == tier])
    ]


def prechecked(recommendation: RecommendationOut) -> list[str]:
    """Panels ticked when the page opens: the engine's ``preselected`` ones (safety-tier
    essential/recommended); complementary panels are opt-in."""
    return [s.panel.id for s in recommendation.suggestions if s.preselected]


def evidence_links(evidence: EvidenceOut | Evidence) -> list[tuple[str, str]]:
    """(text, href) for each way to read the source: DOI, PubMed, then any URL."""
    links = []
    if evidence.doi:
        links.append((f"doi:{evidence.doi}", f"https://doi.org/{evidence.doi}"))
    if evidence.pmid:
        links.append((f"PMID {evidence.pmid}", f"https://pubmed.ncbi.nlm.nih.gov/{evidence.pmid}/"))
    if evidence.url and evidence.url.startswith("https://"):
        links.append((evidence.label or "source", evidence.url))
    return links


def review(catalog: Catalog, panel_ids: Sequence[str]) -> ReviewSummary:
    """What the order will ask of the patient and cost, from the catalog's panel data."""
    panels = [catalog.panels[p] for p in panel_ids if p in catalog.panels]
    currencies = {p.price.currency for p in panels if p.price}
    priced = [p for p in panels if p.price]
    total: str | None = None
    if priced and len(currencies) == 1:
        amount = sum(p.price.amount for p in priced if p.price)
        total = f"{amount:,.2f} {currencies.pop()}"
    return ReviewSummary(
        lines=[_line(p) for p in panels],
        specimen_types=sorted({p.specimen.type for p in panels}),
        price_total=total,
        priced=len(priced),
    )


def _line(panel: Panel) -> ReviewLine:
    return ReviewLine(
        id=panel.id,
        name=panel.name,
        specimen=panel.specimen.type,
        specimen_collection=panel.specimen.collection,
        turnaround=panel.turnaround,
        price=f"{panel.price.amount:,.2f} {panel.price.currency}" if panel.price else None,
    )


def order_key(session_secret: str, recommendation_id: str, order: OrderRequest) -> str:
    """The Idempotency-Key the review page puts in its form.

    Derived from the session and the order's content, so rendering the review again (refresh,
    back button, a second tab) yields the same key: the same order is placed at most once.
    """
    digest = hashlib.sha256(
        b"|".join((session_secret.encode(), recommendation_id.encode(), msgspec.json.encode(order)))
    ).hexdigest()
    return f"ui-{digest[:48]}"


def citing_evidence(catalog: Catalog, panel: Panel) -> list[Evidence]:
    """Evidence cited by the rules that can suggest this panel (directly or via its family)."""
    ids: list[str] = []
    for rule in catalog.rules.values():
        if panel.id in rule.panels or rule.family == panel.family:
            ids.extend(rule.evidence)
    return [catalog.evidence[e] for e in dict.fromkeys(ids) if e in catalog.evidence]


def therapies_suggesting(catalog: Catalog, panel: Panel) -> list[str]:
    names: Iterable[str] = (
        catalog.therapies[t].name
        for rule in catalog.rules.values()
        if panel.id in rule.panels or rule.family == panel.family
        for t in rule.therapies
        if t in catalog.therapies
    )
    return list(dict.fromkeys(names))


def condition_options(catalog: Catalog) -> list[tuple[str, str]]:
    """(ICD-10-CM code or prefix, label) for the conditions' search list, codes merged."""
    names: dict[str, list[str]] = {}
    for group in catalog.condition_groups.values():
        for code in group.codes:
            names.setdefault(code, []).append(group.name)
        for prefix in group.prefixes:
            names.setdefault(prefix, []).append(f"{group.name} ({prefix} and below)")
    return [(code, f"{code} — {'; '.join(names[code])}") for code in sorted(names)]


def requestable_families(catalog: Catalog) -> list[tuple[str, str]]:
    """(id, name) of the complementary families a request may ask for, by the catalog's names."""
    names = {f.id: f.name for f in catalog.families.values()}
    return [(family_id, names.get(family_id, family_id)) for family_id in get_args(FamilyId)]


def context_more(catalog: Catalog, context: RecommendationRequest) -> list[str]:
    """The v2 context under the result's heading, so the reader sees what the gates rest on."""
    parts: list[str] = []
    if context.setting:
        parts.append(labels.SETTINGS.get(context.setting, context.setting))
    if context.patient.pregnant:
        parts.append("known pregnancy")
    if context.therapy_started:
        parts.append(f"treatment started {context.therapy_started.isoformat()}")
    if context.last_dose_change:
        parts.append(f"last dose change {context.last_dose_change.isoformat()}")
    names = [
        catalog.medication_classes[m.class_id].name
        if m.class_id in catalog.medication_classes
        else (m.class_id or (m.code.code if m.code else "?"))
        for m in context.medications
    ]
    if names:
        parts.append("also taking: " + ", ".join(names))
    return parts
