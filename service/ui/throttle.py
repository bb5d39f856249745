"""Sign-in admission per client address and per account, in memory.

Two guards in front of the (slow, CPU-bound) argon2 check:

- ``FailureThrottle``: at most ``limit`` failed sign-ins per address in a sliding window. An
  attempt is *reserved* (counted as a failure) before it is evaluated and released only when it
  turns out to have succeeded, so concurrent requests cannot all pass the check before any of
  them has failed.
- ``ConcurrencyCap``: at most a few sign-ins per address and one per account are evaluated at a
  time; the others wait their turn briefly (then 429), so a burst against one account is
  serialised and meets the account's lock-out (in the database) instead of racing it.

Per process and lost on restart; the per-account lock-out in the database is the durable part
and holds across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import Final

MAX_TRACKED_ADDRESSES: Final = 10_000
#: Sign-ins evaluated at once from one address, and for one account.
PER_ADDRESS_CONCURRENCY: Final = 4
PER_ACCOUNT_CONCURRENCY: Final = 1
#: How long a sign-in waits for its turn before it is refused with 429.
MAX_WAIT_SECONDS: Final = 10.0


class SignInBusy(Exception):
    """Too many sign-ins for this account or address are already being evaluated."""


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
        self._pending: Counter[str] = Counter()

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
        return len(self._recent(address)) + self._pending[address] >= self._limit

    def reserve(self, address: str) -> bool:
        """Admit one attempt unless failures plus attempts in flight reach the limit.

        No ``await`` between the check and the count: on the event loop this is atomic.
        Every admitted attempt must be ``settle``d exactly once.
        """
        if self.blocked(address):
            return False
        self._pending[address] += 1
        return True

    def settle(self, address: str, *, failed: bool) -> None:
        self._pending[address] -= 1
        if self._pending[address] <= 0:
            del self._pending[address]
        if failed:
            self.record_failure(address)

    def record_failure(self, address: str) -> None:
        failures = self._recent(address)
        failures.append(self._clock())
        self._failures[address] = failures
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            self._failures.popitem(last=False)


class ConcurrencyCap:
    """At most ``limit`` holders per key at once; the rest wait up to ``max_wait`` seconds."""

    def __init__(self, limit: int, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self._limit = limit
        self._max_wait = max_wait
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._users: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        slot = self._slots.setdefault(key, asyncio.Semaphore(self._limit))
        self._users[key] += 1
        try:
            try:
                async with asyncio.timeout(self._max_wait):
                    await slot.acquire()
            except TimeoutError:
                raise SignInBusy from None
            try:
                yield
            finally:
                slot.release()
        finally:
            self._users[key] -= 1
            if self._users[key] <= 0:  # nobody holds or waits: forget the key
                del self._users[key]
                del self._slots[key]

    def in_use(self, key: str) -> int:
        """Holders and waiters of ``key`` (tests)."""
        return self._users[key]


class SignInGate:
    """Everything the sign-in route asks before it lets a password be checked."""

    def __init__(
        self,
        failures: FailureThrottle | None = None,
        *,
        per_address: int = PER_ADDRESS_CONCURRENCY,
        per_account: int = PER_ACCOUNT_CONCURRENCY,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> None:
        self.failures = failures or FailureThrottle()
        self._addresses = ConcurrencyCap(per_address, max_wait)
        self._accounts = ConcurrencyCap(per_account, max_wait)

    @contextlib.asynccontextmanager
    async def turn(self, address: str, email: str) -> AsyncIterator[None]:
        """Wait for this address's and this account's turn (always in this order: no deadlock)."""
        async with self._addresses.hold(address), self._accounts.hold(email.strip().lower()):
            yield
