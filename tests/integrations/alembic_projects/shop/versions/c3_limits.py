"""credit limits: a column, an index, and a check that existing rows must pass

Revision ID: c3
Revises: b2
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c3"
down_revision = "b2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("credit_limit", sa.Integer, server_default="100"))
    op.create_index("accounts_limit_idx", "accounts", ["credit_limit"])
    # Data-dependent: fails in a tenant holding an account with a negative balance.
    op.create_check_constraint("accounts_balance_positive", "accounts", "balance >= 0")


def downgrade() -> None:
    op.drop_constraint("accounts_balance_positive", "accounts")
    op.drop_index("accounts_limit_idx")
    op.drop_column("accounts", "credit_limit")
