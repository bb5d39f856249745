"""The card's ``detail``: GitHub-flavoured Markdown with rationale, evidence, advisories and
what was left out, plus how labrec read the context. No HTML (clients differ in what they allow).
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
    "critique": "critique",
}
_REASONS: Final = {
    "recently_tested": "recently tested",
    "excluded_by_preference": "excluded by preference",
    "not_applicable": "not applicable",
    "not_indicated_in_phase": "not indicated in this phase",
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
    out: RecommendationOut, therapy_name: str, phase: str, notes: tuple[str, ...]
) -> str:
    lines: list[str] = [
        f"**Therapy context**: {text(therapy_name)}, {phase} phase "
        f"(catalog {text(out.catalog_version)}).",
        "",
    ]
    if out.suggestions:
        lines += ["### Suggested panels", ""]
        lines += [_suggestion(s) for s in out.suggestions]
        lines.append("")
    if out.advisories:
        lines += ["### Advisories", ""]
        lines += [f"- {text(a.text)} _({text(a.source)})_" for a in out.advisories]
        lines.append("")
    if out.suppressed:
        lines += ["### Left out", ""]
        lines += [
            f"- **{text(s.panel_name)}**: {_REASONS.get(s.reason, s.reason)}. {text(s.detail)}"
            for s in out.suppressed
        ]
        lines.append("")
    if notes:
        lines += ["### How labrec read this order", ""]
        lines += [f"- {text(note)}" for note in notes]
        lines.append("")
    lines.append(f"_{text(out.disclaimer)}_")
    detail = "\n".join(lines)
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 60].rsplit("\n", 1)[0] + "\n\n_Shortened; see labrec._"
    return detail


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
