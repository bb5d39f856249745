"""CDS clients: the FHIR base URLs each EHR may name as fhirServer (SSRF allow-list)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:30:00

Existing clients get an empty list: labrec stops reading from their fhirServer until an
operator registers its base URL (``labrec cds-client add ... --fhir-server URL``); calls with
complete prefetch keep working.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cds_clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fhir_servers", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("cds_clients", schema=None) as batch_op:
        batch_op.drop_column("fhir_servers")
