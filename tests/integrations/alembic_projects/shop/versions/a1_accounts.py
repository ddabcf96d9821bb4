"""accounts

Revision ID: a1
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("balance", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_index("accounts_name_idx", "accounts", ["name"], unique=True)


def downgrade() -> None:
    op.drop_table("accounts")
