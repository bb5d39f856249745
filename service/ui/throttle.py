"""Failed sign-ins per client address, in memory: slows a password-spraying client down.

Per process and lost on restart; the per-account lock-out (in the database) is the durable part.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

MAX_TRACKED_ADDRESSES: Final = 10_000


class FailureThrottle:
    def __init__(
        self,
        limit: int = 20,
        window_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window_seconds
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        horizon = self._clock() - self._window
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self._limit

    def record_failure(self, address: str) -> None:
        failures = self._recent(address)
        failures.append(self._clock())
        self._failures[address] = failures
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            self._failures.popitem(last=False)
