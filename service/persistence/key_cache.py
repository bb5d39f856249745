"""A short-lived, per-process cache of API-key lookups (key hash → organisation, role, prefix).

Without it every ``/v1`` request costs a database round trip before any work. Only keys found
valid are cached, each for ``ttl`` seconds from the moment it was read (``LABREC_API_KEY_CACHE_
SECONDS``, default 5; 0 turns the cache off). The bound this gives: a key revoked through this
process (admin API, rotation) stops working at once, because every commit that sets ``revoked_at``
evicts the key from this process's caches; **in any other process a revoked key keeps working for
at most ``ttl`` seconds after its revocation commits**. An unknown or revoked key is never cached,
so a new key works at once and a bad one is always a 401. The cache holds SHA-256 hashes, never raw
keys, and at most ``max_entries`` of them.

It also holds the 12-character prefixes of the unrevoked keys (``known_prefix``): once an address
has spent its refusal budget, only keys with a known prefix are looked up, so a flood of bogus
keys costs no database work while a valid key from the same address (NAT, a shared proxy) still
works. The set is read at startup (``load_prefixes``), again at most every
``max(ttl, PREFIX_REFRESH_SECONDS)`` seconds and only while some address is over budget, and
updated at once for keys created in this process; a key created in another process is known here
within that time.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import msgspec
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from service.persistence.models import ApiKey
from service.persistence.organisations import hash_key

_MAX_ENTRIES: Final = 10_000
_CACHES: Final[weakref.WeakSet[ApiKeyCache]] = weakref.WeakSet()
_REVOKED: Final = "labrec_revoked_key_hashes"
_CREATED: Final = "labrec_created_key_prefixes"
#: How stale the known-prefix set may be at least (a read per process at most this often, and
#: only while some address is over its refusal budget); a longer key-cache ttl stretches it.
PREFIX_REFRESH_SECONDS: Final = 10.0
PREFIX_LENGTH: Final = 12  # service/persistence/organisations.py lists keys by ``raw[:12]``


class ValidKey(msgspec.Struct, frozen=True):
    id: str
    organisation_id: str
    prefix: str
    role: str


class ApiKeyCache:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = _MAX_ENTRIES,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, ValidKey]] = OrderedDict()
        #: One database read per key at a time: concurrent misses share it (no stampede).
        self._reads: dict[str, asyncio.Future[ValidKey | None]] = {}
        self._evictions = 0
        self._prefixes: set[str] = set()
        self._prefixes_read_at: float | None = None
        self._prefix_read: asyncio.Lock = asyncio.Lock()
        self._learnt: dict[str, float] = {}
        _CACHES.add(self)

    def learn_prefix(self, prefix: str) -> None:
        self._prefixes.add(prefix)
        self._learnt[prefix] = self._clock()
        while len(self._learnt) > 1000:  # only the recent ones matter (a read in flight)
            del self._learnt[next(iter(self._learnt))]

    async def known_prefix(self, raw: str) -> bool:
        """Whether ``raw`` starts like an unrevoked key; one database read per refresh period."""
        if self._stale():
            async with self._prefix_read:
                if self._stale():
                    await self.load_prefixes()
        return len(raw) >= PREFIX_LENGTH and raw[:PREFIX_LENGTH] in self._prefixes

    async def load_prefixes(self) -> None:
        started = self._clock()
        query = select(ApiKey.prefix).where(ApiKey.revoked_at.is_(None)).distinct()
        async with self._sessions() as session:
            prefixes = set((await session.execute(query)).scalars())
        # Keys created by this process while the read ran may be missing from it: keep them.
        self._prefixes = prefixes | self._prefixes_learnt_since(started)
        self._prefixes_read_at = started

    def _prefixes_learnt_since(self, moment: float) -> set[str]:
        return {p for p, at in self._learnt.items() if at >= moment}

    def _stale(self) -> bool:
        read_at = self._prefixes_read_at
        refresh = max(self._ttl, PREFIX_REFRESH_SECONDS)
        return read_at is None or self._clock() - read_at >= refresh

    def forget(self, digest: str) -> None:
        self._entries.pop(digest, None)
        self._evictions += 1  # a read already in flight may be stale: it must not be cached

    def cached(self, raw: str) -> ValidKey | None:
        """The key if this process holds it as valid right now; never reads the database."""
        entry = self._entries.get(hash_key(raw))
        return entry[1] if entry is not None and entry[0] > self._clock() else None

    async def find(self, raw: str) -> ValidKey | None:
        """The valid (known, unrevoked) key for ``raw``, or None."""
        digest = hash_key(raw)
        now = self._clock()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self._reads.get(digest)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request was cancelled, not the shared read
        return await self._read(digest, now)

    async def _read(self, digest: str, now: float) -> ValidKey | None:
        evictions = self._evictions
        read = self._reads[digest] = asyncio.get_running_loop().create_future()
        try:
            key = await self._lookup(digest)
        except Exception as exc:
            read.set_exception(exc)
            read.exception()  # marks it retrieved when nobody else was waiting
            raise
        except BaseException:
            read.cancel()
            raise
        finally:
            del self._reads[digest]
        read.set_result(key)
        if key is None or self._ttl <= 0 or evictions != self._evictions:
            self._entries.pop(digest, None)
            return key
        self._entries[digest] = (now + self._ttl, key)  # ``now`` is before the read: strict bound
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return key

    async def _lookup(self, digest: str) -> ValidKey | None:
        query = select(ApiKey.id, ApiKey.organisation_id, ApiKey.prefix, ApiKey.role).where(
            ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).one_or_none()
        if row is None:
            return None
        return ValidKey(
            id=row.id, organisation_id=row.organisation_id, prefix=row.prefix, role=row.role
        )


@event.listens_for(Session, "after_flush")
def _note_revocations(session: Session, _context: Any) -> None:
    """Remember keys whose ``revoked_at`` this transaction set (evicted once it commits)."""
    for obj in session.dirty:
        if isinstance(obj, ApiKey) and obj.revoked_at is not None:
            session.info.setdefault(_REVOKED, set()).add(obj.key_hash)


@event.listens_for(Session, "after_flush")
def _note_created(session: Session, _context: Any) -> None:
    """Remember prefixes of keys this transaction created (known once it commits)."""
    for obj in session.new:
        if isinstance(obj, ApiKey) and obj.revoked_at is None:
            session.info.setdefault(_CREATED, set()).add(obj.prefix)


@event.listens_for(Session, "after_commit")
def _evict_revoked(session: Session) -> None:
    for digest in session.info.pop(_REVOKED, ()):
        for cache in list(_CACHES):
            cache.forget(digest)
    for prefix in session.info.pop(_CREATED, ()):
        for cache in list(_CACHES):
            cache.learn_prefix(prefix)


@event.listens_for(Session, "after_rollback")
def _drop_noted(session: Session) -> None:
    session.info.pop(_REVOKED, None)
    session.info.pop(_CREATED, None)
