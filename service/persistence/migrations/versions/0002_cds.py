"""CDS Hooks: registered clients, seen JWT ids, issued cards and suggestions, feedback

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 14:22:09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.persistence.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UTC = service.persistence.models.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "cds_clients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("iss", sa.String(length=255), nullable=False),
        sa.Column("jwks_url", sa.String(length=500), nullable=True),
        sa.Column("jwks", sa.JSON(), nullable=True),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("revoked_at", _UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("iss"),
    )
    with op.batch_alter_table("cds_clients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cds_clients_organisation_id"), ["organisation_id"], unique=False
        )

    op.create_table(
        "cds_seen_jti",
        sa.Column("iss", sa.String(length=255), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", _UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("iss", "jti"),
    )
    with op.batch_alter_table("cds_seen_jti", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cds_seen_jti_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "cds_cards",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("hook", sa.String(length=32), nullable=False),
        sa.Column("hook_instance", sa.String(length=128), nullable=False),
        sa.Column("recommendation_id", sa.String(length=36), nullable=False),
        sa.Column("therapy", sa.String(length=64), nullable=False),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"]),
        sa.ForeignKeyConstraint(["recommendation_id"], ["recommendations.id"]),
        sa.PrimaryKeyConstraint("uuid"),
    )
    with op.batch_alter_table("cds_cards", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cds_cards_organisation_id"), ["organisation_id"], unique=False
        )

    op.create_table(
        "cds_suggestions",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("card_uuid", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("panel_id", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(["card_uuid"], ["cds_cards.uuid"]),
        sa.PrimaryKeyConstraint("uuid"),
    )
    with op.batch_alter_table("cds_suggestions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cds_suggestions_card_uuid"), ["card_uuid"], unique=False
        )

    op.create_table(
        "cds_suggestion_rules",
        sa.Column("suggestion_uuid", sa.String(length=36), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["suggestion_uuid"], ["cds_suggestions.uuid"]),
        sa.PrimaryKeyConstraint("suggestion_uuid", "rule_id"),
    )
    with op.batch_alter_table("cds_suggestion_rules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cds_suggestion_rules_org_rule", ["organisation_id", "rule_id"], unique=False
        )

    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("card_uuid", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("suggestion_uuid", sa.String(length=36), nullable=False),
        sa.Column("outcome_at", _UTC(timezone=True), nullable=False),
        sa.Column("override_system", sa.String(length=255), nullable=True),
        sa.Column("override_code", sa.String(length=64), nullable=True),
        sa.Column("has_comment", sa.Boolean(), nullable=False),
        sa.Column("received_at", _UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["card_uuid"], ["cds_cards.uuid"]),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "organisation_id",
            "card_uuid",
            "outcome",
            "suggestion_uuid",
            "outcome_at",
            name="uq_cds_feedback_natural_key",
        ),
    )
    with op.batch_alter_table("cds_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cds_feedback_card_uuid"), ["card_uuid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cds_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_feedback_card_uuid"))
    op.drop_table("cds_feedback")
    with op.batch_alter_table("cds_suggestion_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_cds_suggestion_rules_org_rule")
    op.drop_table("cds_suggestion_rules")
    with op.batch_alter_table("cds_suggestions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_suggestions_card_uuid"))
    op.drop_table("cds_suggestions")
    with op.batch_alter_table("cds_cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_cards_organisation_id"))
    op.drop_table("cds_cards")
    with op.batch_alter_table("cds_seen_jti", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_seen_jti_expires_at"))
    op.drop_table("cds_seen_jti")
    with op.batch_alter_table("cds_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_clients_organisation_id"))
    op.drop_table("cds_clients")
