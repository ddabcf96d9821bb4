"""stats: a table filled from the live data (needs a connection: runs online)

Revision ID: d4
Revises: c3
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "d4"
down_revision = "c3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    bind = op.get_bind()
    accounts = bind.execute(sa.text("select count(*) from accounts")).scalar_one()
    bind.execute(
        sa.text("insert into stats (name, value) values ('accounts', :n)"), {"n": accounts}
    )


def downgrade() -> None:
    op.drop_table("stats")
