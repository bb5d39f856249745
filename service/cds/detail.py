"""The lab-panel card's ``detail``: GitHub-flavoured Markdown with advisories, how labrec read
the context, rationale, evidence and what was left out. No HTML (clients differ in what they allow).
"""

from __future__ import annotations

from typing import Final

from service.usecases.dto import EvidenceOut, RecommendationOut, SuggestionOut

_MAX_DETAIL: Final = 12_000
_GRADES: Final = {
    "regulatory_label": "regulatory label",
    "guideline": "guideline",
    "systematic_review": "systematic review",
    "cohort": "cohort study",
    "case_series": "case series",
    "association": "association-level evidence",
    "clinical_convention": "clinical convention",
    "expert_consensus": "expert consensus",
    "critique": "critique",
}
_REASONS: Final = {
    "recently_tested": "recently tested",
    "excluded_by_preference": "excluded by preference",
    "not_applicable": "not applicable",
    "not_indicated_in_phase": "not indicated in this phase",
    "not_requested": "not requested",
}


def text(value: str) -> str:
    """Catalog or EHR text made inert for Markdown renderers: no HTML, no stray emphasis."""
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("[", "\\[")
        .replace("]", "\\]")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def render_detail(
    out: RecommendationOut,
    therapy_name: str,
    phase: str,
    notes: tuple[str, ...],
    *,
    gates: int = 0,
) -> str:
    """The lab-panel card's detail, most important first so a shortened detail loses the least:
    context, a pointer to the critical cards (``gates`` of them; each gate is its own card),
    warning then routine advisories, how the hook was read, safety panels, what was left out,
    and last the opt-in complementary panels."""
    lines: list[str] = [
        f"**Therapy context**: {text(therapy_name)}, {phase} phase "
        f"(catalog {text(out.catalog_version)}).",
        "",
    ]
    if gates:
        lines += [
            f"**{'A safety gate applies' if gates == 1 else f'{gates} safety gates apply'}**: "
            "see the critical card.",
            "",
        ]
    advisories = [a for a in out.advisories if a.severity != "critical"]
    if advisories:
        lines += ["### Advisories", ""]
        lines += [
            f"- {'**Check before dosing**: ' if a.severity == 'warning' else ''}"
            f"{text(a.text)} _({text(a.source)})_"
            for a in advisories
        ]
        lines.append("")
    if notes:
        lines += ["### How labrec read this order", ""]
        lines += [f"- {text(note)}" for note in notes]
        lines.append("")
    safety = [s for s in out.suggestions if s.panel.tier == "safety"]
    optional = [s for s in out.suggestions if s.panel.tier != "safety"]
    if safety:
        lines += ["### Suggested panels", ""]
        lines += [_suggestion(s) for s in safety]
        lines.append("")
    if out.suppressed:
        lines += ["### Left out", ""]
        lines += [
            f"- **{text(s.panel_name)}**: {_REASONS.get(s.reason, s.reason)}"
            f"{f' (next due {s.next_due.isoformat()})' if s.next_due else ''}. {text(s.detail)}"
            for s in out.suppressed
        ]
        lines.append("")
    if optional:
        lines += ["### Optional panels (association-level evidence, opt-in)", ""]
        lines += [_suggestion(s) for s in optional]
        lines.append("")
    disclaimer = f"_{text(out.disclaimer)}_"
    detail = "\n".join(lines)
    room = _MAX_DETAIL - len(disclaimer) - 40
    if len(detail) > room:
        detail = detail[:room].rsplit("\n", 1)[0] + "\n\n_Shortened; see labrec._\n"
    return detail + disclaimer


def _suggestion(s: SuggestionOut) -> str:
    parts = [f"- **{text(s.panel.name)}** ({s.priority}; {text(s.panel.vendor)}): "]
    parts.append(text(s.rationale))
    if s.cautions:
        parts.append(" Caution: " + " ".join(text(c) for c in s.cautions))
    if s.evidence:
        parts.append(" Evidence: " + "; ".join(_evidence(e) for e in s.evidence) + ".")
    if s.alternatives:
        parts.append(" Alternatives: " + ", ".join(text(a.name) for a in s.alternatives) + ".")
    return "".join(parts)


def _evidence(e: EvidenceOut) -> str:
    grade = _GRADES.get(e.grade, e.grade)
    link = None
    if e.doi:
        link = f"https://doi.org/{e.doi}"
    elif e.pmid:
        link = f"https://pubmed.ncbi.nlm.nih.gov/{e.pmid}/"
    elif e.url:
        link = e.url
    citation = text(e.citation)
    if link and " " not in link and ")" not in link:
        return f"[{citation}]({link}) ({grade})"
    return f"{citation} ({grade})"
