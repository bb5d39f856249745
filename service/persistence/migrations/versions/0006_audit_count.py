"""audit rows carry a count: refused credentials are aggregated per client address and minute

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN is DDL, not an UPDATE of rows: the append-only triggers do not fire.
    op.add_column("audit", sa.Column("count", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    op.drop_column("audit", "count")  # native on SQLite >= 3.35: the table and triggers stay
