"""The order state machine.

Lab progress only moves forward: an out-of-order or repeated lab event never moves an order back.
``failed`` (retry budget spent) is the one state an operator can send back to ``queued``.
"""

from __future__ import annotations

from typing import Final, Literal

OrderStatus = Literal[
    "queued", "submitted", "received", "in_progress", "resulted", "cancelled", "rejected", "failed"
]

TERMINAL: Final[frozenset[str]] = frozenset({"resulted", "cancelled", "rejected"})
#: Forward progress through the lab; higher is further along.
_PROGRESS: Final[dict[str, int]] = {
    "queued": 0,
    "failed": 0,
    "submitted": 1,
    "received": 2,
    "in_progress": 3,
    "resulted": 4,
}
CANCELLABLE: Final[frozenset[str]] = frozenset(
    {"queued", "submitted", "received", "in_progress", "failed"}
)


class IllegalTransition(ValueError):
    """The requested change is not allowed from the order's current status."""

    def __init__(self, current: str, target: str, why: str) -> None:
        super().__init__(f"cannot move an order from '{current}' to '{target}': {why}")
        self.current = current
        self.target = target


def after_lab_event(current: str, reported: str) -> str | None:
    """The status a lab event leads to, or None when the event must be ignored.

    Terminal orders stay as they are; progress never goes backwards; the lab may reject or
    cancel anything it has not resulted.
    """
    if current in TERMINAL:
        return None
    if reported in ("rejected", "cancelled"):
        return reported
    if reported not in _PROGRESS or _PROGRESS[reported] <= _PROGRESS[current]:
        return None
    return reported


def after_dispatch_accepted(current: str) -> OrderStatus | None:
    """The lab accepted the requisition; a lab event may already have moved the order further."""
    if current in ("queued", "failed"):
        return "submitted"
    return None


def after_dispatch_final_failure(
    current: str, outcome: Literal["rejected", "failed"]
) -> OrderStatus | None:
    """The lab refused the requisition (``rejected``) or the retry budget ran out (``failed``)."""
    return outcome if current in ("queued", "failed") else None


def cancel(current: str) -> OrderStatus:
    if current not in CANCELLABLE:
        raise IllegalTransition(
            current,
            "cancelled",
            "only orders not yet resulted, cancelled or rejected can be cancelled",
        )
    return "cancelled"


def requeue(current: str) -> OrderStatus:
    if current != "failed":
        raise IllegalTransition(current, "queued", "only failed orders can be re-queued")
    return "queued"
