"""Registered CDS clients, read from the database and cached briefly per process.

A registration change (``labrec cds-client add``) is seen by running processes within
``ttl`` seconds; unknown issuers are cached for a shorter time so a flood of made-up ``iss``
values costs at most one query per issuer every few seconds. Known and unknown issuers are kept
in separate caches, each bounded and evicting its least recently used entry one at a time, so a
flood of made-up issuers only churns the unknown ones and never evicts a registered client.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.persistence.cds import active_cds_origins, cds_client_by_iss

_MAX_CACHED: Final = 1024


class ClientRecord(msgspec.Struct, frozen=True):
    id: str
    organisation_id: str
    iss: str
    jwks_url: str | None
    jwks: dict[str, Any] | None
    origins: frozenset[str]
    #: Normalised FHIR base URLs this client may name as ``fhirServer`` (``service.cds.egress``).
    fhir_servers: tuple[str, ...] = ()


class ClientRegistry:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._now = monotonic
        self._known: OrderedDict[str, tuple[float, ClientRecord]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._origins: tuple[float, frozenset[str]] | None = None

    def seen_registered(self, iss: str) -> bool:
        """Whether this process holds ``iss`` as a registered client (cached, maybe stale)."""
        return iss in self._known

    async def by_iss(self, iss: str) -> ClientRecord | None:
        now = self._now()
        known = self._known.get(iss)
        if known is not None and now - known[0] < self._ttl:
            self._known.move_to_end(iss)
            return known[1]
        unknown_at = self._unknown.get(iss)
        if unknown_at is not None and now - unknown_at < self._negative_ttl:
            return None
        async with self._sessions() as session:
            row = await cds_client_by_iss(session, iss)
        record = (
            None
            if row is None
            else ClientRecord(
                id=row.id,
                organisation_id=row.organisation_id,
                iss=row.iss,
                jwks_url=row.jwks_url,
                jwks=row.jwks,
                origins=frozenset(o for o in row.origins or [] if isinstance(o, str)),
                fhir_servers=tuple(u for u in row.fhir_servers or [] if isinstance(u, str)),
            )
        )
        if record is None:
            self._known.pop(iss, None)
            _remember(self._unknown, iss, now)
        else:
            self._unknown.pop(iss, None)
            _remember(self._known, iss, (now, record))
        return record

    async def origin_allowed(self, origin: str) -> bool:
        """Whether any active client registered this browser origin (CORS allow-list)."""
        now = self._now()
        if self._origins is None or now - self._origins[0] >= self._ttl:
            async with self._sessions() as session:
                origins = await active_cds_origins(session)
            self._origins = (now, frozenset(origins))
        return origin in self._origins[1]


def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
    """Insert as most recently used; evict the least recently used beyond ``_MAX_CACHED``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _MAX_CACHED:
        cache.popitem(last=False)
