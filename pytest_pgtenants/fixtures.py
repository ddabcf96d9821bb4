"""The plugin's fixtures. Each docstring is what ``pytest --fixtures`` shows.

Infrastructure fixtures (``pgtenants_*``) are session-scoped and start on first use; the
user-facing ones (``tenancy``, ``atenancy``, ``tenant``, ``tenant_factory``, ``tenants``,
``tenant_conn``, ``atenant_conn``, ``tenant_client``, ``atenant_client``, ``tenant_url``,
``assert_tenants_isolated``) are function-scoped and clean up after the test. The autouse
``_pgtenants_marker`` makes ``@pytest.mark.tenants`` take effect without a fixture. The async
ones (``atenancy``, ``atenant_conn``, ``atenant_client``) live in :mod:`._async`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest

from ._options import Settings
from ._session import PgTenantsSession, TestDatabase, TestScope

if TYPE_CHECKING:
    import psycopg

    from tenantkit.core.models import Tenant
    from tenantkit.core.tenancy import Tenancy

    from ._server import ServerHandle
    from .asserts import IsolationAsserter
    from .client import TenantClient

__all__ = [
    "assert_tenants_isolated",
    "pgtenants_database",
    "pgtenants_server",
    "pgtenants_session",
    "pgtenants_settings",
    "pgtenants_template",
    "tenancy",
    "tenant",
    "tenant_client",
    "tenant_conn",
    "tenant_factory",
    "tenant_url",
    "tenants",
]

SESSION_KEY = pytest.StashKey[PgTenantsSession]()
_SCOPE_KEY = pytest.StashKey[TestScope]()


# -- infrastructure ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pgtenants_session(request: pytest.FixtureRequest) -> Iterator[PgTenantsSession]:
    """The plugin's per-process state (server, databases, tenancies); torn down at the end.

    Everything else builds on it. After the session (passed, failed or interrupted) the test
    database is dropped and an embedded server stopped, unless ``--pgtenants-keep``.
    """
    session = request.config.stash[SESSION_KEY]
    try:
        yield session
    finally:
        session.finish()


@pytest.fixture(scope="session")
def pgtenants_settings(pgtenants_session: PgTenantsSession) -> Settings:
    """The resolved ``pgtenants_*`` options (CLI > env > ini > default) and their sources."""
    return pgtenants_session.settings


@pytest.fixture(scope="session")
def pgtenants_server(pgtenants_session: PgTenantsSession) -> ServerHandle:
    """The PostgreSQL server under test: ``.conninfo`` (maintenance db), ``.version_num``.

    An embedded temporary server by default (one per run, shared by pytest-xdist workers), or
    the server named by ``--pgtenants-dsn`` / ``PGTENANTS_DSN`` / ini ``pgtenants_dsn``.
    ``.conninfo_for(dbname)`` gives the conninfo of another database on it.
    """
    return pgtenants_session.server


@pytest.fixture(scope="session")
def pgtenants_template(pgtenants_session: PgTenantsSession, pgtenants_server: ServerHandle) -> str:
    """Name of the template database: registry installed, migrations applied, spares warm.

    Keyed by a hash of the migrations, tenantkit, this plugin and the server version, so it is
    rebuilt whenever any of them changes and reused (no migrating) otherwise, also by later
    runs against the same server. Built under an advisory lock and renamed into place when
    complete.
    """
    return pgtenants_session.template


@pytest.fixture(scope="session")
def pgtenants_database(
    pgtenants_session: PgTenantsSession, pgtenants_template: str
) -> TestDatabase:
    """This process's test database (``.name``, ``.conninfo``, ``.template``).

    Cloned from ``pgtenants_template`` (a file copy), one per pytest-xdist worker, dropped at
    the end of the session unless ``--pgtenants-keep``.
    """
    return pgtenants_session.database


# -- tenancy and tenants -------------------------------------------------------------------


def _strict(request: pytest.FixtureRequest, settings: Settings) -> bool:
    return settings.strict or request.node.get_closest_marker("pgtenants_strict") is not None


def _rollback(request: pytest.FixtureRequest, settings: Settings) -> bool:
    return settings.rollback or request.node.get_closest_marker("pgtenants_rollback") is not None


@pytest.fixture
def tenancy(
    request: pytest.FixtureRequest,
    pgtenants_session: PgTenantsSession,
    pgtenants_database: TestDatabase,
) -> Iterator[Tenancy]:
    """A ``tenantkit.Tenancy`` bound to the test database (registry installed, migrated).

    Shared by the tests of this process; tenants created through the plugin's fixtures and
    factories are dropped after each test. In strict mode (``--pgtenants-strict`` or
    ``@pytest.mark.pgtenants_strict``) it is a ``Tenancy(strict=True)``: a statement on one of
    its connections with no tenant bound raises ``NoTenantSelected`` and fails the test.
    """
    from . import _runtime

    instance = pgtenants_session.tenancy(strict=_strict(request, pgtenants_session.settings))
    scope = TestScope(pgtenants_session, instance, nodeid=request.node.nodeid)
    request.node.stash[_SCOPE_KEY] = scope
    token = _runtime.activate(scope)
    try:
        yield instance
    finally:
        _runtime.deactivate(token)
        scope.cleanup()


def _scope(request: pytest.FixtureRequest) -> TestScope:
    scope: TestScope = request.node.stash[_SCOPE_KEY]
    return scope


class TenantFactory:
    """``tenant_factory(name=None, domains=None, *, schema=None, **metadata) -> Tenant``.

    ``name`` is the display name; the schema is ``schema`` or derived from ``name`` (or a
    random ``t_...`` name); ``domains`` defaults to ``[<schema>.<base domain>]`` (pass ``()``
    for none). Remaining keyword arguments become the tenant's metadata.
    """

    def __init__(self, scope: TestScope) -> None:
        self._scope = scope

    def __call__(
        self,
        name: str | None = None,
        domains: Iterable[str] | None = None,
        *,
        schema: str | None = None,
        **metadata: Any,
    ) -> Tenant:
        session = self._scope.session
        if schema is None and name is not None:
            from tenantkit.core.names import schema_name_from

            schema = schema_name_from(name, shared_schema=session.settings.shared_schema)
        tenant = session.create_tenant(
            self._scope.tenancy, schema=schema, name=name, domains=domains, metadata=metadata
        )
        self._scope.track(tenant)
        return tenant


@pytest.fixture
def tenant_factory(request: pytest.FixtureRequest, tenancy: Tenancy) -> TenantFactory:
    """Create tenants on demand: ``tenant_factory(name=None, domains=None, **metadata)``.

    ``tenant_factory("Acme Corp")`` makes schema ``acme_corp`` with host
    ``acme-corp.example.test``; ``tenant_factory()`` a random one. Each is fully migrated
    (claimed from the warm spare pool) and dropped after the test.
    """
    return TenantFactory(_scope(request))


_MARKER_ERROR = "@pytest.mark.tenants"


@pytest.fixture
def tenants(request: pytest.FixtureRequest, tenant_factory: TenantFactory) -> dict[str, Tenant]:
    """The tenants named by ``@pytest.mark.tenants("acme", "globex")``, by schema name.

    The marker alone creates them (fully migrated, host ``<name>.example.test``) before the
    test's other fixtures; this fixture hands them out. Dropped after the test, so names can
    repeat across tests.
    """
    marker = request.node.get_closest_marker("tenants")
    if marker is None:
        pytest.fail(
            'the "tenants" fixture needs @pytest.mark.tenants("acme", "globex", ...) on the test',
            pytrace=False,
        )
    return {name: tenant_factory(schema=name, name=name) for name in marker.args}


@pytest.fixture(autouse=True)
def _pgtenants_marker(request: pytest.FixtureRequest) -> None:
    """(internal) ``@pytest.mark.tenants(...)`` creates its tenants without any fixture."""
    # Like pytest-django's django_db marker: an autouse fixture, so the tenants exist before
    # the test's own fixtures run (a fixture may use tenancy.connection("acme")).
    if request.node.get_closest_marker("tenants") is not None:
        request.getfixturevalue("tenants")


@pytest.fixture
def tenant(request: pytest.FixtureRequest, tenant_factory: TenantFactory) -> Tenant:
    """A fresh, fully migrated tenant with one domain, ``<schema>.example.test``.

    Its schema is ``t`` and 16 hex digits (unique under pytest-xdist), so the host is the
    schema name under the base domain (``--pgtenants-domain``).

    Claimed from a pool of warm spare schemas by a rename (a few milliseconds), dropped in the
    background after the test. Under ``@pytest.mark.tenants(...)`` it is the first named one.
    """
    if request.node.get_closest_marker("tenants") is not None:
        named: dict[str, Tenant] = request.getfixturevalue("tenants")
        return next(iter(named.values()))
    return tenant_factory()


@pytest.fixture
def tenant_conn(
    request: pytest.FixtureRequest, tenancy: Tenancy, tenant: Tenant
) -> Iterator[psycopg.Connection[Any]]:
    """A connection bound to ``tenant`` (its schema first on the ``search_path``).

    Committed at the end of the test; in rollback mode (``--pgtenants-rollback`` or
    ``@pytest.mark.pgtenants_rollback``) everything it did is rolled back instead.
    """
    rollback = _rollback(request, tenancy_settings(request))
    with tenancy.connection(tenant) as conn:
        yield conn
        if rollback:
            conn.rollback()


def tenancy_settings(request: pytest.FixtureRequest) -> Settings:
    """The resolved settings (for fixtures that do not take ``pgtenants_settings``)."""
    return request.config.stash[SESSION_KEY].settings


# -- hosts and clients ---------------------------------------------------------------------


@pytest.fixture
def tenant_url(pgtenants_session: PgTenantsSession, tenancy: Tenancy) -> Callable[..., str]:
    """``tenant_url(tenant, path="/", scheme="http")``: an absolute URL on the tenant's host."""

    def build(tenant: Tenant | str, path: str = "/", scheme: str = "http") -> str:
        host = pgtenants_session.primary_host(tenant)
        return f"{scheme}://{host}{path if path.startswith('/') else '/' + path}"

    return build


def _wrap(app: Any, tenancy: Tenancy, asgi: bool) -> Any:
    if asgi:
        from tenantkit.web.asgi import ASGITenantMiddleware

        return ASGITenantMiddleware(app, tenancy)
    from tenantkit.web.wsgi import WSGITenantMiddleware

    return WSGITenantMiddleware(app, tenancy)


class _Served:
    """One app given to a client fixture: what serves it, and what the fixture built for it.

    Clients of the same app share it (one event loop, one lifespan, one routing middleware),
    whatever tenant or host they are for.
    """

    def __init__(self, app: Any, target: Any, transport: Any, middleware: Any) -> None:
        self.app = app  # held, so that id(app) stays unique while the fixture lives
        self.target = target
        self.transport = transport
        self.middleware = middleware


def _serve(
    served: dict[tuple[int, bool], _Served],
    app: Any,
    tenancy: Tenancy,
    *,
    route: bool,
    lifespan: bool,
    asynchronous: bool,
) -> _Served:
    from .client import AsyncASGITransport, SyncASGITransport, is_asgi_app

    key = (id(app), route)
    found = served.get(key)
    if found is not None:
        return found
    asgi = asynchronous or is_asgi_app(app)
    middleware = _wrap(app, tenancy, asgi) if route else None
    target = middleware if middleware is not None else app
    transport: Any
    if asynchronous:
        if not is_asgi_app(target):
            raise TypeError(
                "atenant_client needs an ASGI app (async def app(scope, receive, send)); "
                "use tenant_client for WSGI apps"
            )
        transport = AsyncASGITransport(target, lifespan=lifespan)
    elif asgi:
        transport = SyncASGITransport(target, lifespan=lifespan)
    else:
        import httpx

        transport = httpx.WSGITransport(app=target)
    found = served[key] = _Served(app, target, transport, middleware)
    if middleware is not None:
        # The fixture given client.app (the middleware it built) again: the same runner.
        served.setdefault((id(middleware), False), found)
    return found


def _close_middleware(middleware: Any) -> None:
    """Close a routing middleware the fixture built (its resolver's LISTEN thread...)."""
    close = getattr(middleware, "close", None)
    if not callable(close):
        # Middleware without close() (tenantkit before issue 16): close the resolver.
        close = getattr(getattr(middleware, "resolver", None), "close", None)
    if callable(close):
        close()


async def _aclose_middleware(middleware: Any) -> None:
    """:func:`_close_middleware`, through ``aclose()`` when the middleware has one (ASGI)."""
    aclose = getattr(middleware, "aclose", None)
    if callable(aclose):
        await aclose()
    else:
        _close_middleware(middleware)


class _Clients:
    """The clients one client fixture built, and the app runners they share.

    What ``tenant_client`` and ``atenant_client`` have in common: :meth:`build` is what the
    test calls; after the test the fixture calls :meth:`close` or awaits :meth:`aclose`.
    """

    def __init__(
        self,
        request: pytest.FixtureRequest,
        session: PgTenantsSession,
        tenancy: Tenancy,
        *,
        asynchronous: bool,
    ) -> None:
        from ._extras import require

        require("httpx")
        from .client import AsyncTenantClient, TenantClient

        self._request = request
        self._session = session
        self._tenancy = tenancy
        self._client_class = AsyncTenantClient if asynchronous else TenantClient
        self._asynchronous = asynchronous
        self._clients: list[Any] = []
        self._served: dict[tuple[int, bool], _Served] = {}

    def build(
        self,
        app: Any,
        tenant: Tenant | str | None = None,
        *,
        host: str | None = None,
        route: bool = False,
        lifespan: bool = True,
        **kwargs: Any,
    ) -> Any:
        """A client for ``app`` as ``tenant`` (default: the ``tenant`` fixture's) or ``host``:
        a ``TenantClient``, or an ``AsyncTenantClient`` for ``atenant_client``."""
        if host is None:
            tenant = tenant if tenant is not None else self._request.getfixturevalue("tenant")
            host = self._session.primary_host(tenant)
        runner = _serve(
            self._served,
            app,
            self._tenancy,
            route=route,
            lifespan=lifespan,
            asynchronous=self._asynchronous,
        )
        client = self._client_class(
            runner.target,
            host,
            tenant=tenant,
            host_of=self._session.primary_host,
            transport=runner.transport,
            **kwargs,
        )
        self._clients.append(client)
        return client

    def _closers(self) -> Iterator[Callable[[], Any]]:
        """What to close after the test, in order (each result awaited by :meth:`aclose`).

        The clients, then each app runner (an ASGI app's lifespan shutdown) and the
        middleware built for it.
        """
        asynchronous = self._asynchronous
        for client in self._clients:
            yield client.aclose if asynchronous else client.close
        for runner in self._served.values():
            yield runner.transport.aclose if asynchronous else runner.transport.close
            if runner.middleware is not None:
                close = _aclose_middleware if asynchronous else _close_middleware
                yield partial(close, runner.middleware)

    def close(self) -> None:
        """Close every client, app runner and middleware; then raise the first failure."""
        errors = _FirstError()
        for close in self._closers():
            with errors:
                close()
        errors.raise_first()

    async def aclose(self) -> None:
        """:meth:`close` for ``atenant_client``: each close is awaited on the test's loop."""
        errors = _FirstError()
        for close in self._closers():
            with errors:
                await close()
        errors.raise_first()


class _FirstError:
    """Collects the exceptions of the ``with`` blocks it guards; :meth:`raise_first` after.

    Teardown closes everything even when one close fails, then reports the first failure.
    """

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if isinstance(exc, Exception):
            self.errors.append(exc)
            return True
        return False

    def raise_first(self) -> None:
        """Raise the first exception collected, if any."""
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def tenant_client(
    request: pytest.FixtureRequest, pgtenants_session: PgTenantsSession, tenancy: Tenancy
) -> Iterator[Callable[..., TenantClient]]:
    """``tenant_client(app, tenant=None, *, host=None, route=False, lifespan=True)``.

    An httpx client for a WSGI (Flask...) or ASGI (Starlette, FastAPI...) app. Requests carry
    the tenant's primary host (default tenant: the ``tenant`` fixture's), or ``host=`` for
    any host. ``route=True`` wraps a bare app in tenantkit's routing middleware. ASGI apps
    run on one private event loop per app, their lifespan started before the first request
    and shut down after the test (``lifespan=False`` skips it). The client has
    ``.for_host(host)``, ``.for_tenant(t)`` and ``.url(path)``; extra keyword arguments go to
    ``httpx.Client``. Everything is closed after the test.
    """
    clients = _Clients(request, pgtenants_session, tenancy, asynchronous=False)
    try:
        yield clients.build
    finally:
        clients.close()


# -- assertions ----------------------------------------------------------------------------


@pytest.fixture
def assert_tenants_isolated(
    pgtenants_session: PgTenantsSession, tenancy: Tenancy
) -> IsolationAsserter:
    """Prove tenant isolation; failures name the schema, the table and what leaked.

    As a context manager around code acting as some tenants::

        with assert_tenants_isolated(acme):
            client.post("/orders", json={...})

    fails on any lasting change outside the acting tenants: rows, sequence positions,
    structure, owners and privileges, function security and settings, trigger and rule
    state, row level security in other tenants' schemas; rows or DDL in the template and the
    spare schemas; schemas or relations appearing elsewhere (the shared schema included).

    As a check between tenants::

        assert_tenants_isolated.between(acme, globex)

    fails if a canary row written through one tenant's connection is visible through
    another's (``connect=`` takes your app's own ``tenant -> connection`` factory), or if a
    foreign key, view, rule, policy, function body, trigger or column default in one tenant's
    schema references another tenant's schema.
    """
    from .asserts import IsolationAsserter

    return IsolationAsserter(tenancy, shared_schema=pgtenants_session.settings.shared_schema)


def validate_markers(item: pytest.Item, settings: Settings) -> None:
    """Fail the test early, with a clear message, when one of our markers is misused."""
    from tenantkit.core.names import validate_schema_name
    from tenantkit.errors import InvalidSchemaName

    for marker in item.iter_markers("tenants"):
        problems: list[str] = []
        if not marker.args:
            problems.append("give at least one tenant schema name")
        if marker.kwargs:
            problems.append(f"takes no keyword arguments (got {sorted(marker.kwargs)})")
        seen: set[object] = set()
        for arg in marker.args:
            try:
                validate_schema_name(arg, shared_schema=settings.shared_schema)
            except InvalidSchemaName as exc:
                problems.append(str(exc))
            if arg in seen:
                problems.append(f"{arg!r} is given twice")
            seen.add(arg)
        if problems:
            pytest.fail(
                f"{_MARKER_ERROR}(...) on {item.nodeid}: " + "; ".join(problems), pytrace=False
            )
    for name in ("pgtenants_strict", "pgtenants_rollback"):
        for marker in item.iter_markers(name):
            if marker.args or marker.kwargs:
                pytest.fail(
                    f"@pytest.mark.{name} takes no arguments (on {item.nodeid})", pytrace=False
                )
