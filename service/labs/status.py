"""Lab-side order statuses and their FHIR ``Task.status`` spelling.

One table serves the client (reading the lab) and the sandbox (being the lab), so the two cannot
drift apart.
"""

from __future__ import annotations

from typing import Final, Literal

#: What the lab can tell us about an order; a subset of labrec's own order statuses.
LabOrderStatus = Literal[
    "submitted", "received", "in_progress", "resulted", "rejected", "cancelled"
]
#: Statuses announced by webhook ("submitted" is our own doing, never an event).
LabEventStatus = Literal["received", "in_progress", "resulted", "rejected", "cancelled"]

TERMINAL: Final[frozenset[str]] = frozenset({"resulted", "rejected", "cancelled"})

#: FHIR Task.status -> our status. Unlisted Task statuses are a protocol error, not a guess.
FROM_TASK_STATUS: Final[dict[str, LabOrderStatus]] = {
    "requested": "submitted",
    "received": "received",
    "accepted": "in_progress",
    "in-progress": "in_progress",
    "completed": "resulted",
    "rejected": "rejected",
    "cancelled": "cancelled",
}

#: Our status -> the FHIR Task.status a lab (the sandbox) reports.
TO_TASK_STATUS: Final[dict[LabOrderStatus, str]] = {
    "submitted": "requested",
    "received": "received",
    "in_progress": "in-progress",
    "resulted": "completed",
    "rejected": "rejected",
    "cancelled": "cancelled",
}
