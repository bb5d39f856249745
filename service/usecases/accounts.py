"""Practitioner accounts: create (CLI), sign in with lock-out, server-side sessions, sign out.

Passwords are hashed with argon2id (argon2-cffi defaults). A session cookie carries 256 random
bits; only its SHA-256 is stored, so a copy of the database cannot be replayed as a session.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from typing import Final

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.principal import Principal, Role
from service.persistence import users as repo
from service.persistence.audit import record_audit
from service.persistence.organisations import organisation_by_name
from service.persistence.ui_models import User
from service.usecases.clock import Clock
from service.usecases.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    UseCaseError,
    field_error,
    shown,
)

MAX_FAILED_ATTEMPTS: Final = 5
LOCK_DURATION: Final = dt.timedelta(minutes=15)
SESSION_LIFETIME: Final = dt.timedelta(hours=12)
MIN_PASSWORD_LENGTH: Final = 12
USER_ROLES: Final = ("practitioner", "admin")

_HASHER: Final = PasswordHasher()
#: Verified against when the email is unknown, so both answers take the same time.
_DUMMY_HASH: Final = _HASHER.hash(secrets.token_urlsafe(16))


class SignInRefused(UseCaseError):
    """Wrong email, wrong password or a locked account: deliberately indistinguishable."""

    status = 401
    type_slug = "sign-in-refused"
    title = "Sign-in refused"


class SignedIn(msgspec.Struct, frozen=True):
    """A new session: ``token`` goes into the cookie and is never stored."""

    token: str
    csrf_token: str
    expires_at: dt.datetime


class SessionUser(msgspec.Struct, frozen=True):
    """The signed-in user behind a session cookie, as the UI needs it."""

    user_id: str
    organisation_id: str
    email: str
    role: Role
    display_name: str | None
    npi: str | None
    csrf_token: str

    def principal(self, request_id: str | None) -> Principal:
        return Principal(
            organisation_id=self.organisation_id,
            actor=f"user:{self.user_id}",
            role=self.role,
            request_id=request_id,
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class AccountService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def create_user(
        self,
        *,
        organisation: str,
        email: str,
        password: str,
        role: str = "practitioner",
        display_name: str | None = None,
        npi: str | None = None,
    ) -> str:
        """Returns the new user's id. Errors name the field, never echo the password."""
        errors = []
        if role not in USER_ROLES:
            errors.append(field_error("role", f"must be one of {', '.join(USER_ROLES)}"))
        if "@" not in email or len(email) > 254:
            errors.append(field_error("email", "is not an email address"))
        if len(password) < MIN_PASSWORD_LENGTH:
            errors.append(
                field_error("password", f"must have at least {MIN_PASSWORD_LENGTH} characters")
            )
        if npi is not None and not (len(npi) == 10 and npi.isdigit()):
            errors.append(field_error("npi", "must be 10 digits"))
        if errors:
            raise InvalidInput("The user has values labrec cannot use.", errors=errors)
        password_hash = await asyncio.to_thread(hash_password, password)
        try:
            async with self._sessions() as session, session.begin():
                org = await organisation_by_name(session, organisation)
                if org is None:
                    raise NotFound(f"No organisation {shown(organisation)}.")
                user = await repo.create_user(
                    session,
                    organisation_id=org.id,
                    email=email,
                    password_hash=password_hash,
                    role=role,
                    now=self._clock(),
                    display_name=display_name,
                    npi=npi,
                )
                return user.id
        except IntegrityError:
            raise Conflict("A user with this email already exists.") from None

    async def sign_in(self, email: str, password: str) -> tuple[SignedIn, SessionUser]:
        """Verify the password; five failures in a row lock the account for fifteen minutes.

        The attempt is reserved (counted) in its own short transaction *before* the slow
        argon2 check, so concurrent attempts cannot all see the same count: at most
        ``MAX_FAILED_ATTEMPTS`` passwords are ever checked against the real hash between two
        successes, whatever the concurrency and however many processes serve the UI.
        """
        now = self._clock()
        email = email[:254]
        async with self._sessions() as session, session.begin():
            user = await repo.reserve_sign_in_attempt(
                session,
                email,
                now=now,
                max_attempts=MAX_FAILED_ATTEMPTS,
                lock_until=now + LOCK_DURATION,
            )
            if user is None and (locked := await repo.user_by_email(session, email)) is not None:
                self._audit(session, locked.organisation_id, locked.id, "locked")
        if user is None:
            # Unknown email or locked account: the same work as a real check, the same answer.
            await asyncio.to_thread(_verify, _DUMMY_HASH, password)
            raise SignInRefused("The email or password is wrong.")
        ok = await asyncio.to_thread(_verify, user.password_hash, password)
        async with self._sessions() as session, session.begin():
            if not ok:
                # The attempt was already counted by the reservation; only the audit row is left.
                self._audit(session, user.organisation_id, user.id, "denied")
                result = None
            else:
                result = await self._start_session(session, user, password, now)
        if result is None:
            raise SignInRefused("The email or password is wrong.")
        return result

    async def _start_session(
        self, session: AsyncSession, user: User, password: str, now: dt.datetime
    ) -> tuple[SignedIn, SessionUser]:
        rehashed = None
        if _HASHER.check_needs_rehash(user.password_hash):
            rehashed = await asyncio.to_thread(hash_password, password)
        await repo.record_sign_in_success(session, user.id, password_hash=rehashed)
        await repo.delete_expired_sessions(session, now)
        signed = SignedIn(
            token=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            expires_at=now + SESSION_LIFETIME,
        )
        repo.add_ui_session(
            session,
            token_hash=hash_token(signed.token),
            user_id=user.id,
            csrf_token=signed.csrf_token,
            now=now,
            expires_at=signed.expires_at,
        )
        self._audit(session, user.organisation_id, user.id, "success")
        return signed, _session_user(user, signed.csrf_token)

    async def session_for(self, token: str) -> SessionUser | None:
        if not token or len(token) > 128:
            return None
        async with self._sessions() as session:
            found = await repo.live_session(session, hash_token(token), self._clock())
        if found is None:
            return None
        ui_session, user = found
        return _session_user(user, ui_session.csrf_token)

    async def sign_out(self, token: str) -> None:
        async with self._sessions() as session, session.begin():
            await repo.delete_session(session, hash_token(token))

    def _audit(self, session: AsyncSession, org: str, user_id: str, outcome: str) -> None:
        record_audit(
            session,
            principal=None,
            actor=f"user:{user_id}",
            organisation_id=org,
            action="ui.sign_in",
            object_type="user",
            object_id=user_id,
            patient_reference=None,
            outcome=outcome,
            now=self._clock(),
        )


def _session_user(user: User, csrf_token: str) -> SessionUser:
    return SessionUser(
        user_id=user.id,
        organisation_id=user.organisation_id,
        email=user.email,
        role=user.role,  # type: ignore[arg-type]
        display_name=user.display_name,
        npi=user.npi,
        csrf_token=csrf_token,
    )
