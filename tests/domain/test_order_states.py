"""The order state machine: forward-only lab progress, terminal states, cancel and re-queue."""

from __future__ import annotations

import pytest

from service.domain import orders as states


@pytest.mark.parametrize(
    "current,reported,expected",
    [
        ("submitted", "received", "received"),
        ("received", "in_progress", "in_progress"),
        ("in_progress", "resulted", "resulted"),
        ("submitted", "resulted", "resulted"),  # skipped steps are fine
        ("queued", "received", "received"),  # event raced ahead of our own dispatch record
        ("failed", "received", "received"),  # the lab had it after all
        ("in_progress", "received", None),  # late event: never backwards
        ("received", "received", None),  # repeat
        ("resulted", "cancelled", None),  # terminal stays
        ("cancelled", "received", None),
        ("rejected", "in_progress", None),
        ("in_progress", "rejected", "rejected"),
        ("submitted", "cancelled", "cancelled"),
        ("submitted", "bogus", None),
    ],
)
def test_after_lab_event(current: str, reported: str, expected: str | None) -> None:
    assert states.after_lab_event(current, reported) == expected


def test_dispatch_outcomes_only_move_unsent_orders() -> None:
    assert states.after_dispatch_accepted("queued") == "submitted"
    assert states.after_dispatch_accepted("received") is None
    assert states.after_dispatch_accepted("cancelled") is None
    assert states.after_dispatch_final_failure("queued", "rejected") == "rejected"
    assert states.after_dispatch_final_failure("queued", "failed") == "failed"
    assert states.after_dispatch_final_failure("cancelled", "failed") is None


@pytest.mark.parametrize("current", ["queued", "submitted", "received", "in_progress", "failed"])
def test_cancel_allowed_before_a_result(current: str) -> None:
    assert states.cancel(current) == "cancelled"


@pytest.mark.parametrize("current", ["resulted", "cancelled", "rejected"])
def test_cancel_refused_when_terminal(current: str) -> None:
    with pytest.raises(states.IllegalTransition, match=current):
        states.cancel(current)


def test_requeue_only_from_failed() -> None:
    assert states.requeue("failed") == "queued"
    with pytest.raises(states.IllegalTransition):
        states.requeue("submitted")
