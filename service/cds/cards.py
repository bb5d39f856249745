"""A stored recommendation as one CDS Hooks card with one draft lab order per panel."""

from __future__ import annotations

import uuid
from typing import Any, Final

import msgspec

from service.cds.detail import render_detail
from service.cds.wire import REFERENCE, Action, Card, Coding, HookCall, Link, Source, Suggestion
from service.usecases.cds_feedback import IssuedSuggestion
from service.usecases.dto import RecommendationOut, SuggestionOut

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
_SUMMARY_MAX: Final = 139
_CORE: Final = frozenset({"essential", "recommended"})


class IssuedCard(msgspec.Struct, frozen=True):
    uuid: str
    card: Card
    suggestions: tuple[IssuedSuggestion, ...]


def build_card(
    out: RecommendationOut,
    *,
    therapy_name: str,
    phase: str,
    notes: tuple[str, ...],
    call: HookCall,
    public_url: str,
) -> IssuedCard | None:
    """The card for a recommendation; None when it suggests nothing and advises nothing."""
    if not out.suggestions and not out.advisories:
        return None
    base = public_url.rstrip("/")
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
        indicator="warning" if out.advisories else "info",
        detail=render_detail(out, therapy_name, phase, notes),
        source=Source(
            label="labrec lab-panel suggestions",
            url=base + "/",
            topic=Coding(
                code=f"{out.therapy}-{phase}",
                system=TOPIC_SYSTEM,
                display=f"Lab panels for {therapy_name}, {phase} phase"[:200],
            ),
        ),
        suggestions=suggestions,
        selection_behavior="any" if suggestions else None,
        override_reasons=list(OVERRIDE_REASONS) if suggestions else [],
        links=[
            Link(
                label="Review and order in labrec",
                url=f"{base}/ui/recommendations/{out.recommendation_id}",
                type="absolute",
            )
        ],
    )
    return IssuedCard(uuid=card_uuid, card=card, suggestions=tuple(issued))


def summary(therapy_name: str, phase: str, out: RecommendationOut) -> str:
    """One sentence under 140 characters, e.g. 'Ketamine (racemic), baseline: 5 lab panels…'."""
    core = sum(1 for s in out.suggestions if s.priority in _CORE)
    optional = len(out.suggestions) - core
    if out.suggestions:
        counts = f"{core} lab panel{'s' if core != 1 else ''} suggested"
        if optional:
            counts += f", {optional} to consider"
    else:
        counts = "no lab panels due; see advisories"
    tail = f", {phase}: {counts}"
    room = _SUMMARY_MAX - len(tail)
    name = therapy_name if len(therapy_name) <= room else therapy_name[: room - 1] + "…"
    return (name + tail)[:_SUMMARY_MAX]


def _suggestion(
    item: SuggestionOut, suggestion_uuid: str, call: HookCall, recommendation_id: str
) -> Suggestion:
    label = ("Order " if item.priority in _CORE else "Consider ordering ") + item.panel.name
    codes = ", ".join(f"{c.code}" for c in item.panel.codes)
    return Suggestion(
        label=label[:200],
        uuid=suggestion_uuid,
        is_recommended=True if item.priority in _CORE else None,
        actions=[
            Action(
                type="create",
                description=f"Add a draft lab order: {item.panel.name} ({codes})"[:300],
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
