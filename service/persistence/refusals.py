"""Refused credentials, audited as bounded aggregates: one row per client address and minute.

A request with no, an unknown or a revoked API key once wrote its own audit row, so anyone could
grow the (append-only, undeletable) audit table without limit. Refusals are now counted in memory
per address (IPv6 per /64, where one host holds many addresses) and minute, and each finished
minute is written as one audit row per address and outcome with its ``count``: at most
``max_addresses`` rows per minute and outcome, whatever the traffic. Rows stay append-only
(no UPDATE: counts are complete before a row is written). A process that is killed loses at
most its current minute of counts; a normal shutdown writes everything.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
from collections import Counter
from typing import Final

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.persistence.audit import audit_values
from service.persistence.models import AuditRecord
from service.usecases.clock import Clock

log = logging.getLogger("labrec.audit")

ACTION: Final = "auth.refused"
#: Distinct addresses tracked per minute; the rest are counted under ``OTHER``.
MAX_ADDRESSES: Final = 10_000
OTHER: Final = "other"
Outcome = str  # "unauthenticated" (401) or "rate_limited" (429)


def client_key(host: str | None) -> str:
    """The address refusals are counted and limited by: IPv4 as is, IPv6 per /64."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _minute(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0)


class RefusalLog:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._max = max_addresses
        self._minutes: dict[dt.datetime, Counter[tuple[str, Outcome]]] = {}
        self._writing: set[asyncio.Task[None]] = set()

    def note(self, address: str, outcome: Outcome) -> None:
        """Count one refusal; finished minutes are written in the background. No I/O here."""
        minute = _minute(self._clock())
        counts = self._minutes.setdefault(minute, Counter())
        if (address, outcome) not in counts and len(counts) >= self._max:
            address = OTHER
        counts[(address, outcome)] += 1
        if len(self._minutes) > 1 and not self._writing:
            task = asyncio.get_running_loop().create_task(self.flush())
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def flush(self, *, everything: bool = False) -> None:
        """Write finished minutes (all minutes when ``everything``, at shutdown)."""
        current = _minute(self._clock())
        due = [m for m in self._minutes if everything or m < current]
        if not due:
            return
        rows = [
            {
                **audit_values(
                    principal=None,
                    actor="anonymous",
                    action=ACTION,
                    object_type="client_address",
                    object_id=address,
                    patient_reference=None,
                    outcome=outcome,
                    now=minute,
                ),
                "count": count,
            }
            for minute in sorted(due)
            for (address, outcome), count in self._minutes.pop(minute).items()
        ]
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(insert(AuditRecord), rows)
        except Exception as exc:  # a background write: report it, do not crash the caller
            log.error("could not write %d refusal aggregates: %s", len(rows), type(exc).__name__)

    async def aclose(self) -> None:
        for task in list(self._writing):
            await task
        await self.flush(everything=True)
