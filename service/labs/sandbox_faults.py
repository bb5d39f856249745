"""Deterministic fault injection for the sandbox lab.

Each FHIR request draws exactly four numbers from one seeded RNG, whatever happens to it, so a
given seed and request sequence always yields the same faults: a failing test can be replayed.
"""

from __future__ import annotations

import random
from typing import Literal

import msgspec

from service.labs.sandbox_config import FaultSettings

RetryAfterForm = Literal["none", "seconds", "http-date"]


class FaultPlan(msgspec.Struct, frozen=True):
    """What to do to one request. ``error`` wins over the rest (nothing is processed)."""

    latency: float = 0.0
    error: bool = False
    retry_after: RetryAfterForm = "none"
    hang: bool = False
    drop: bool = False


class FaultInjector:
    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)  # noqa: S311 - fault dice, not cryptography

    def reset(self, settings: FaultSettings) -> None:
        """New settings restart the sequence, so the same POST body replays the same faults."""
        self.settings = settings
        self._rng = random.Random(settings.seed)  # noqa: S311 - fault dice, not cryptography

    def draw(self) -> FaultPlan:
        s = self.settings
        u_error, u_retry_after, u_hang, u_drop = (self._rng.random() for _ in range(4))
        forms: tuple[RetryAfterForm, ...] = ("none", "seconds", "http-date")
        form = forms[min(int(u_retry_after * 3), 2)] if s.retry_after == "mixed" else s.retry_after
        return FaultPlan(
            latency=s.latency_ms / 1000,
            error=u_error < s.error_rate,
            retry_after=form,
            hang=u_hang < s.timeout_rate,
            drop=u_drop < s.drop_rate,
        )
