"""A stored recommendation as CDS Hooks cards: one ``critical`` card per safety gate, then one
card with a draft lab order per suggested panel (only pre-selected ones ``isRecommended``)."""

from __future__ import annotations

import uuid
from typing import Any, Final

import msgspec

from service.cds.detail import render_detail, text
from service.cds.wire import REFERENCE, Action, Card, Coding, HookCall, Link, Source, Suggestion
from service.usecases.cds_feedback import IssuedSuggestion
from service.usecases.dto import AdvisoryOut, RecommendationOut, SuggestionOut

TOPIC_SYSTEM: Final = "https://labrec.dev/fhir/CodeSystem/cds-topic"
LAB_CATEGORY: Final = {
    "coding": [
        {"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}
    ]
}
OVERRIDE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
#: From the CDS Hooks 3.0 suggested override-reason code system (displays verbatim).
OVERRIDE_REASONS: Final = tuple(
    Coding(code=code, system=OVERRIDE_SYSTEM, display=display)
    for code, display in (
        ("action-completed", "Recommended action was already completed"),
        ("indication-order-exists", "Patient has indication/order for intended action"),
        ("patient-ineligible", "Patient does not meet eligibility for recommended action"),
        (
            "recipient-disagrees-evidence",
            "Recipient disagrees with recommendation because of issues with the evidence",
        ),
        ("patient-refuses", "Patient refuses/declines (no context given)*"),
        ("too-costly-uncovered", "Recommended action is too costly or not covered by insurance"),
        ("service-not-available", "Treatment or service is not practically available"),
        ("cds-not-applicable", "PC CDS does not apply to patient"),
    )
)
#: Reasons to go ahead despite a critical gate (same code system, displays verbatim).
GATE_OVERRIDE_REASONS: Final = tuple(
    r
    for r in OVERRIDE_REASONS
    if r.code in ("action-completed", "recipient-disagrees-evidence", "cds-not-applicable")
)
_SUMMARY_MAX: Final = 139


class IssuedCard(msgspec.Struct, frozen=True):
    uuid: str
    card: Card
    suggestions: tuple[IssuedSuggestion, ...]


def build_cards(
    out: RecommendationOut,
    *,
    therapy_name: str,
    phase: str,
    notes: tuple[str, ...],
    call: HookCall,
    public_url: str,
) -> list[IssuedCard]:
    """The cards for a recommendation: each ``critical`` advisory (a safety gate) as its own
    ``critical`` card first, then the lab-panel card (omitted when it would be empty)."""
    base = public_url.rstrip("/")
    link = Link(
        label="Review and order in labrec",
        url=f"{base}/ui/recommendations/{out.recommendation_id}",
        type="absolute",
    )
    source = Source(
        label="labrec lab-panel suggestions",
        url=base + "/",
        topic=Coding(
            code=f"{out.therapy}-{phase}",
            system=TOPIC_SYSTEM,
            display=f"Lab panels for {therapy_name}, {phase} phase"[:200],
        ),
    )
    gates = [a for a in out.advisories if a.severity == "critical"]
    cards = [_gate_card(gate, therapy_name, source, link) for gate in gates]
    panels = _panel_card(out, therapy_name, phase, notes, call, source, link, len(gates))
    if panels is not None:
        cards.append(panels)
    return cards


def _gate_card(gate: AdvisoryOut, therapy_name: str, source: Source, link: Link) -> IssuedCard:
    """A safety gate alone on a card, so an EHR shows it as critical and it cannot drown in a
    long detail. It removes no labs (MAPPING.md): those stay on the lab-panel card."""
    card_uuid = str(uuid.uuid4())
    card = Card(
        uuid=card_uuid,
        summary=_shorten(f"{therapy_name}: {gate.text}"),
        indicator="critical",
        detail="\n".join(
            (
                f"**Safety gate — do not dose without specialist review.** {text(gate.text)}",
                "",
                f"Source: {text(gate.source)}.",
                "",
                "The lab panels for this therapy, if any, are on labrec's other card.",
            )
        ),
        source=source,
        override_reasons=list(GATE_OVERRIDE_REASONS),
        links=[link],
    )
    return IssuedCard(uuid=card_uuid, card=card, suggestions=())


def _panel_card(
    out: RecommendationOut,
    therapy_name: str,
    phase: str,
    notes: tuple[str, ...],
    call: HookCall,
    source: Source,
    link: Link,
    gates: int,
) -> IssuedCard | None:
    advisories = [a for a in out.advisories if a.severity != "critical"]
    if not out.suggestions and not advisories:
        return None
    issued: list[IssuedSuggestion] = []
    suggestions: list[Suggestion] = []
    for item in out.suggestions:
        suggestion_uuid = str(uuid.uuid4())
        issued.append(
            IssuedSuggestion(
                uuid=suggestion_uuid,
                panel_id=item.panel.id,
                priority=item.priority,
                rules=tuple(item.rules),
            )
        )
        suggestions.append(_suggestion(item, suggestion_uuid, call, out.recommendation_id))
    card_uuid = str(uuid.uuid4())
    card = Card(
        uuid=card_uuid,
        summary=summary(therapy_name, phase, out),
        indicator="warning" if any(a.severity == "warning" for a in advisories) else "info",
        detail=render_detail(out, therapy_name, phase, notes, gates=gates),
        source=source,
        suggestions=suggestions,
        selection_behavior="any" if suggestions else None,
        override_reasons=list(OVERRIDE_REASONS) if suggestions else [],
        links=[link],
    )
    return IssuedCard(uuid=card_uuid, card=card, suggestions=tuple(issued))


def _shorten(sentence: str) -> str:
    """At most ``_SUMMARY_MAX`` characters: the whole text, else its first sentence, else cut
    at a word with an ellipsis (the card's detail has the whole text)."""
    if len(sentence) <= _SUMMARY_MAX:
        return sentence
    first = sentence.split(". ", 1)[0] + "."
    if len(first) <= _SUMMARY_MAX:
        return first
    cut = sentence[: _SUMMARY_MAX - 1].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return cut + "…"


def summary(therapy_name: str, phase: str, out: RecommendationOut) -> str:
    """One sentence under 140 characters, e.g. 'Ketamine (racemic), baseline: 5 lab panels…'."""
    chosen = sum(1 for s in out.suggestions if s.preselected)
    optional = len(out.suggestions) - chosen
    if out.suggestions:
        counts = f"{chosen} lab panel{'s' if chosen != 1 else ''} suggested"
        if optional:
            counts += f", {optional} optional"
    else:
        counts = "no lab panels due; see advisories"
    tail = f", {phase}: {counts}"
    room = _SUMMARY_MAX - len(tail)
    name = therapy_name if len(therapy_name) <= room else therapy_name[: room - 1] + "…"
    return (name + tail)[:_SUMMARY_MAX]


def suggestion_label(item: SuggestionOut) -> str:
    """Only pre-selected safety panels read as an instruction; complementary ones are opt-in
    and never say "Order" (MAPPING.md: honest pre-selection)."""
    if item.preselected:
        return f"Order {item.panel.name}"
    if item.panel.tier == "complementary":
        return f"Optional, association-level evidence: {item.panel.name}"
    return f"Consider ordering {item.panel.name}"


def _suggestion(
    item: SuggestionOut, suggestion_uuid: str, call: HookCall, recommendation_id: str
) -> Suggestion:
    codes = ", ".join(f"{c.code}" for c in item.panel.codes)
    return Suggestion(
        label=suggestion_label(item)[:200],
        uuid=suggestion_uuid,
        is_recommended=True if item.preselected else None,
        actions=[
            Action(
                type="create",
                description=f"Adds a draft lab request: {item.panel.name} ({codes})"[:300],
                resource=service_request(item, suggestion_uuid, call, recommendation_id),
            )
        ],
    )


def service_request(
    item: SuggestionOut, suggestion_uuid: str, call: HookCall, recommendation_id: str
) -> dict[str, Any]:
    """A FHIR R4 draft laboratory ServiceRequest for one suggested panel."""
    panel = item.panel
    coding = [
        {"system": c.system, "code": c.code, **({"display": c.display} if c.display else {})}
        for c in panel.codes
    ]
    note = f"Specimen: {panel.specimen} ({panel.specimen_collection})."
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{suggestion_uuid}"}],
        "status": "draft",
        "intent": "order",
        "category": [LAB_CATEGORY],
        "code": {"coding": coding, "text": panel.name},
        "subject": {"reference": f"Patient/{call.patient_id}"},
        "note": [{"text": f"{note} Suggested by labrec recommendation {recommendation_id}."}],
    }
    if call.encounter_id is not None:
        resource["encounter"] = {"reference": f"Encounter/{call.encounter_id}"}
    if call.user_id.startswith(("Practitioner/", "PractitionerRole/")) and REFERENCE.match(
        call.user_id
    ):
        resource["requester"] = {"reference": call.user_id}
    return resource
