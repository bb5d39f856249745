"""First start of the demo path: a demo organisation, admin key and practitioner sign-in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.persistence.organisations import (
    count_organisations,
    create_api_key,
    create_organisation,
)
from service.persistence.users import create_user

DEMO_ORGANISATION = "demo"
DEMO_EMAIL = "demo@labrec.invalid"
DEMO_NPI = "1234567893"


@dataclass(frozen=True, slots=True)
class DemoAccess:
    """What the demo path prints once: the admin API key and the UI sign-in email."""

    api_key: str
    email: str


async def ensure_demo_organisation(
    sessions: async_sessionmaker[AsyncSession], now: dt.datetime, password_hash: str
) -> DemoAccess | None:
    """On an empty database create the demo organisation, its admin key and a practitioner whose
    password hash is given (the caller generated and will print the password); else None."""
    async with sessions() as session, session.begin():
        if await count_organisations(session) > 0:
            return None
        org = await create_organisation(session, DEMO_ORGANISATION, now)
        _, raw = await create_api_key(session, org.id, now, role="admin")
        await create_user(
            session,
            organisation_id=org.id,
            email=DEMO_EMAIL,
            password_hash=password_hash,
            role="practitioner",
            now=now,
            display_name="Demo Practitioner",
            npi=DEMO_NPI,
        )
        return DemoAccess(api_key=raw, email=DEMO_EMAIL)
