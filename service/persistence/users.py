"""Practitioner accounts and UI sessions. Sessions are looked up by the SHA-256 of their token."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.persistence.ui_models import UiSession, User


async def create_user(
    session: AsyncSession,
    *,
    organisation_id: str,
    email: str,
    password_hash: str,
    role: str,
    now: dt.datetime,
    display_name: str | None = None,
    npi: str | None = None,
) -> User:
    user = User(
        id=str(uuid.uuid4()),
        organisation_id=organisation_id,
        email=email.strip().lower(),
        password_hash=password_hash,
        role=role,
        display_name=display_name,
        npi=npi,
        failed_attempts=0,
        locked_until=None,
        created_at=now,
    )
    session.add(user)
    await session.flush()
    return user


async def user_by_email(
    session: AsyncSession, email: str, *, for_update: bool = False
) -> User | None:
    query = select(User).where(User.email == email.strip().lower())
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


def add_ui_session(
    session: AsyncSession,
    *,
    token_hash: str,
    user_id: str,
    csrf_token: str,
    now: dt.datetime,
    expires_at: dt.datetime,
) -> UiSession:
    row = UiSession(
        id=token_hash, user_id=user_id, csrf_token=csrf_token, created_at=now, expires_at=expires_at
    )
    session.add(row)
    return row


async def live_session(
    session: AsyncSession, token_hash: str, now: dt.datetime
) -> tuple[UiSession, User] | None:
    """The session and its user, when the session exists and has not expired."""
    query = (
        select(UiSession, User)
        .join(User, User.id == UiSession.user_id)
        .where(UiSession.id == token_hash, UiSession.expires_at > now)
    )
    row = (await session.execute(query)).one_or_none()
    return None if row is None else (row[0], row[1])


async def delete_session(session: AsyncSession, token_hash: str) -> None:
    await session.execute(delete(UiSession).where(UiSession.id == token_hash))


async def delete_expired_sessions(session: AsyncSession, now: dt.datetime) -> None:
    await session.execute(delete(UiSession).where(UiSession.expires_at <= now))
