"""pytest_pgtenants for Django projects (django-tenants or tenantkit.django), on pytest-django.

Load it with ``-p pytest_pgtenants._django`` next to ``-p pytest_pgtenants`` (pytest-django
must be installed and configured). It adds:

* ``django_tenant``: a fresh, fully migrated tenant per test (a saved ``TENANT_MODEL``
  instance with one primary domain), active on Django's connection during the test;
* ``django_tenant_factory(schema_name=None, domains=None, **fields)``;
* ``django_tenant_client`` / ``async_django_tenant_client``: Django's test ``Client`` /
  ``AsyncClient`` sending the tenant's host;
* ``@pytest.mark.tenants("acme", "globex")`` making Django tenants in tests that use
  Django's database (the ``tenants`` fixture then maps names to model instances);
* ``assert_tenants_isolated`` checking on Django's connection in those tests.

How the tenants are made fast is in :mod:`._django_pool`. Outside tests that use Django's
database, ``tenants`` and ``assert_tenants_isolated`` behave as the core plugin's.
"""

from __future__ import annotations

# Django ships no type information; its imports are typed Any here.
import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import psycopg

    from ._django_pool import Claim, DjangoTenantPool
    from .asserts import IsolationSnapshot

__all__ = [
    "DjangoIsolationAsserter",
    "DjangoTestScope",
    "assert_tenants_isolated",
    "async_django_tenant_client",
    "current_django_scope",
    "django_tenant",
    "django_tenant_client",
    "django_tenant_factory",
    "pgtenants_django_pool",
    "pgtenants_django_tenant_fields",
    "tenants",
]

#: Fixtures whose presence means a test works on Django's database (pytest-django's or ours).
_DJANGO_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
        "django_tenant",
        "django_tenant_factory",
        "django_tenant_client",
        "async_django_tenant_client",
    }
)

# The scope of the running test, for code that cannot take fixtures (factory-boy factories).
_CURRENT: list[DjangoTestScope] = []


def _uses_django(request: pytest.FixtureRequest) -> bool:
    if request.node.get_closest_marker("django_db") is not None:
        return True
    return any(name in _DJANGO_FIXTURES for name in request.fixturenames)


def _settings_value(config: pytest.Config, name: str, default: Any) -> Any:
    """A ``pgtenants_*`` setting from the core plugin when it is loaded, else ``default``."""
    from .fixtures import SESSION_KEY

    session = config.stash.get(SESSION_KEY, None)
    return default if session is None else getattr(session.settings, name)


# -- session -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pgtenants_django_pool(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: Any
) -> Iterator[DjangoTenantPool]:
    """The template schema and spare schemas Django tenants are made from (one per process).

    The template is migrated once per test database by the project's own ``migrate_schemas``
    and named after a digest of the migration files, so with ``--reuse-db`` a later run
    reuses it while the migrations are unchanged. Spares are copies of it; a tenant claims one
    by renaming it. ``.template``, ``.spares``, ``.built`` (False: reused) describe it.
    """
    from ._django_backend import detect_backend
    from ._django_pool import DjangoTenantPool

    with django_db_blocker.unblock():
        try:
            backend = detect_backend()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        pool = DjangoTenantPool(
            backend,
            spares=int(_settings_value(request.config, "spares", 20)),
            domain=str(_settings_value(request.config, "domain", "example.test")),
        )
        try:
            pool.start()
            yield pool
        finally:
            # Before pytest-django's teardown drops the test database: our connection would
            # make DROP DATABASE fail.
            pool.close()


@pytest.fixture
def pgtenants_django_tenant_fields() -> dict[str, Any]:
    """Extra field values for every tenant the Django fixtures create (override it).

    For a ``TENANT_MODEL`` with required fields, override this fixture in ``conftest.py``::

        @pytest.fixture
        def pgtenants_django_tenant_fields():
            return {"name": "Test tenant", "paid_until": date(2100, 1, 1)}

    Values given to ``django_tenant_factory(...)`` take precedence.
    """
    return {}


# -- per test ------------------------------------------------------------------------------


@dataclass
class DjangoTestScope:
    """The Django tenants of the running test, undone at its teardown."""

    pool: DjangoTenantPool
    defaults: dict[str, Any]
    #: True when the test runs inside pytest-django's transaction (``db``): the rollback undoes
    #: everything. False for transactional tests: the tenants are deleted explicitly.
    rolled_back: bool
    claims: list[Claim] = field(default_factory=list)

    def create(
        self,
        schema_name: str | None = None,
        domains: Iterable[str] | None = None,
        **fields: Any,
    ) -> Any:
        """A fresh, migrated tenant; the current tenant of Django's connection is kept."""
        schema = schema_name or f"t{uuid.uuid4().hex[:16]}"
        from tenantkit import validate_schema_name

        validate_schema_name(schema, shared_schema=self.pool.backend.public_schema())
        hosts = list(domains) if domains is not None else [self.pool.host_for(schema)]
        previous = self.pool.backend.current()
        claim = self.pool.claim(
            schema=schema,
            hosts=hosts,
            fields={**self.defaults, **fields},
            record=self.claims.append,
        )
        if previous is not None:
            # The claim saved on the shared schema; give the test its tenant back.
            self.pool.backend.activate(previous)
        return claim.tenant

    def primary_host(self, tenant: Any) -> str:
        """The primary host of a tenant this scope made (else from its domains)."""
        for claim in self.claims:
            same = claim.tenant is tenant or claim.schema == getattr(tenant, "schema_name", tenant)
            if same and claim.hosts:
                return claim.hosts[0]
        domain = tenant.get_primary_domain() or tenant.domains.first()
        if domain is None:
            raise LookupError(f"tenant {tenant.schema_name!r} has no domain")
        return str(domain.domain)

    def cleanup(self) -> None:
        """Give the spares back (rolled-back tests) or delete the tenants (transactional)."""
        claims, self.claims = self.claims, []
        self.pool.release(claims, rolled_back=self.rolled_back)


def current_django_scope() -> DjangoTestScope:
    """The running test's Django scope (``RuntimeError`` saying what to request when none)."""
    if not _CURRENT:
        raise RuntimeError(
            "pytest_pgtenants' Django factories need a running test that uses the "
            "`django_tenant_factory` fixture (or `django_tenant`): add it to the test's arguments"
        )
    return _CURRENT[-1]


@pytest.fixture
def _pgtenants_django_scope(
    request: pytest.FixtureRequest,
    db: None,
    pgtenants_django_pool: DjangoTenantPool,
    pgtenants_django_tenant_fields: dict[str, Any],
) -> Iterator[DjangoTestScope]:
    """(internal) The Django tenants of this test; undone after it."""
    connection = pgtenants_django_pool.backend.connection()
    # pytest-django wraps a `db` test in atomic blocks and rolls them back afterwards; a
    # transactional test runs in autocommit. The connection's state says which one this is.
    scope = DjangoTestScope(
        pool=pgtenants_django_pool,
        defaults=dict(pgtenants_django_tenant_fields),
        rolled_back=bool(connection.in_atomic_block),
    )
    _CURRENT.append(scope)
    try:
        yield scope
    finally:
        _CURRENT.remove(scope)
        scope.cleanup()


@pytest.fixture
def django_tenant_factory(_pgtenants_django_scope: DjangoTestScope) -> Callable[..., Any]:
    """``django_tenant_factory(schema_name=None, domains=None, **fields)``: new Django tenants.

    Each is a saved ``TENANT_MODEL`` instance on a freshly migrated schema (a spare claimed by
    rename, a few milliseconds), with a domain per host in ``domains``, the first one primary
    (default ``<schema>.example.test``; ``()`` for none). ``fields`` are model fields (on top of
    ``pgtenants_django_tenant_fields``). Django's connection stays on its current tenant.
    Undone after the test (rolled back with ``db``, deleted and dropped with
    ``transactional_db``).
    """
    return _pgtenants_django_scope.create


@pytest.fixture
def django_tenant(
    request: pytest.FixtureRequest, _pgtenants_django_scope: DjangoTestScope
) -> Iterator[Any]:
    """A fresh, fully migrated Django tenant, active on Django's connection for the test.

    A saved ``TENANT_MODEL`` instance (schema ``t`` + 16 hex digits) with one primary domain,
    ``<schema>.example.test``, made from a spare schema in a few milliseconds. Under
    ``@pytest.mark.tenants(...)`` it is the first named tenant. Works with ``db`` (everything
    rolled back) and ``transactional_db`` (deleted and dropped after the test).
    """
    scope = _pgtenants_django_scope
    if request.node.get_closest_marker("tenants") is not None:
        named: dict[str, Any] = request.getfixturevalue("tenants")
        tenant = next(iter(named.values()))
    else:
        tenant = scope.create()
    scope.pool.backend.activate(tenant)
    try:
        yield tenant
    finally:
        scope.pool.backend.activate_public()


@pytest.fixture
def tenants(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The tenants named by ``@pytest.mark.tenants("acme", "globex")``, by schema name.

    In a test that uses Django's database (``db``, ``transactional_db``, ``django_db``
    marker, ``django_tenant``...) they are Django tenants (``TENANT_MODEL`` instances, host
    ``<name>.example.test``); otherwise tenantkit tenants, as the core plugin makes them.
    """
    marker = request.node.get_closest_marker("tenants")
    if marker is None:
        pytest.fail(
            'the "tenants" fixture needs @pytest.mark.tenants("acme", "globex", ...) on the test',
            pytrace=False,
        )
    if _uses_django(request):
        scope: DjangoTestScope = request.getfixturevalue("_pgtenants_django_scope")
        return {name: scope.create(name) for name in marker.args}
    factory = request.getfixturevalue("tenant_factory")
    return {name: factory(schema=name, name=name) for name in marker.args}


# -- clients -------------------------------------------------------------------------------


def _allow_hosts(hosts: Sequence[str]) -> contextlib.AbstractContextManager[Any]:
    from django.conf import settings
    from django.test.utils import override_settings

    allowed = list(settings.ALLOWED_HOSTS)
    extra = [h for h in hosts if h not in allowed]
    manager: contextlib.AbstractContextManager[Any] = override_settings(
        ALLOWED_HOSTS=[*allowed, *extra]
    )
    return manager


def _client_class(asynchronous: bool) -> type[Any]:
    from django.test import AsyncClient, Client

    base: type[Any] = AsyncClient if asynchronous else Client

    class TenantClient(base):
        """Django's test client sending ``tenant``'s host (``HTTP_HOST``) with each request."""

        def __init__(self, tenant: Any, host: str, scope: DjangoTestScope, **defaults: Any):
            if not asynchronous:
                defaults.setdefault("HTTP_HOST", host)
            super().__init__(**defaults)
            self.tenant = tenant
            self.host = host
            self._scope = scope

        if asynchronous:

            async def request(self, **request: Any) -> Any:
                # Django's AsyncClient always sends "host: testserver" first and appends
                # any host given as a header, which ASGIRequest joins into one invalid
                # "testserver,<host>": send exactly one host, the last one given, else ours.
                given = [v for k, v in request.get("headers", []) if k == b"host"]
                host = given[-1] if len(given) > 1 else self.host.encode("ascii")
                others = [(k, v) for k, v in request.get("headers", []) if k != b"host"]
                request["headers"] = [(b"host", host), *others]
                return await super().request(**request)

        def for_tenant(self, tenant: Any, **defaults: Any) -> TenantClient:
            """A client of the same kind for another tenant (its primary host)."""
            return type(self)(tenant, self._scope.primary_host(tenant), self._scope, **defaults)

    return TenantClient


@pytest.fixture
def django_tenant_client(
    django_tenant: Any, _pgtenants_django_scope: DjangoTestScope
) -> Iterator[Any]:
    """Django's test ``Client`` whose requests carry ``django_tenant``'s host.

    The request goes through the project's middleware (django-tenants'
    ``TenantMainMiddleware`` routes it to the tenant). The base domain (``.example.test``)
    is added to ``ALLOWED_HOSTS`` while the client lives. ``client.for_tenant(other)``
    gives one for another tenant.
    """
    scope = _pgtenants_django_scope
    with _allow_hosts(["." + scope.pool.domain]):
        yield _client_class(False)(django_tenant, scope.primary_host(django_tenant), scope)


@pytest.fixture
def async_django_tenant_client(
    transactional_db: None, django_tenant: Any, _pgtenants_django_scope: DjangoTestScope
) -> Iterator[Any]:
    """Django's ``AsyncClient`` whose requests carry ``django_tenant``'s host.

    It makes the test transactional (``transactional_db``): Django runs the synchronous
    parts of an async request (the ORM, sync middleware) on another thread, with a database
    connection of its own, which only sees committed tenants. The tenant is deleted and its
    schema dropped after the test.
    """
    import threading

    from django.db.backends.signals import connection_created

    scope = _pgtenants_django_scope
    here = threading.get_ident()
    opened: list[Any] = []

    def remember(sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.get_ident() != here:
            opened.append(connection)

    uid = f"pgtenants-async-client-{id(opened)}"
    connection_created.connect(remember, weak=False, dispatch_uid=uid)
    try:
        with _allow_hosts(["." + scope.pool.domain]):
            yield _client_class(True)(django_tenant, scope.primary_host(django_tenant), scope)
    finally:
        connection_created.disconnect(dispatch_uid=uid)
        # Each request ran on a thread of its own, which opened a connection and never
        # closed it (the test client detaches close_old_connections): an open session keeps
        # pytest-django from dropping the test database at the end. The threads are gone,
        # and Django refuses to close a connection from another thread, so the socket is
        # closed underneath it.
        for wrapper in opened:
            raw = getattr(wrapper, "connection", None)
            if raw is not None and not raw.closed:
                raw.close()


# -- isolation -----------------------------------------------------------------------------


def _raw(backend: Any) -> psycopg.Connection[Any]:
    connection = backend.connection()
    connection.ensure_connection()
    raw: psycopg.Connection[Any] = connection.connection
    return raw


def _forget(snapshot: IsolationSnapshot, schemas: set[str]) -> IsolationSnapshot:
    """``snapshot`` without ``schemas`` (spares claimed by tenants made inside the block)."""
    if not schemas:
        return snapshot
    return replace(
        snapshot,
        schemas=tuple(s for s in snapshot.schemas if s not in schemas),
        objects={s: v for s, v in snapshot.objects.items() if s not in schemas},
        locators={k: v for k, v in snapshot.locators.items() if k[0] not in schemas},
        tables={k: v for k, v in snapshot.tables.items() if k[0] not in schemas},
        sequences={k: v for k, v in snapshot.sequences.items() if k[0] not in schemas},
        namespaces={k: v for k, v in snapshot.namespaces.items() if k not in schemas},
        relations={k: v for k, v in snapshot.relations.items() if k not in schemas},
    )


class _DjangoBlock:
    """``with assert_tenants_isolated(acme):`` on Django's connection."""

    def __init__(self, asserter: DjangoIsolationAsserter, acting: tuple[str, ...]) -> None:
        self._asserter = asserter
        self._acting = acting
        self._before: IsolationSnapshot | None = None
        self._spares: set[str] = set()

    def __enter__(self) -> _DjangoBlock:
        from .asserts import take_snapshot

        asserter = self._asserter
        pool = asserter.pool
        self._spares = set(pool.spares)
        covered = [s for s in asserter.tenant_schemas() if s not in self._acting]
        # The template and the spares are what the next tenants are made from: a row or
        # DDL planted there would leak into them, so they are covered like tenants.
        covered += [pool.template, *self._spares]
        self._before = take_snapshot(
            _raw(pool.backend), covered, shared_schema=asserter.shared_schema, reserved=False
        )
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        from .asserts import assert_unchanged

        if exc_type is not None or self._before is None:
            return
        asserter = self._asserter
        claimed = self._spares - set(asserter.pool.spares)
        allowed = [*self._acting, *asserter.tenant_schemas()]
        assert_unchanged(
            _raw(asserter.pool.backend), _forget(self._before, claimed), tenant_schemas=allowed
        )


class _DjangoTenantConnection:
    """What ``connect(schema)`` gives ``check_isolation``: queries through Django's ORM
    connection with that tenant's schema set by the project's own backend.

    It speaks the little of psycopg's API the check uses (``execute()``, ``transaction()``)
    and raises psycopg's errors, not Django's wrappers, so that a canary row the check cannot
    insert is skipped as it would be on a psycopg connection.
    """

    def __init__(self, backend: Any, schema: str) -> None:
        self._backend = backend
        self._schema = schema
        self._writes = 0

    def execute(self, query: Any, params: Sequence[Any] | None = None) -> Any:
        connection = self._backend.connection()
        self._backend.activate_schema(self._schema)
        connection.ensure_connection()
        text = query if isinstance(query, str) else query.as_string(connection.connection)
        if not text.lstrip().upper().startswith("SELECT"):
            self._writes += 1
        with _psycopg_errors():
            cursor = connection.cursor()
            cursor.execute(text, params)
        return cursor

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        from django.db import transaction

        with _psycopg_errors(), transaction.atomic(using=self._backend.alias):
            writes = self._writes
            yield
            if self._writes > writes:
                # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: a canary breaking
                # one would only fail at the final commit, outside this block. Checking them
                # now fails it here (where the check skips that table), then the default is
                # restored, as Django's own check_constraints() does.
                self.execute("SET CONSTRAINTS ALL IMMEDIATE")
                self.execute("SET CONSTRAINTS ALL DEFERRED")


@contextlib.contextmanager
def _psycopg_errors() -> Iterator[None]:
    """Re-raise Django's database errors as the psycopg errors they wrap."""
    import psycopg
    from django.db import Error

    try:
        yield
    except Error as exc:
        cause = exc.__cause__
        if isinstance(cause, psycopg.Error):
            raise cause from None
        raise


class DjangoIsolationAsserter:
    """What ``assert_tenants_isolated`` gives in a Django test (see that fixture)."""

    def __init__(self, pool: DjangoTenantPool) -> None:
        self.pool = pool
        self.shared_schema = pool.backend.public_schema()

    def tenant_schemas(self) -> list[str]:
        """Schemas of every tenant of ``TENANT_MODEL`` (the public tenant excluded)."""
        model = self.pool.backend.tenant_model()
        names = model.objects.exclude(schema_name=self.shared_schema).values_list(
            "schema_name", flat=True
        )
        return [str(n) for n in names]

    def __call__(self, *acting: Any) -> _DjangoBlock:
        """Context manager: code inside may change ``acting`` tenants, and nothing else."""
        return _DjangoBlock(self, tuple(_schema_of(t) for t in acting))

    @contextlib.contextmanager
    def _connect(self, schema: str) -> Iterator[Any]:
        yield _DjangoTenantConnection(self.pool.backend, schema)

    def between(
        self,
        *tenants: Any,
        connect: Callable[[str], contextlib.AbstractContextManager[Any]] | None = None,
        canaries: bool = True,
    ) -> None:
        """Fail unless the given tenants (default: all) are isolated from each other.

        By default each tenant's queries go through Django's connection with that tenant set
        by the project's backend (``connection.set_schema``), inside the test's transaction.
        """
        from .asserts import TenantIsolationError, check_between

        backend = self.pool.backend
        previous = backend.current()
        schemas = [_schema_of(t) for t in tenants] or self.tenant_schemas()
        try:
            problems = check_between(
                _raw(backend), schemas, connect or self._connect, canaries=canaries
            )
        finally:
            if previous is not None:
                backend.activate(previous)
            else:
                backend.activate_public()
        if problems:
            raise TenantIsolationError(problems)


def _schema_of(tenant: Any) -> str:
    if isinstance(tenant, str):
        return tenant
    name = getattr(tenant, "schema_name", None) or getattr(tenant, "schema", None)
    return str(name)


@pytest.fixture
def assert_tenants_isolated(request: pytest.FixtureRequest) -> Any:
    """Prove tenant isolation; failures name the schema, the table and what leaked.

    In a test that uses Django's database the checks run on Django's connection, inside the
    test's transaction, over the ``TENANT_MODEL`` tenants (plus the template and spare
    schemas new tenants come from)::

        with assert_tenants_isolated(django_tenant):
            client.post("/orders/")            # may change django_tenant, nothing else

        assert_tenants_isolated.between(acme, globex)

    Otherwise it is the core plugin's (on ``tenancy``).
    """
    if _uses_django(request):
        pool: DjangoTenantPool = request.getfixturevalue("pgtenants_django_pool")
        request.getfixturevalue("_pgtenants_django_scope")
        return DjangoIsolationAsserter(pool)
    from .asserts import IsolationAsserter

    tenancy = request.getfixturevalue("tenancy")
    shared = _settings_value(request.config, "shared_schema", "public")
    return IsolationAsserter(tenancy, shared_schema=shared)
