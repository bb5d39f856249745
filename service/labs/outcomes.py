"""What a call to the lab came to, in terms the dispatcher can act on without reading HTTP.

``Retryable`` means "send the same thing again later"; ``Rejected`` means "the lab will never take
this as is" (dead-letter). Reasons and messages never carry the patient data we sent: they end up
in outbox rows and logs.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from service.labs.status import LabOrderStatus


class Accepted(msgspec.Struct, frozen=True, tag=True):
    """The lab holds the order; ``lab_order_id`` is its accession number."""

    lab_order_id: str


class Cancelled(msgspec.Struct, frozen=True, tag=True):
    lab_order_id: str


class Retryable(msgspec.Struct, frozen=True, tag=True):
    """Outcome unknown or transient; ``retry_after`` (seconds) is the lab's own hint, if any."""

    reason: str
    retry_after: float | None = None


class Rejected(msgspec.Struct, frozen=True, tag=True):
    """A permanent refusal; ``message`` is the lab's OperationOutcome text when it sent one."""

    status: int
    message: str


SubmitOutcome = Accepted | Retryable | Rejected
CancelOutcome = Cancelled | Retryable | Rejected


class LabStatus(msgspec.Struct, frozen=True):
    """The lab's view of one order, as read by the reconciliation poll."""

    order_id: str
    lab_order_id: str
    status: LabOrderStatus
    updated_at: datetime | None = None
    message: str | None = None


class LabError(Exception):
    """A status read failed; ``retryable`` says whether asking again later can help."""

    def __init__(self, reason: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status
