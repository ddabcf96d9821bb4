"""env.py of the test project: Alembic's cookbook recipe for schema-per-tenant PostgreSQL
("Rudimental Schema-Level Multi Tenancy"), the baseline tenantkit is compared with.

``alembic -x url=<sqlalchemy url> -x tenant=<schema> upgrade head`` migrates one schema: the
search_path is set to the tenant, SQLAlchemy's default schema too, and Alembic runs as usual.
Offline (``--sql``) it renders the SQL with no schema.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, text

xargs = context.get_x_argument(as_dictionary=True)
url = xargs.get("url") or os.environ.get("TENANTKIT_TEST_URL", "postgresql+psycopg://")

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    tenant = xargs["tenant"]
    connectable = context.config.attributes.get("connection") or create_engine(url)
    with connectable.connect() as connection:
        # The recipe's own line (it quotes by hand; test schema names are plain).
        connection.execute(text(f'set search_path to "{tenant}"'))
        connection.commit()
        connection.dialect.default_schema_name = tenant
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
