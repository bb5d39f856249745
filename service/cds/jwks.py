"""JWKS fetched from registered ``jku`` URLs: cached, refreshed on an unknown ``kid``, bounded.

Only URLs a registration names are ever fetched (no SSRF through a token's ``jku``). A miss on
``kid`` refetches at most once per ``min_refresh`` seconds per URL, so tokens with made-up key
ids cannot turn labrec into a request amplifier. A failed refresh keeps the last good set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import httpx
import msgspec

log = logging.getLogger("labrec.cds.jwks")

_MAX_BYTES: Final = 65_536


class JwksCache:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        ttl: float = 600.0,
        min_refresh: float = 30.0,
        timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._timeout = timeout
        self._now = monotonic
        #: url -> (time of last attempt, time of last success, keys)
        self._sets: dict[str, tuple[float, float, list[dict[str, Any]]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._miss_refresh: dict[str, float] = {}

    async def keys(self, url: str, kid: str) -> list[dict[str, Any]]:
        """The keys of the set at ``url``; refetched when stale or when ``kid`` is unknown."""
        entry = self._sets.get(url)
        if entry is not None and self._fresh(entry) and _has_kid(entry[2], kid):
            return entry[2]
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            entry = self._sets.get(url)
            now = self._now()
            if entry is not None and self._fresh(entry):
                if _has_kid(entry[2], kid):
                    return entry[2]
                # An unknown kid (key rotation) refetches, at most once per min_refresh.
                if now - self._miss_refresh.get(url, -self._min_refresh) < self._min_refresh:
                    return entry[2]
                self._miss_refresh[url] = now
            keys = await self._fetch(url)
            if keys is None:
                kept = entry[2] if entry is not None else []
                # Keep serving the last good set and retry only after min_refresh, so an
                # unreachable JWKS host does not cost every request a fetch and a timeout.
                self._sets[url] = (now, now - self._ttl + self._min_refresh, kept)
                return kept
            self._sets[url] = (now, now, keys)
            return keys

    def _fresh(self, entry: tuple[float, float, list[dict[str, Any]]]) -> bool:
        return self._now() - entry[1] < self._ttl

    async def _fetch(self, url: str) -> list[dict[str, Any]] | None:
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._http.stream(
                    "GET", url, headers={"Accept": "application/json"}, follow_redirects=False
                ) as response,
            ):
                if response.status_code != 200:
                    log.warning("jwks fetch failed", extra={"status": response.status_code})
                    return None
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_BYTES:
                        log.warning("jwks fetch failed", extra={"reason": "too large"})
                        return None
            document = msgspec.json.decode(bytes(body))
        except (httpx.HTTPError, TimeoutError, msgspec.DecodeError) as exc:
            log.warning("jwks fetch failed", extra={"reason": type(exc).__name__})
            return None
        return keys_of(document)


def keys_of(document: Any) -> list[dict[str, Any]] | None:
    """The ``keys`` of a JWK Set document, or None when it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return None
    return [key for key in document["keys"] if isinstance(key, dict)]


def _has_kid(keys: list[dict[str, Any]], kid: str) -> bool:
    return any(key.get("kid") == kid for key in keys)
