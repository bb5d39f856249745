"""Tables of the CDS Hooks face: registered EHR clients, seen JWT ids, issued cards, feedback.

Issued cards and their suggestions are kept so feedback (which names only card and suggestion
uuids) can be traced back to the stored recommendation, the panel and the rules behind it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from service.persistence.models import Base


class CdsClient(Base):
    """An EHR allowed to call the CDS services; its organisation is the caller's tenant.

    Keys come either from ``jwks_url`` (fetched, cached, rotated) or from ``jwks`` (a key set
    registered out of band, e.g. from a file).
    """

    __tablename__ = "cds_clients"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    iss: Mapped[str] = mapped_column(String(255), unique=True)
    jwks_url: Mapped[str | None] = mapped_column(String(500))
    jwks: Mapped[dict[str, Any] | None]
    #: Browser origins (scheme://host[:port]) allowed to call the CDS routes (CORS).
    origins: Mapped[list[Any]]
    #: Normalised FHIR base URLs this EHR may name as ``fhirServer`` (labrec reads nowhere else).
    fhir_servers: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))
    created_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class CdsSeenJti(Base):
    """JWT ids already accepted per issuer, kept until the token expires (replay protection)."""

    __tablename__ = "cds_seen_jti"
    iss: Mapped[str] = mapped_column(String(255), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class CdsCard(Base):
    __tablename__ = "cds_cards"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    service_id: Mapped[str] = mapped_column(String(64))
    hook: Mapped[str] = mapped_column(String(32))
    hook_instance: Mapped[str] = mapped_column(String(128))
    recommendation_id: Mapped[str] = mapped_column(ForeignKey("recommendations.id"))
    therapy: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]


class CdsSuggestion(Base):
    __tablename__ = "cds_suggestions"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    card_uuid: Mapped[str] = mapped_column(ForeignKey("cds_cards.uuid"), index=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    panel_id: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(20))


class CdsSuggestionRule(Base):
    """One row per (suggestion, rule that produced it): per-rule counts without JSON queries."""

    __tablename__ = "cds_suggestion_rules"
    suggestion_uuid: Mapped[str] = mapped_column(
        ForeignKey("cds_suggestions.uuid"), primary_key=True
    )
    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    __table_args__ = (Index("ix_cds_suggestion_rules_org_rule", "organisation_id", "rule_id"),)


class CdsFeedback(Base):
    """One accepted suggestion or one overridden card, stored once.

    ``suggestion_uuid`` is ``""`` for a card-level outcome (overridden) so that the natural key
    (organisation, card, outcome, suggestion, timestamp) is unique on every backend (NULLs never
    collide in a unique constraint).
    """

    __tablename__ = "cds_feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    card_uuid: Mapped[str] = mapped_column(ForeignKey("cds_cards.uuid"), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    suggestion_uuid: Mapped[str] = mapped_column(String(36))
    outcome_at: Mapped[dt.datetime]
    override_system: Mapped[str | None] = mapped_column(String(255))
    override_code: Mapped[str | None] = mapped_column(String(64))
    #: Whether the clinician wrote a comment; the free text itself is not kept (it may carry PHI).
    has_comment: Mapped[bool]
    received_at: Mapped[dt.datetime]
    __table_args__ = (
        UniqueConstraint(
            "organisation_id",
            "card_uuid",
            "outcome",
            "suggestion_uuid",
            "outcome_at",
            name="uq_cds_feedback_natural_key",
        ),
    )
