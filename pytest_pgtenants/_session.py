"""Per-process state of the plugin: server, databases, tenancies and the background janitor.

Everything is created on first use by a fixture, so a test run that requests no fixture of
ours starts nothing. :meth:`PgTenantsSession.finish` undoes all of it in reverse order; it runs
as a session-fixture finalizer, which pytest also runs after a failed or interrupted
(Ctrl-C) session.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._options import Settings

if TYPE_CHECKING:
    import psycopg

    from tenantkit.core.models import Tenant
    from tenantkit.core.tenancy import Tenancy

    from ._recycle import Baseline
    from ._server import ServerHandle

__all__ = ["PgTenantsSession", "TestDatabase", "TestScope"]


@dataclass(frozen=True)
class TestDatabase:
    """The database of this test process: cloned from ``template``, dropped at the end."""

    name: str
    conninfo: str
    template: str


class _Janitor:
    """A daemon thread doing cleanup work off the test's critical path.

    Dropping a 20-table tenant schema costs tens of milliseconds; doing it in the test's
    teardown would put that time between every two tests. Jobs run in order; ``drain()``
    waits for all of them (used before anything that needs a settled registry, and at the end).
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def submit(self, job: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pgtenants-janitor", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                job()
            except Exception as exc:  # kept and reported at the end, never lost silently
                self.errors.append(exc)
            finally:
                self._jobs.task_done()

    def drain(self) -> None:
        if self._thread is not None:
            self._jobs.join()

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=60)
            self._thread = None


@dataclass
class TestScope:
    """What the current test created through the plugin, undone at its teardown."""

    session: PgTenantsSession
    tenancy: Tenancy
    #: The pytest node id of the test (recorded in the metadata of tenants kept for it).
    nodeid: str = ""
    created: list[Tenant] = field(default_factory=list)

    def track(self, tenant: Tenant) -> None:
        """Remember ``tenant`` for cleanup at the end of the test."""
        self.created.append(tenant)

    def cleanup(self) -> None:
        """Retire what the test created (see :meth:`PgTenantsSession.drop_tenants`)."""
        created, self.created = self.created, []
        self.session.drop_tenants(created, nodeid=self.nodeid)


class PgTenantsSession:
    """The plugin's state in one test process (one xdist worker, or the only process)."""

    def __init__(
        self,
        settings: Settings,
        *,
        project: str,
        worker: str,
        shared_run_dir: Path | None = None,
        controller_pid: int | None = None,
    ) -> None:
        self.settings = settings
        self.project = project
        self.worker = worker
        self.shared_run_dir = shared_run_dir
        self.controller_pid = controller_pid
        self.keep_notes: list[str] = []
        self.janitor = _Janitor()
        self.hosts: dict[str, str] = {}
        self._server: ServerHandle | None = None
        self._template: str | None = None
        self._database: TestDatabase | None = None
        self._tenancies: dict[bool, Tenancy] = {}
        self._lock = threading.RLock()
        self._spares_refilling = False
        self._spares_left: int | None = None
        self._baselines: dict[int, Baseline] = {}
        self._baselined = False
        self._pending_recycles = 0
        #: What the janitor did: schemas recycled into the spare pool, and dropped.
        self.stats = {"recycled": 0, "dropped": 0}
        self._janitor_conn: psycopg.Connection[Any] | None = None
        #: ``--pgtenants-keep``: the tenants kept after their test, by schema: the tenant, its
        #: hosts and the test's node id.
        self.kept: dict[str, tuple[Tenant, frozenset[str], str]] = {}

    # -- infrastructure ----------------------------------------------------------------------

    @property
    def server(self) -> ServerHandle:
        """The server under test, started or connected on first use."""
        with self._lock:
            if self._server is None:
                self._server = self._open_server()
            return self._server

    def _open_server(self) -> ServerHandle:
        # Imported here, not at the top: loading the plugin must not import psycopg.
        from ._server import connect_server, from_dsn, start_embedded

        settings = self.settings
        if settings.dsn:
            return from_dsn(settings.dsn)
        # The shared server is coordinated with fcntl locks and signals (POSIX); elsewhere each
        # worker starts its own embedded server (a fraction of a second with a cached cluster).
        if (
            self.shared_run_dir is not None
            and self.controller_pid is not None
            and os.name == "posix"
        ):
            handle = connect_server(self.shared_run_dir, self.controller_pid, keep=settings.keep)
        else:
            handle = start_embedded(keep=settings.keep)
        if settings.keep and handle.data_dir:
            # Not `pg_ctl stop`: the server runs as an unprivileged account when we are root,
            # and pg_ctl refuses to run as root. `tenantkit server stop` signals the postmaster
            # (after checking it serves that directory) and removes the directory.
            base_dir = shlex.quote(str(Path(handle.data_dir).parent))
            self.keep_notes.append(
                f"embedded server left running (conninfo {handle.conninfo!r}); stop it and "
                f"remove it with: tenantkit server stop {base_dir}"
            )
        return handle

    @property
    def template(self) -> str:
        """The name of the up-to-date template database (built on first use)."""
        with self._lock:
            if self._template is None:
                from ._database import ensure_template

                self._template = ensure_template(self.server, self.settings, self.project)
            return self._template

    @property
    def database(self) -> TestDatabase:
        """This process's test database, cloned from the template on first use."""
        with self._lock:
            if self._database is None:
                from ._database import create_test_database

                name = create_test_database(self.server, self.template, self.worker)
                conninfo = self.server.conninfo_for(name)
                self._database = TestDatabase(name=name, conninfo=conninfo, template=self.template)
                if self.settings.keep:
                    self.keep_notes.extend(
                        [
                            f"kept test database {name}; connect with:",
                            f"    psql {conninfo!r}",
                            f"    tenantkit --dsn {conninfo!r} shell [TENANT]",
                        ]
                    )
            return self._database

    @property
    def _migrated(self) -> bool:
        """Tenants get migrations (a directory, an Alembic project or both)."""
        return self.settings.migrations is not None or self.settings.alembic is not None

    def tenancy(self, *, strict: bool = False) -> Tenancy:
        """The session's ``Tenancy`` on the test database (a separate one for strict mode)."""
        with self._lock:
            found = self._tenancies.get(strict)
            if found is None:
                from tenantkit.core.tenancy import Tenancy

                found = Tenancy(
                    self.database.conninfo,
                    shared_schema=self.settings.shared_schema,
                    migrations=self.settings.migrations,
                    strict=strict,
                    min_size=1,
                    max_size=8,
                )
                if self.settings.alembic is not None:
                    if self.settings.migrations is not None:
                        import pytest

                        raise pytest.UsageError(
                            "pgtenants_alembic and pgtenants_migrations are both set: give one "
                            "migration source (the Alembic project, or the directory)"
                        )
                    _use_alembic(found, self.settings.alembic)
                self._tenancies[strict] = found
            return found

    # -- tenants -----------------------------------------------------------------------------

    def host_for(self, schema: str) -> str:
        """The host the fixtures give a tenant with this schema: ``<schema>.<domain>``.

        Host names cannot hold ``_``: a schema such as ``acme_corp`` gets ``acme-corp``.
        """
        return f"{schema.replace('_', '-')}.{self.settings.domain}"

    def primary_host(self, tenant: Tenant | str) -> str:
        """The primary host of ``tenant`` (from the registry when the fixtures did not make it)."""
        schema = tenant if isinstance(tenant, str) else tenant.schema
        host = self.hosts.get(schema)
        if host is not None:
            return host
        domains = self.tenancy().domains(tenant)
        for domain in domains:
            if domain.is_primary:
                self.hosts[schema] = domain.host
                return domain.host
        if domains:
            return domains[0].host
        from tenantkit.errors import DomainNotFound

        raise DomainNotFound(
            f"tenant {schema!r} has no domain; add one with tenancy.add_domain({schema!r}, host)"
        )

    def new_schema_name(self) -> str:
        """A fresh, unique, valid schema name for an anonymous test tenant: ``t<16 hex>``.

        No ``_`` in it, so the tenant's host is exactly ``<schema>.<domain>``. Unique across
        processes (xdist workers each have their own database anyway).
        """
        return f"t{uuid.uuid4().hex[:16]}"

    def create_tenant(
        self,
        tenancy: Tenancy,
        *,
        schema: str | None = None,
        name: str | None = None,
        domains: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Tenant:
        """Create a tenant (claiming a warm spare when one is left) and keep the pool warm."""
        if not self._baselined and self._migrated:
            # Before the first claim: every spare is still pristine.
            self._baselined = True
            self._baseline_spares()
        schema = schema or self.new_schema_name()
        hosts = list(domains) if domains is not None else [self.host_for(schema)]
        if self.kept:
            self._release_kept(schema, hosts)
        tenant = tenancy.create_tenant(
            schema, name=name or schema, domains=hosts, metadata=dict(metadata or {})
        )
        if getattr(tenancy.provisioner, "last_path", "spare") != "spare":
            # Built just now (the pool was empty): pristine, so fingerprint it for recycling.
            self._baseline_schema(tenant.schema)
        if hosts:
            from tenantkit.core.names import normalize_host

            self.hosts[tenant.schema] = normalize_host(hosts[0])
        self._maybe_refill_spares(tenancy)
        return tenant

    def _maybe_refill_spares(self, tenancy: Tenancy) -> None:
        """Count the spare just claimed; refill the pool in the background once half is gone.

        The count is kept here rather than asked from the database (``Spares.count()`` opens a
        connection): the test database starts with ``spares`` of them (the template's), and the
        provisioner says whether each creation took one.
        """
        target = self.settings.spares
        if not target or not self._migrated:
            return
        if self._spares_left is None:
            self._spares_left = target
        took_spare = getattr(tenancy.provisioner, "last_path", "spare") == "spare"
        self._spares_left = self._spares_left - 1 if took_spare else 0
        # Schemas retired by earlier tests come back to the pool soon (recycled by the janitor):
        # refilling by cloning is only for what recycling cannot cover.
        if self._spares_refilling or self._spares_left + self._pending_recycles > target // 2:
            return
        self._spares_refilling = True
        spares = self.tenancy().spares

        def refill() -> None:
            try:
                # Each spare fingerprinted in the transaction that builds it: no test can
                # have claimed (and changed) it yet.
                spares.fill(target, on_built=self._baseline_built)
                self._spares_left = spares.count()
            finally:
                self._spares_refilling = False

        self.janitor.submit(refill)

    def drop_tenants(self, created: list[Tenant], *, nodeid: str = "") -> None:
        """Retire the tenants a test created, in about a millisecond each.

        Dropping a 20-table schema costs tens of milliseconds of server time, so it is not
        done here. In one round trip the registry row and domains are deleted and the schema
        is renamed to a random holding name, which frees the schema name and the hosts for
        the next test at once. The janitor thread then recycles the schema into the spare
        pool (see :mod:`pytest_pgtenants._recycle`) or, when the test changed its
        structure, drops it; either way off the tests' critical path.

        With ``--pgtenants-keep`` they stay instead, with ``nodeid`` recorded in their
        metadata (see :meth:`keep_tenants`).
        """
        if not created:
            return
        if self.settings.keep:
            self.keep_tenants(created, nodeid)
            return
        self._retire_all(created)

    def keep_tenants(self, created: list[Tenant], nodeid: str) -> None:
        """(keep mode) Record the test in the kept tenants' metadata (``pgtenants_test``).

        A kept tenant stays until the end of the run unless a later test asks for its schema
        name or one of its hosts: that test gets a fresh tenant and the earlier one is retired
        then, so each name ends up holding the state of the last test that used it.
        """
        from tenantkit.errors import TenantNotFound

        tenancy = self.tenancy()
        hosts: dict[str, set[str]] = {}
        for tenant in created:
            # The metadata is written after the test, not at creation: the test sees exactly
            # the metadata it asked for, with or without --pgtenants-keep.
            try:
                tenancy.update_metadata(tenant, {"pgtenants_test": nodeid})
                hosts[tenant.schema] = {d.host for d in tenancy.domains(tenant)}
            except TenantNotFound:
                continue  # the test dropped (or renamed) it itself
        with self._lock:
            for tenant in created:
                if tenant.schema in hosts:  # else: the test dropped it itself
                    self.kept[tenant.schema] = (tenant, frozenset(hosts[tenant.schema]), nodeid)

    def _release_kept(self, schema: str, hosts: Iterable[str]) -> None:
        """(keep mode) Retire kept tenants holding ``schema`` or one of ``hosts``."""
        from tenantkit.core.names import normalize_host
        from tenantkit.errors import InvalidHostname

        wanted: set[str] = set()
        for host in hosts:
            try:
                wanted.add(normalize_host(host))
            except InvalidHostname:
                continue  # create_tenant reports it
        with self._lock:
            clashing = [
                tenant
                for kept_schema, (tenant, kept_hosts, _) in self.kept.items()
                if kept_schema == schema or kept_hosts & wanted
            ]
            for tenant in clashing:
                del self.kept[tenant.schema]
        if clashing:
            self._retire_all(clashing)

    def _retire_all(self, tenants: list[Tenant]) -> None:
        tenancy = self.tenancy()
        failures: list[BaseException] = []
        for tenant in reversed(tenants):
            self.hosts.pop(tenant.schema, None)
            try:
                retired = _retire(tenancy, tenant)
            except psycopg_errors().LockNotAvailable as exc:
                failures.append(
                    RuntimeError(
                        f"could not remove tenant {tenant.schema!r} after the test: another "
                        "connection still holds locks on its tables (a transaction the test "
                        "left open?); close connections and transactions the test opened"
                    ).with_traceback(exc.__traceback__)
                )
                continue
            except Exception as exc:  # retire the others anyway, then report
                failures.append(exc)
                continue
            if retired is not None:
                with self._lock:
                    self._pending_recycles += 1
                holding, nsp_oid = retired
                self.janitor.submit(partial(self._recycle_or_drop, holding, nsp_oid))
        if failures:
            raise failures[0]

    def _janitor_connection(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._janitor_conn is None or self._janitor_conn.closed:
            # A lock a test left behind (an open transaction) must not hang the janitor, and
            # with it the end of the session: give up on that schema after a while.
            self._janitor_conn = psycopg.connect(
                self.database.conninfo, autocommit=True, options="-c lock_timeout=5s"
            )
        return self._janitor_conn

    def _baseline_spares(self) -> None:
        """Fingerprint the spares not fingerprinted yet (they are pristine now)."""
        from ._recycle import fingerprints

        conn = self._janitor_connection()
        with self._lock:
            known = set(self._baselines)
        # Held while they are fingerprinted: a spare a test claimed (and changed) in between
        # would be recorded as pristine.
        with conn.transaction():
            names = self.tenancy().spares.names(conn, hold=True)
            found = fingerprints(conn, names)
        with self._lock:
            for oid, baseline in found.items():
                if oid not in known:
                    self._baselines[oid] = baseline

    def _baseline_built(self, conn: psycopg.Connection[Any], name: str) -> None:
        """Fingerprint ``name``, pristine now (also ``Spares.fill``'s ``on_built``: before
        the spare can be claimed)."""
        from ._recycle import fingerprints

        found = fingerprints(conn, [name])
        with self._lock:
            self._baselines.update(found)

    def _baseline_schema(self, schema: str) -> None:
        with self.tenancy().admin_connection() as conn:
            self._baseline_built(conn, schema)

    def _recycle_or_drop(self, holding: str, nsp_oid: int) -> None:
        """(janitor) Put a retired schema back into the spare pool, or drop it."""
        from ._recycle import recycle

        recyclable = self._migrated and self.settings.spares > 0
        with self._lock:
            baseline = self._baselines.get(nsp_oid)
        try:
            recycled = recyclable and recycle(
                self._janitor_connection(), self.tenancy().spares, holding, nsp_oid, baseline
            )
        finally:
            with self._lock:
                self._pending_recycles -= 1
        if recycled:
            with self._lock:
                self._spares_left = (self._spares_left or 0) + 1
                self.stats["recycled"] += 1
            return
        with self._lock:
            self.stats["dropped"] += 1
            self._baselines.pop(nsp_oid, None)
        # A lock a test left behind (an open transaction) must not hang the janitor, and with
        # it the end of the session: give up on that schema after a while.
        self.tenancy().drop_retired(holding, lock_timeout=5.0)

    # -- teardown ----------------------------------------------------------------------------

    def _note_kept_tenants(self) -> None:
        if not self.kept or self._database is None:
            return
        shown = 10
        self.keep_notes.append(
            f"kept {len(self.kept)} tenant(s) in {self._database.name} (their registry "
            "metadata 'pgtenants_test' names the test that left them):"
        )
        for schema, (_, _, nodeid) in list(self.kept.items())[:shown]:
            self.keep_notes.append(f"    {schema}  {nodeid}")
        if len(self.kept) > shown:
            self.keep_notes.append(f"    ... and {len(self.kept) - shown} more")

    def finish(self) -> None:
        """Undo everything this process started (unless ``keep``), in reverse order."""
        if self.settings.keep:
            self._note_kept_tenants()
        try:
            self.janitor.stop()
            if self.janitor.errors:
                import warnings

                warnings.warn(
                    f"pytest_pgtenants: background cleanup failed {len(self.janitor.errors)} "
                    f"time(s); first error: {self.janitor.errors[0]!r}",
                    RuntimeWarning,
                    stacklevel=1,
                )
            if self._janitor_conn is not None:
                self._janitor_conn.close()
                self._janitor_conn = None
        finally:
            try:
                for tenancy in self._tenancies.values():
                    with contextlib.suppress(Exception):
                        tenancy.close()
                self._tenancies.clear()
            finally:
                self._finish_databases()

    def _finish_databases(self) -> None:
        server = self._server
        if server is None:
            return
        from ._database import drop_database, drop_template

        try:
            if self._database is not None and not self.settings.keep:
                drop_database(server, self._database.name)
            if self._template is not None and not self.settings.cache and not self.settings.keep:
                drop_template(server, self._template)
        finally:
            self._database = None
            self._server = None
            server.stop()


def psycopg_errors() -> Any:
    """``psycopg.errors``, imported on use (loading the plugin must not import psycopg)."""
    from psycopg import errors

    return errors


def _retire(tenancy: Tenancy, tenant: Tenant) -> tuple[str, int] | None:
    """Unregister ``tenant`` and rename its schema to a retired name: ``(name, nsp oid)``."""
    from tenantkit.errors import TenantNotFound

    try:
        # A connection the test left open inside a transaction on this tenant's tables would
        # block the rename forever; fail the teardown with a clear message instead.
        retired = tenancy.retire_tenant(tenant, lock_timeout=10.0)
    except TenantNotFound:
        return None  # the test dropped (or renamed) it itself
    return retired.schema, retired.oid


def _use_alembic(tenancy: Tenancy, ini: Path) -> None:
    """Make ``tenancy`` migrate and provision its tenants with the Alembic project ``ini``.

    The engine reads a tenancy's ``migration_source`` before its migrations directory, and
    tenant creation then goes through the migration provisioner (spares, template, replay).
    """
    from tenantkit.alembic import AlembicSource
    from tenantkit.provisioning import MigrationProvisioner

    tenancy.migration_source = AlembicSource(ini)
    tenancy.provisioner = MigrationProvisioner(tenancy)
    # Brings the shared schema's bookkeeping (spares table, summary) into being, and any
    # schema left behind the revisions to the head; one query when nothing is pending.
    report = tenancy.migrate()
    if not report.ok:
        failed = [f"{r.schema}: {r.error}" for r in report.results if r.status == "failed"]
        raise RuntimeError(f"pgtenants_alembic: migrating the test database failed: {failed}")
