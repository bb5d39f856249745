"""Practitioner accounts and UI sessions. Sessions are looked up by the SHA-256 of their token."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import case, delete, literal, or_, select, update
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


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    query = select(User).where(User.email == email.strip().lower())
    return (await session.execute(query)).scalar_one_or_none()


async def reserve_sign_in_attempt(
    session: AsyncSession,
    email: str,
    *,
    now: dt.datetime,
    max_attempts: int,
    lock_until: dt.datetime,
) -> User | None:
    """Count one attempt *before* the password is checked, in one atomic statement.

    ``UPDATE … RETURNING`` is a single write on both databases (SQLite serialises writers;
    PostgreSQL locks the row), so concurrent attempts each see the previous one's count and no
    more than ``max_attempts`` are ever let through between two successes. The attempt that
    reaches the limit locks the account at once (it is unlocked again if its password turns out
    to be right), so a crash between reservation and verdict still counts as a failure. Returns
    the user when the attempt may be evaluated; None when the email is unknown or the account
    is locked.
    """
    after = User.failed_attempts + 1
    reaches_limit = after >= max_attempts
    lock_type = User.__table__.c.locked_until.type
    statement = (
        update(User)
        .where(
            User.email == email.strip().lower(),
            or_(User.locked_until.is_(None), User.locked_until <= now),
        )
        .values(
            failed_attempts=case((reaches_limit, 0), else_=after),
            locked_until=case(
                (reaches_limit, literal(lock_until, lock_type)), else_=literal(None, lock_type)
            ),
        )
        .returning(User)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def record_sign_in_success(
    session: AsyncSession, user_id: str, *, password_hash: str | None = None
) -> None:
    """A right password: the failure count and any lock go (and a rehash is stored)."""
    values: dict[str, object] = {"failed_attempts": 0, "locked_until": None}
    if password_hash is not None:
        values["password_hash"] = password_hash
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


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
