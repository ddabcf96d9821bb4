"""Template database and per-worker test databases.

The template holds everything a test database starts with: the registry, the shared and tenant
migrations, and warm spare tenant schemas. Building it runs the migrations; cloning it
(``CREATE DATABASE ... TEMPLATE``) is a file copy, so every worker and every later run against
the same server starts in a fraction of a second.

Its name carries a hash of everything that shapes its content (the migration files, the sources
of tenantkit and of this plugin, the server version, the shared schema and the spare count), so a
template is never stale: any change gives another name. It is built under an advisory lock in a
database of its own and renamed into place only once complete, so concurrent workers and runs
never clone a half-built one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path

import psycopg
from psycopg import errors, sql

from ._options import Settings
from ._server import ServerHandle

__all__ = [
    "TEMPLATE_PREFIX",
    "create_test_database",
    "drop_database",
    "drop_template",
    "ensure_template",
    "template_key",
]

TEMPLATE_PREFIX = "pgtenants_tpl_"
TEST_DB_PREFIX = "pgtenants_db_"
_LOCK_NAMESPACE = 0x7467_6B74  # "tgkt": keeps our advisory lock ids away from the application's


def _source_digest(package_dir: Path) -> bytes:
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.digest()


def template_key(settings: Settings, server_version_num: int) -> str:
    """Hash of everything that determines the template's content."""
    import tenantkit

    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {
                "tenantkit": tenantkit.__version__,
                "server": server_version_num,
                "shared_schema": settings.shared_schema,
                "spares": settings.spares if settings.migrations else 0,
            },
            sort_keys=True,
        ).encode()
    )
    # Version numbers do not change while a developer edits the registry or migration code, so
    # the code itself is part of the key.
    digest.update(_source_digest(Path(tenantkit.__file__).parent))
    digest.update(_source_digest(Path(__file__).parent))
    if settings.migrations is not None:
        for path in sorted(p for p in settings.migrations.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(settings.migrations).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def _lock_id(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") ^ _LOCK_NAMESPACE


def _exists(conn: psycopg.Connection, dbname: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
    return row is not None


def drop_database(server: ServerHandle, dbname: str) -> None:
    """Drop ``dbname`` even when connections are still open on it (they are terminated)."""
    with psycopg.connect(server.conninfo, autocommit=True) as conn:
        _drop(conn, dbname)


def _drop(conn: psycopg.Connection, dbname: str) -> None:
    if conn.info.server_version >= 130000:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )
        return
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        [dbname],
    )
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))


def _populate(conninfo: str, settings: Settings) -> None:
    """Install the registry, apply the migrations and fill the spares in a new database."""
    from tenantkit.core.tenancy import Tenancy

    tenancy = Tenancy(
        conninfo,
        shared_schema=settings.shared_schema,
        migrations=settings.migrations,
        min_size=1,
        max_size=2,
    )
    try:
        tenancy.install()
        if settings.migrations is not None:
            tenancy.migrate()
            if settings.spares:
                tenancy.spares.fill(settings.spares)
    finally:
        tenancy.close()


def ensure_template(server: ServerHandle, settings: Settings, project: str) -> str:
    """Return the name of an up-to-date template database, building it if needed."""
    name = TEMPLATE_PREFIX + template_key(settings, server.version_num)
    with psycopg.connect(server.conninfo, autocommit=True) as admin:
        if _exists(admin, name):
            return name
        admin.execute("SELECT pg_advisory_lock(%s)", [_lock_id(name)])
        try:
            # Another worker or run may have finished it while we waited for the lock.
            if _exists(admin, name):
                return name
            building = f"{name}_build"
            # A build that crashed (killed run) leaves this behind; it was never renamed, so
            # nobody ever cloned it.
            _drop(admin, building)
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
            try:
                _populate(server.conninfo_for(building), settings)
                # Nobody may connect to a template: CREATE DATABASE ... TEMPLATE refuses to copy
                # a database that has sessions, and a stray session would break every clone.
                admin.execute(
                    sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                        sql.Identifier(building)
                    )
                )
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(building), sql.Identifier(name)
                    )
                )
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    _drop(admin, building)
                raise
            comment = json.dumps({"pgtenants": "template", "project": project})
            admin.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(comment)
                )
            )
            _drop_stale_templates(admin, project, keep=name)
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", [_lock_id(name)])
    return name


def _drop_stale_templates(admin: psycopg.Connection, project: str, *, keep: str) -> None:
    """Drop the templates an older state of the same project left behind (not in use)."""
    rows = admin.execute(
        "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
        " WHERE starts_with(datname, %s) AND datname <> %s",
        [TEMPLATE_PREFIX, keep],
    ).fetchall()
    for dbname, comment in rows:
        try:
            owner = json.loads(comment or "{}").get("project")
        except ValueError:
            continue
        if owner != project or dbname.endswith("_build"):
            continue
        # A concurrent run may be cloning it right now; it is then simply left for later.
        with contextlib.suppress(errors.ObjectInUse):
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))


def drop_template(server: ServerHandle, name: str) -> None:
    """Drop a template (``pgtenants_cache = no``); left alone if another worker is cloning it."""
    with (
        psycopg.connect(server.conninfo, autocommit=True) as admin,
        contextlib.suppress(errors.ObjectInUse),
    ):
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def create_test_database(server: ServerHandle, template: str, worker: str) -> str:
    """Clone ``template`` into a new database for this worker and return its name."""
    dbname = f"{TEST_DB_PREFIX}{worker}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server.conninfo, autocommit=True) as admin:
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(dbname), sql.Identifier(template)
        )
        if admin.info.server_version >= 150000:
            # WAL_LOG (the PostgreSQL 15 default) writes every page of the template to WAL; a
            # plain file copy is several times faster for a database this small.
            query = query + sql.SQL(" STRATEGY FILE_COPY")
        admin.execute(query)
    return dbname
