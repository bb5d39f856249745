"""Tables of the practitioner UI: accounts and server-side sessions.

Kept apart from ``models.py`` so the UI's schema reads as one unit; ``models.py`` imports this
module at its end so Alembic and ``Base.metadata`` see the tables.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.persistence.models import Base


class User(Base):
    """A practitioner (or admin) who signs in to ``/ui``. Only an argon2 hash of the password."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    #: Stored lower-cased, so sign-in is case-insensitive on the email.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    #: Prefills the requesting practitioner on order forms; both optional.
    display_name: Mapped[str | None] = mapped_column(String(100))
    npi: Mapped[str | None] = mapped_column(String(10))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]


class UiSession(Base):
    """A signed-in browser. ``id`` is the SHA-256 of the cookie's 256-bit token, never the token."""

    __tablename__ = "ui_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
