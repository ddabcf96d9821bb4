"""orders, and a status enum

Revision ID: b2
Revises: a1
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b2"
down_revision = "a1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    status = sa.Enum("new", "paid", "shipped", name="order_status")
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("status", status, nullable=False, server_default="new"),
        sa.Column("total", sa.Numeric(12, 2), nullable=False),
    )
    op.create_index("orders_account_idx", "orders", ["account_id"])
    plans = op.create_table(
        "plans",
        sa.Column("code", sa.String(20), primary_key=True),
        sa.Column("price", sa.Integer, nullable=False),
    )
    op.bulk_insert(plans, [{"code": "free", "price": 0}, {"code": "pro", "price": 20}])


def downgrade() -> None:
    op.drop_table("plans")
    op.drop_table("orders")
    sa.Enum(name="order_status").drop(op.get_bind())
