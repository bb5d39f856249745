"""Answering one hook call: find the therapy, gather the context, recommend, issue the card.

The recommendation itself is the REST use case (``RecommendationService.stage``): the CDS
face only translates the hook into a ``RecommendationRequest`` and the result into a card. The
stored recommendations, their audit rows and the issued cards of one call are one atomic write,
group-committed with concurrent calls (and REST recommendations) before the EHR sees a card.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec

from service.cds.auth import CdsCaller
from service.cds.cards import build_cards
from service.cds.discovery import PREFETCH
from service.cds.fhir_read import TherapyOrder, therapy_orders
from service.cds.prefetch import Slot
from service.cds.runtime import CdsRuntime
from service.cds.translate import active_orders, translate
from service.cds.wire import Card, CardsResponse, HookCall, operation_outcome
from service.persistence.group_insert import Staging
from service.usecases.errors import UseCaseError

log = logging.getLogger("labrec.cds.answer")

#: Cards for at most this many distinct catalog therapies among the focused orders.
MAX_CARDS: Final = 3
_CLOSED: Final = frozenset({"cancelled", "entered-in-error", "stopped", "completed", "unknown"})


class HookAnswer(msgspec.Struct, frozen=True):
    status: int
    body: Any


async def answer_hook(
    runtime: CdsRuntime, caller: CdsCaller, service_id: str, call: HookCall
) -> HookAnswer:
    container = runtime.container
    catalog = container.catalog
    if call.hook == "patient-view":
        slots = await _resolve(runtime, caller, call)
        targets: dict[str, TherapyOrder | None] = {
            order.therapy: None for order in active_orders(catalog, slots)
        }
    else:
        targets = {}
        for order in therapy_orders(catalog, _focused_drafts(call)):
            if order.status not in _CLOSED:
                targets.setdefault(order.therapy, order)
        if not targets:
            # Nothing labrec knows is being ordered: no card, and no FHIR reads either.
            return HookAnswer(200, CardsResponse(cards=[]))
        slots = await _resolve(runtime, caller, call)
    if not targets:
        return HookAnswer(200, CardsResponse(cards=[]))
    if slots["patient"].state == "missing":
        return HookAnswer(
            412,
            operation_outcome(
                "processing",
                "Cannot suggest lab panels: the patient (sex, birth date) was neither prefetched "
                "nor readable from fhirServer.",
                diagnostics="CDS Hooks prefetch key 'patient' was absent and no usable "
                "fhirServer/fhirAuthorization was given (or the read failed).",
            ),
        )
    principal = caller.principal()
    today = container.clock().date()
    gates: list[Card] = []
    cards: list[Card] = []
    staged = Staging()
    for therapy, draft in list(targets.items())[:MAX_CARDS]:
        translation = translate(catalog, therapy, draft, slots, today)
        try:
            out = container.recommendations.stage(principal, translation.request, staged)
        except UseCaseError as exc:
            # The translation only produces values the catalog accepts; if that ever breaks,
            # leave the card out rather than failing the EHR's workflow.
            log.error("cds translation rejected", extra={"error": type(exc).__name__})
            continue
        for issued in build_cards(
            out,
            therapy_name=catalog.therapies[therapy].name,
            phase=translation.phase,
            notes=translation.notes,
            call=call,
            public_url=runtime.base_url,
        ):
            runtime.feedback.stage_issued(
                staged,
                principal,
                card_uuid=issued.uuid,
                service_id=service_id,
                hook=call.hook,
                hook_instance=call.hook_instance,
                recommendation_id=out.recommendation_id,
                therapy=therapy,
                suggestions=issued.suggestions,
            )
            (gates if issued.card.indicator == "critical" else cards).append(issued.card)
    if staged.writes:
        await container.recommendations.writes.commit(staged)
    # Safety gates first, whatever therapy they belong to.
    return HookAnswer(200, CardsResponse(cards=gates + cards))


async def _resolve(runtime: CdsRuntime, caller: CdsCaller, call: HookCall) -> dict[str, Slot]:
    """The prefetch slots, reading absent keys only from the caller's registered FHIR servers."""
    return await runtime.reader.resolve(
        call, PREFETCH, fhir_servers=caller.fhir_servers, client_id=caller.client_id
    )


def _focused_drafts(call: HookCall) -> list[dict[str, Any]]:
    """order-select: the selected drafts (the rest is context); otherwise every draft."""
    if call.hook == "order-select" and call.selections:
        chosen = set(call.selections)
        selected = [
            draft
            for draft in call.draft_orders
            if f"{draft.get('resourceType')}/{draft.get('id')}" in chosen
        ]
        if selected:
            return selected
    return call.draft_orders
