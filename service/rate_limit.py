"""Per-credential token buckets, in process.

Each API process keeps its own buckets, so N replicas allow up to N times the configured rate per
key; the limit is a guard against runaway clients, not a billing meter.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Final

_MAX_TRACKED: Final = 100_000


class TokenBuckets:
    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, key: str, now: float | None = None) -> int:
        """Seconds until ``key`` has a token again (0: it has one now); spends nothing."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / self._rate))

    def take(self, key: str, now: float | None = None) -> int:
        """Spend one token; returns 0 when allowed, else the seconds to wait (Retry-After)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > _MAX_TRACKED:
                self._buckets.popitem(last=False)
        return 0 if allowed else max(1, math.ceil((1 - tokens) / self._rate))
