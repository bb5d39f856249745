"""Flow control towards labs: a concurrency limit and a circuit breaker per lab connection.

A lab connection is one lab endpoint, keyed by its FHIR base URL. Its limit bounds how many calls
are in flight to it at once (labs throttle, and a stalled lab must not take every slot); its
breaker backs the lab off as a whole after consecutive failures, so its orders wait (without
spending their retry budget) while other labs' orders keep flowing. Today labrec talks to one lab
(``LABREC_LAB_BASE_URL``); ``LabRoutes`` is where an order would be routed to another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from service.labs.outcomes import CancelOutcome, SubmitOutcome

if TYPE_CHECKING:
    from service.labs.requisition import LabRequisition
    from service.persistence.models import OutboxMessage

BreakerState = Literal["closed", "open", "half_open"]


class LabGateway(Protocol):
    async def submit(self, requisition: LabRequisition) -> SubmitOutcome: ...

    async def cancel(self, order_id: str) -> CancelOutcome: ...


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures; open for ``cooldown`` seconds, then
    half-open: one probe call may go; its success closes the breaker, its failure reopens it.

    Any success closes it (the lab answered); a failure while half-open reopens it at once.
    """

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_until: float | None = None
        self._probing = False
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_until is None:
            return "closed"
        return "open" if self._clock() < self._opened_until else "half_open"

    def available(self) -> int | None:
        """How many new calls may start now: None = no limit, 0 = none, 1 = the probe."""
        match self.state:
            case "closed":
                return None
            case "open":
                return 0
            case _:
                return 0 if self._probing else 1

    def try_start(self) -> bool:
        """Claim the right to call the lab now (the probe, when half-open)."""
        available = self.available()
        if available == 0:
            return False
        if available == 1:
            self._probing = True
        return True

    def retry_in(self) -> float:
        """Seconds until a call might be allowed (0 when one is)."""
        if self.available() != 0:
            return 0.0
        if self._opened_until is None:  # pragma: no cover - closed is always available
            return 0.0
        return max(self._opened_until - self._clock(), 0.0) or min(self.cooldown, 1.0)

    def record_success(self) -> None:
        self._failures = 0
        self._opened_until = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        was_probe = self._probing
        self._probing = False
        if was_probe or self._failures >= self.threshold:
            if self.state != "open":
                self.opened_count += 1
            self._opened_until = self._clock() + self.cooldown


class LabConnection:
    """One lab endpoint: its gateway, its in-flight limit and its breaker."""

    def __init__(
        self, key: str, gateway: LabGateway, *, max_in_flight: int, breaker: CircuitBreaker
    ):
        self.key = key
        self.gateway = gateway
        self.max_in_flight = max_in_flight
        self.breaker = breaker
        self.in_flight = 0
        self._slots = asyncio.Semaphore(max_in_flight)

    def claimable(self) -> int:
        """How many more of this lab's messages are worth claiming now."""
        free = max(self.max_in_flight - self.in_flight, 0)
        allowed = self.breaker.available()
        return free if allowed is None else min(free, allowed)

    @property
    def slots(self) -> asyncio.Semaphore:
        return self._slots


class LabRoutes:
    """Which lab connection each outbox message goes to.

    ``route`` maps a message to a connection key; with one connection every message goes there.
    """

    def __init__(
        self,
        connections: Sequence[LabConnection],
        route: Callable[[OutboxMessage], str] | None = None,
    ) -> None:
        if not connections:
            raise ValueError("at least one lab connection is needed")
        self.connections = {c.key: c for c in connections}
        self._route = route
        self._only = connections[0] if len(connections) == 1 else None

    def for_message(self, message: OutboxMessage) -> LabConnection:
        if self._route is None:
            if self._only is None:
                raise ValueError("several lab connections need a route")
            return self._only
        return self.connections[self._route(message)]

    def claimable(self) -> int:
        """Claim budget across labs; a lab whose breaker is open adds nothing."""
        return sum(c.claimable() for c in self.connections.values())

    def retry_in(self) -> float:
        """Seconds until some lab may take a call again (0: one can now)."""
        return min(c.breaker.retry_in() for c in self.connections.values())
