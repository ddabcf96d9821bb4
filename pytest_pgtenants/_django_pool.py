"""Fresh Django tenants in milliseconds: a template schema and spare schemas in the test database.

Per test database (pytest-django makes one per xdist worker):

* the **template** ``_pgtenants_dj_tpl_<digest>`` is migrated once by the project's own
  ``migrate_schemas`` (django-tenants or tenantkit.django), exactly as a new tenant would be.
  Its name carries a digest of the migration files (:func:`._django_backend.migrations_digest`),
  so with ``--reuse-db`` the next run finds it and migrates nothing; a change of any migration
  makes a new one, and stale ones are dropped. It is built under a temporary name and renamed
  when complete, so an interrupted build is never mistaken for a template.
* **spares** ``_pgtenants_dj_sp_<digest8>_<hex>`` are copies of it (structure, rows such as
  ``django_migrations``, sequence positions), made with tenantkit's ``clone_schema`` on a
  side connection and committed.
* a **claim** renames a spare to the tenant's schema on Django's own connection, then saves the
  tenant (django-tenants finds the schema present, so it creates and migrates nothing) and its
  primary domain. In a test wrapped in pytest-django's transaction (``db``), the rollback at
  the end renames the spare back and deletes the rows: the spare returns to the pool by
  itself. In a transactional test the tenant is deleted and its schema dropped after the test.

The ``_pgtenants_`` prefix is reserved by tenantkit's schema-name rules, so no tenant can take
such a name.
"""

from __future__ import annotations

# Django ships no type information; its imports are typed Any here.
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._django_backend import DjangoBackend

if TYPE_CHECKING:
    import psycopg

    from tenantkit.provisioning.clone import CloneScript

__all__ = ["SPARE_PREFIX", "TEMPLATE_PREFIX", "Claim", "DjangoTenantPool"]

TEMPLATE_PREFIX = "_pgtenants_dj_tpl_"
SPARE_PREFIX = "_pgtenants_dj_sp_"
#: The template is migrated under a name a tenant could have (tenantkit.django refuses to
#: make a reserved name current), then renamed to its reserved one.
_BUILD_PREFIX = "pgtenants_dj_bld_"
#: Spares made at the start of a session: tests in pytest-django's transaction give theirs
#: back, so a few cover most suites; more are cloned on demand (and then kept).
INITIAL_SPARES = 3


@dataclass
class Claim:
    """One tenant made by the pool for a test: the model instance and the spare it came from."""

    tenant: Any
    schema: str
    spare: str
    hosts: list[str] = field(default_factory=list)


def _conninfo(settings_dict: dict[str, Any]) -> str:
    """A libpq conninfo for the database Django's connection uses (the test database)."""
    from psycopg.conninfo import make_conninfo

    params: dict[str, Any] = {
        "dbname": settings_dict.get("NAME"),
        "user": settings_dict.get("USER"),
        "password": settings_dict.get("PASSWORD"),
        "host": settings_dict.get("HOST"),
        "port": settings_dict.get("PORT"),
    }
    # Django-only keys of OPTIONS are not libpq parameters.
    django_only = {
        "isolation_level",
        "server_side_binding",
        "assume_role",
        "pool",
        "cursor_factory",
    }
    for key, value in (settings_dict.get("OPTIONS") or {}).items():
        if key not in django_only and isinstance(value, (str, int)):
            params[key] = value
    return make_conninfo(**{k: str(v) for k, v in params.items() if v not in (None, "")})


class DjangoTenantPool:
    """The template, the spares and the claims of one test database (one per process)."""

    def __init__(self, backend: DjangoBackend, *, spares: int, domain: str) -> None:
        self.backend = backend
        self.domain = domain
        self.target = max(0, spares)
        self.template = ""
        self.digest = ""
        #: Spare schemas ready to claim (in-process bookkeeping; the database is the truth).
        self.spares: list[str] = []
        #: Whether the template was built by this session (``False``: reused from an earlier
        #: run with ``--reuse-db``).
        self.built = False
        self._side: psycopg.Connection[Any] | None = None
        self._script: CloneScript | None = None
        #: The template cannot be copied (CloneError): spares are migrated instead.
        self._unclonable = False

    # -- set-up ------------------------------------------------------------------------------

    def side(self) -> psycopg.Connection[Any]:
        """An autocommit connection of our own to the test database (spares, drops)."""
        import psycopg

        if self._side is None or self._side.closed:
            settings_dict = self.backend.connection().settings_dict
            # A lock a test left behind must not hang the session: give up after a while.
            self._side = psycopg.connect(
                _conninfo(settings_dict), autocommit=True, options="-c lock_timeout=10s"
            )
        return self._side

    def start(self) -> None:
        """Find or build the template, drop stale leftovers, and make the first spares."""
        from ._django_backend import migrations_digest

        self.digest = migrations_digest(self.backend)
        self.template = TEMPLATE_PREFIX + self.digest[:24]
        spare_prefix = f"{SPARE_PREFIX}{self.digest[:8]}_"
        conn = self.side()
        ours = [
            str(r[0])
            for r in conn.execute(
                "select nspname from pg_namespace where starts_with(nspname, '_pgtenants_dj_')"
                " or starts_with(nspname, 'pgtenants_dj_')"
            ).fetchall()
        ]
        stale = [
            name for name in ours if name != self.template and not name.startswith(spare_prefix)
        ]
        self._drop(stale)
        if self.template not in ours:
            self._build_template()
        self.spares = sorted(name for name in ours if name.startswith(spare_prefix))
        self.fill(min(self.target, INITIAL_SPARES))

    def _build_template(self) -> None:
        self._migrated(self.template)
        self.built = True

    def _migrated(self, name: str) -> None:
        """Make ``name`` by the project's own migrations (under a build name, renamed once
        complete, so an interrupted build is never taken for a finished one)."""
        from psycopg import sql

        building = _BUILD_PREFIX + secrets.token_hex(6)
        conn = self.side()
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(building)))
        try:
            self.backend.migrate_schema(building)
        except BaseException:
            self.backend.connection().close()  # it may hold locks on the half-built schema
            self._drop([building])
            raise
        conn.execute(
            sql.SQL("alter schema {} rename to {}").format(
                sql.Identifier(building), sql.Identifier(name)
            )
        )

    def fill(self, count: int) -> None:
        """Make sure at least ``count`` spares are ready."""
        while len(self.spares) < count:
            self.spares.append(self._clone())

    def _clone(self) -> str:
        """Copy the template into a new spare (committed); return its name."""
        from psycopg import sql

        from tenantkit.provisioning.clone import CloneError, clone_schema, clone_script

        suffix = secrets.token_hex(6)
        name = f"{SPARE_PREFIX}{self.digest[:8]}_{suffix}"
        conn = self.side()
        if self._script is None and not self._unclonable:
            try:  # the template's DDL, read from the catalog once per session
                self._script = clone_script(conn, self.template, rows="all")
            except CloneError:
                self._unclonable = True
        if self._script is None:
            # The template holds what a copy would lose (grants, row-level security...):
            # each spare is migrated as the template was.
            self._migrated(name)
            return name
        # clone_schema only creates names a tenant could have; ours are reserved ones, so
        # the copy is made under a tenant-like name and renamed in the same transaction.
        building = f"pgtenants_dj_clone_{suffix}"
        with conn.transaction():
            # Rows and sequence positions (the django_migrations ids) come with the clone.
            clone_schema(conn, self.template, building, data=True, script=self._script)
            conn.execute(
                sql.SQL("alter schema {} rename to {}").format(
                    sql.Identifier(building), sql.Identifier(name)
                )
            )
        return name

    def _drop(self, schemas: Iterable[str]) -> None:
        from psycopg import sql

        conn = self.side()
        for schema in schemas:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))

    def close(self) -> None:
        """Close our sessions on the test database (before pytest-django drops it)."""
        self.backend.close()
        if self._side is not None:
            self._side.close()
            self._side = None

    # -- tenants -----------------------------------------------------------------------------

    def host_for(self, schema: str) -> str:
        """The host a new tenant gets: ``<schema>.<domain>`` (``_`` becomes ``-``)."""
        return f"{schema.replace('_', '-')}.{self.domain}"

    def take_spare(self) -> str:
        """A spare to rename (cloned now when the pool is empty)."""
        if self.spares:
            return self.spares.pop()
        return self._clone()

    def claim(
        self,
        *,
        schema: str,
        hosts: list[str],
        fields: dict[str, Any],
        record: Callable[[Claim], None],
    ) -> Claim:
        """Create a tenant on Django's connection from a spare: schema, model row, domains.

        The caller's transaction (the test's) holds all of it. ``record`` gets the claim as
        soon as the schema is renamed, so a failing ``save()`` still has it cleaned up. The
        connection is left on the shared schema.
        """
        from django.test.utils import override_settings
        from psycopg import sql

        connection = self.backend.connection()
        self.backend.activate_public()
        spare = self.take_spare()
        connection.ensure_connection()
        rename = sql.SQL("alter schema {} rename to {}").format(
            sql.Identifier(spare), sql.Identifier(schema)
        )
        try:
            # On the driver connection: same transaction, without the backend's per-cursor
            # SET search_path (a schema-qualified DDL statement does not need one).
            connection.connection.execute(rename)
        except Exception as exc:
            self.spares.append(spare)
            from tenantkit.errors import TenantExists

            if "already exists" in str(exc):
                raise TenantExists(
                    f"schema {schema!r} already exists in the test database; pick another "
                    "schema_name (or drop what an earlier test left behind)"
                ) from exc
            raise
        tenant = self.backend.tenant_model()(schema_name=schema, **fields)
        claim = Claim(tenant=tenant, schema=schema, spare=spare, hosts=list(hosts))
        record(claim)
        # django-tenants sends SET search_path before every query unless
        # TENANT_LIMIT_SET_CALLS; the saves below all run on the shared schema, so its own
        # setting halves their round trips without changing what runs where.
        with override_settings(TENANT_LIMIT_SET_CALLS=True):
            # The schema exists now, so the package's save() neither creates nor migrates one
            # (its create_schema(check_if_exists=True) returns at once) and still sends
            # post_schema_sync, as for any new tenant of the project.
            tenant.save()
            domain_model = self.backend.domain_model()
            for index, host in enumerate(hosts):
                domain_model(tenant=tenant, domain=host, is_primary=index == 0).save()
        self.backend.routes_changed()
        return claim

    def release(self, claims: list[Claim], *, rolled_back: bool) -> None:
        """Undo ``claims`` after the test.

        ``rolled_back``: the test's transaction is about to be rolled back, which renames the
        spares back and deletes the rows, so they only return to the pool's list. Otherwise
        the tenants are deleted through the ORM (their domains and other rows referencing
        them cascade) and their schemas dropped.
        """
        if not claims:
            return
        self.backend.activate_public()
        self.backend.routes_changed()
        if rolled_back:
            self.spares.extend(claim.spare for claim in reversed(claims))
            return
        model = self.backend.tenant_model()
        failures: list[BaseException] = []
        for claim in reversed(claims):
            try:
                # A queryset delete: the model's delete() may drop the schema itself
                # (auto_drop_schema) or refuse; we drop it below either way.
                model.objects.filter(pk=claim.tenant.pk).delete()
            except Exception as exc:  # drop the others anyway, then report
                failures.append(exc)
        try:
            self._drop(claim.schema for claim in claims)
        except Exception as exc:
            failures.append(exc)
        self.fill(min(self.target, INITIAL_SPARES))
        if failures:
            raise failures[0]
