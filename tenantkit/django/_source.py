"""Routing over the project's own tenant and domain tables, without a query per request.

:class:`DjangoDomainSource` is a tenantkit ``DomainSource`` over ``TENANT_MODEL`` /
``TENANT_DOMAIN_MODEL``: a load is two queries (all tenants, all domains) and keeps the tenant
model instances, so the middleware answers every request from memory with a copy of the
instance. Changes arrive by LISTEN/NOTIFY: :func:`install_triggers` (run after every
``migrate`` of the public schema, see ``apps.py``) adds statement triggers on both tables that
``NOTIFY tenantkit_django``; tenantkit's listener thread then invalidates the resolver, and
the next request reloads. Where notifications cannot arrive (a transaction pooler in front,
and no ``TENANTKIT_LISTEN_CONNINFO`` to reach PostgreSQL directly) the resolver polls: the
table is reloaded when older than one second.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db.models.base import ModelState
from psycopg import sql

from tenantkit import InvalidHostname, TenantResolver, normalize_host
from tenantkit.web.sources import RegistryListener, Routes

from . import _state
from .conf import database_conninfo
from .utils import (
    _execute,
    get_public_schema_name,
    get_tenant_database_alias,
    get_tenant_domain_model,
    get_tenant_model,
    schema_context,
)

__all__ = [
    "CHANNEL",
    "DjangoDomainSource",
    "get_resolver",
    "install_triggers",
    "registry_changed",
    "reset_resolver",
]

logger = logging.getLogger("tenantkit.django")

#: The channel the triggers on the tenant and domain tables NOTIFY.
CHANNEL = "tenantkit_django"
_FUNCTION = "tenantkit_django_notify"


def listen_conninfo(database: str | None = None) -> str:
    """Where to LISTEN: ``TENANTKIT_LISTEN_CONNINFO`` or the database's own parameters."""
    return database_conninfo(
        database or get_tenant_database_alias(), override="TENANTKIT_LISTEN_CONNINFO"
    )


def _copy(instance: Any) -> Any:
    """A copy of a model instance for one request (its own state; no query).

    Attributes are copied shallowly (what ``copy.copy`` does, without its pickling
    protocol); the state is new, so that caches filled during one request stay with it.
    """
    cls = type(instance)
    new = object.__new__(cls)
    new.__dict__.update(instance.__dict__)
    state = ModelState()
    state.db = instance._state.db
    state.adding = False
    new._state = state
    return new


class DjangoDomainSource:
    """A routing source reading the project's tenant and domain models (public schema).

    ``load_routes()`` maps every domain row's host to its tenant's schema name and keeps the
    tenant instances, which :meth:`tenant` hands out (copies). ``loads`` counts loads.
    """

    def __init__(self, *, database: str | None = None, require_listen: bool = False) -> None:
        self.database = database or get_tenant_database_alias()
        self.require_listen = require_listen
        self.loads = 0
        self._instances: dict[str, Any] = {}

    def load_routes(self) -> Routes:
        """Every domain -> its tenant's schema, and every tenant (two queries)."""
        self.loads += 1
        tenant_model = get_tenant_model()
        domain_model = get_tenant_domain_model()
        with schema_context(get_public_schema_name()):
            tenants = list(tenant_model._default_manager.using(self.database).all())
            domains = list(
                domain_model._default_manager.using(self.database).values_list(
                    "domain", "tenant_id"
                )
            )
        by_pk = {t.pk: t for t in tenants}
        hosts: dict[str, str] = {}
        for host, tenant_id in domains:
            tenant = by_pk.get(tenant_id)
            if tenant is None:
                continue
            try:
                hosts[normalize_host(host)] = tenant.schema_name
            except InvalidHostname:
                # A row no Host header can match (e.g. "localhost:8000" in a test fixture):
                # it routes nothing, and must not stop the others from routing.
                logger.warning("domain %r is not a valid hostname: not routed", host)
        self._instances = {t.schema_name: t for t in tenants}
        return Routes(hosts=hosts, tenants=list(self._instances))

    def load(self) -> dict[str, str]:
        """Every host -> schema name."""
        return dict(self.load_routes().hosts)  # type: ignore[arg-type]

    def tenant(self, schema_name: str) -> Any:
        """A copy of the loaded tenant instance of ``schema_name``, or None."""
        instance = self._instances.get(schema_name)
        return None if instance is None else _copy(instance)

    def subscribe(self, callback: Any, *, on_changes: Any = None) -> RegistryListener:
        """Listen for the triggers' notifications; ``callback()`` invalidates the table."""
        return RegistryListener(
            listen_conninfo(self.database),
            callback,
            channel=CHANNEL,
            require_listen=self.require_listen,
        )


_lock = threading.Lock()
_resolver: TenantResolver | None = None


def get_resolver() -> TenantResolver:
    """The process's resolver over the project's domain table (created on first use)."""
    global _resolver
    resolver = _resolver
    if resolver is None:
        with _lock:
            resolver = _resolver
            if resolver is None:
                resolver = _resolver = TenantResolver(
                    DjangoDomainSource(),
                    strip_www=True,
                    ttl=300.0,
                    fallback_ttl=1.0,
                    negative_ttl=1.0,
                )
    return resolver


def registry_changed(sender: Any, using: str | None = None, **kwargs: Any) -> None:
    """``post_save`` / ``post_delete`` handler: a tenant or domain row of this process changed.

    Other processes learn it from the triggers' NOTIFY; this one also invalidates its table
    when the change commits, so that its next request reads its own write without waiting
    for the notification to come back.
    """
    try:
        watched = (get_tenant_model(), get_tenant_domain_model())
    except Exception:  # models not configured
        return
    if not issubclass(sender, watched):
        return
    from django.db import transaction

    transaction.on_commit(_invalidate, using=using)


def _invalidate() -> None:
    resolver = _resolver
    if resolver is not None:
        resolver.invalidate()


def reset_resolver() -> None:
    """Close and forget the resolver (settings changed, tests)."""
    global _resolver
    with _lock:
        if _resolver is not None:
            _resolver.close()
        _resolver = None


def install_triggers(database: str | None = None) -> bool:
    """Install the NOTIFY triggers on the tenant and domain tables (idempotent).

    Returns False when the tables do not exist (yet).
    """
    database = database or get_tenant_database_alias()
    public = get_public_schema_name()
    tables = [get_tenant_model()._meta.db_table, get_tenant_domain_model()._meta.db_table]
    with schema_context(public):
        for table in tables:
            rows = _execute(
                database,
                sql.SQL("SELECT pg_catalog.to_regclass(%s) IS NOT NULL"),
                [sql.Identifier(public, table).as_string(None)],
            )
            if not (rows and rows[0][0]):
                return False
        function = sql.Identifier(public, _FUNCTION)
        statements: list[sql.Composable] = [
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN PERFORM pg_catalog.pg_notify({}, TG_TABLE_NAME); RETURN NULL; END$$"
            ).format(function, sql.Literal(CHANNEL))
        ]
        for table in tables:
            target = sql.Identifier(public, table)
            statements.append(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(_FUNCTION), target)
            )
            statements.append(
                sql.SQL(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION {}()"
                ).format(sql.Identifier(_FUNCTION), target, function)
            )
        from django.db import transaction

        with transaction.atomic(using=database):
            for statement in statements:
                _execute(database, statement)
    return True


def current_schema() -> str:
    """The schema current in this thread/task."""
    return str(_state.current()[0].schema_name)
