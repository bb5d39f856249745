"""Organisations and API keys. Only a SHA-256 of each key is stored; keys carry 256 random bits."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.persistence.models import ApiKey, Organisation

KEY_PREFIX = "lrk_"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


async def create_organisation(session: AsyncSession, name: str, now: dt.datetime) -> Organisation:
    org = Organisation(id=str(uuid.uuid4()), name=name, created_at=now)
    session.add(org)
    await session.flush()
    return org


async def organisation_by_name(session: AsyncSession, name: str) -> Organisation | None:
    result = await session.execute(select(Organisation).where(Organisation.name == name))
    return result.scalar_one_or_none()


async def count_organisations(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Organisation))).scalar_one())


async def create_api_key(
    session: AsyncSession, organisation_id: str, now: dt.datetime, role: str = "integration"
) -> tuple[ApiKey, str]:
    """Returns the row and the raw key; the raw key is shown once and never stored."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=str(uuid.uuid4()),
        organisation_id=organisation_id,
        prefix=raw[:12],
        key_hash=hash_key(raw),
        role=role,
        created_at=now,
        revoked_at=None,
    )
    session.add(row)
    await session.flush()
    return row, raw


async def list_api_keys(session: AsyncSession, organisation_id: str) -> list[ApiKey]:
    query = (
        select(ApiKey)
        .where(ApiKey.organisation_id == organisation_id)
        .order_by(ApiKey.created_at, ApiKey.id)
    )
    return list((await session.execute(query)).scalars())


async def api_key_in(session: AsyncSession, organisation_id: str, key_id: str) -> ApiKey | None:
    query = select(ApiKey).where(ApiKey.id == key_id, ApiKey.organisation_id == organisation_id)
    return (await session.execute(query)).scalar_one_or_none()
