"""The CDS services labrec offers, with their prefetch templates (GET /cds-services).

Templates use only CDS Hooks 2.0 tokens (root-level ``{{context.patientId}}``) and the widely
supported FHIR search subset: reference and token parameters, ``_sort`` and ``_count``.
"""

from __future__ import annotations

from typing import Final

from service.cds.wire import Discovery, ServiceDescription

#: Prefetch keys and templates; the same query is used when labrec reads from ``fhirServer``.
PREFETCH: Final[dict[str, str]] = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "labs": "Observation?patient={{context.patientId}}&category=laboratory&_sort=-date&_count=50",
    "labOrders": (
        "ServiceRequest?patient={{context.patientId}}&status=active,completed"
        "&_sort=-authored&_count=50"
    ),
}

_USAGE: Final = (
    "Needs the patient (sex, birth date) from prefetch or from fhirServer; without it the call "
    "answers 412. Conditions, active medications, recent lab results and lab orders refine the "
    "suggestions (retest intervals, phase) and are read from fhirServer when not prefetched."
)

SERVICES: Final[dict[str, ServiceDescription]] = {
    s.id: s
    for s in (
        ServiceDescription(
            hook="order-select",
            id="labrec-order-select",
            title="labrec: lab panels for the selected therapy order",
            description="When a ketamine, esketamine or other catalog therapy is selected, "
            "suggests the safety and complementary lab panels for the therapy context as draft "
            "laboratory ServiceRequests, with rationale and evidence.",
            prefetch=PREFETCH,
            usage_requirements=_USAGE,
        ),
        ServiceDescription(
            hook="order-sign",
            id="labrec-order-sign",
            title="labrec: lab panels before the therapy order is signed",
            description="Before a catalog therapy order is signed, suggests the lab panels "
            "still missing for the therapy context as draft laboratory ServiceRequests.",
            prefetch=PREFETCH,
            usage_requirements=_USAGE,
        ),
        ServiceDescription(
            hook="patient-view",
            id="labrec-patient-view",
            title="labrec: lab panels due for a patient on a catalog therapy",
            description="When the chart of a patient with an active catalog therapy order "
            "(e.g. ketamine, esketamine, lithium) is opened, suggests the lab panels due for "
            "the therapy phase.",
            prefetch=PREFETCH,
            usage_requirements=_USAGE,
        ),
    )
}

DISCOVERY: Final = Discovery(services=list(SERVICES.values()))
