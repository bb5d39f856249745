"""First start: a demo organisation and API key so the one-command quick start works."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.persistence.organisations import (
    count_organisations,
    create_api_key,
    create_organisation,
)

DEMO_ORGANISATION = "demo"


async def ensure_demo_organisation(
    sessions: async_sessionmaker[AsyncSession], now: dt.datetime
) -> str | None:
    """On an empty database create the demo organisation; returns its new key, else None."""
    async with sessions() as session, session.begin():
        if await count_organisations(session) > 0:
            return None
        org = await create_organisation(session, DEMO_ORGANISATION, now)
        _, raw = await create_api_key(session, org.id, now, role="admin")
        return raw
