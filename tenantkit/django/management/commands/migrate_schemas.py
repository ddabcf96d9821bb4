"""``manage.py migrate_schemas``: Django migrations of the public and tenant schemas on
tenantkit's engine.

Options are django-tenants': ``--shared``, ``--tenant``, ``-s/--schema``, ``--executor
standard|multiprocessing|threads`` (tenantkit's sequential, processes and threads executors,
``TENANT_MULTIPROCESSING_MAX_PROCESSES`` workers taking ``TENANT_MULTIPROCESSING_CHUNKS``
schemas at a time), ``--fake``, ``--plan``, ``--check``, ``--database``, ``--noinput``.
What is pending where is planned in one query; each schema migrates in one transaction under
its lock, with a journal, so a killed run resumes; a failing tenant never stops the others and
the command exits non-zero at the end naming it. See docs/django-migrations.md.

``app_label [migration_name]`` (a target, e.g. ``zero`` to unapply) runs Django's own
``migrate`` in each schema (the slow path), then brings tenantkit's books in line with the
``django_migrations`` table it left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from django.core.management.base import CommandError
from django.core.management.sql import emit_post_migrate_signal
from django.db.migrations.autodetector import MigrationAutodetector

from .... import migrations as engine
from ..._names import is_valid_schema_name
from ...conf import tenant_settings
from ...signals import schema_migrated, schema_pre_migration
from ...utils import get_tenant_migration_order, schema_context, schema_exists
from . import SyncCommon

__all__ = ["Command", "MigrateSchemasCommand"]

_EXECUTORS: dict[str | None, engine.ExecutorName] = {
    None: "sequential",
    "standard": "sequential",
    "multiprocessing": "processes",
    "threads": "threads",
}


class MigrateSchemasCommand(SyncCommon):
    """Migrate the public schema, then every tenant schema, on tenantkit's engine."""

    help = "Updates database schemas (public and tenants) on tenantkit's migration engine."
    requires_system_checks: list[str] = []
    #: Django's check that ``migrate`` and ``makemigrations`` agree reads this.
    autodetector = MigrationAutodetector

    def add_arguments(self, parser: Any) -> None:
        """django-tenants' options, plus ``--fail-fast``."""
        super().add_arguments(parser)
        parser.add_argument("app_label", nargs="?", help="App label of an application.")
        parser.add_argument(
            "migration_name", nargs="?", help='Target migration ("zero" unapplies all).'
        )
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")
        parser.add_argument("--no-initial-data", action="store_false", dest="load_initial_data")
        parser.add_argument("--database", default=None, help="The tenants' database alias.")
        parser.add_argument(
            "--fake", action="store_true", help="Record the migrations without running them."
        )
        parser.add_argument("--fake-initial", action="store_true")
        parser.add_argument(
            "--plan", action="store_true", help="Show what would be applied where, and stop."
        )
        parser.add_argument(
            "--check",
            action="store_true",
            dest="check_unapplied",
            help="Exit with a non-zero status when migrations are pending.",
        )
        parser.add_argument("--run-syncdb", action="store_true")
        parser.add_argument("--prune", action="store_true")
        parser.add_argument("--parallel", type=int, default=None)
        parser.add_argument(
            "--fail-fast",
            action="store_true",
            help="Stop starting schemas after the first failure (tenantkit).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Plan, adopt what Django already applied, migrate, report."""
        conf = tenant_settings()
        public = conf.public_schema_name
        schema = options.get("schema_name")
        sync_shared = bool(options.get("shared"))
        sync_tenant = bool(options.get("tenant"))
        if schema:
            if sync_shared:
                raise CommandError("schema should only be used with the --tenant switch.")
            if not is_valid_schema_name(schema):
                raise CommandError(f"invalid schema name {schema!r}")
            if schema == public:
                sync_shared = True
            else:
                sync_tenant = True
                if not schema_exists(schema, options.get("database")):
                    raise CommandError(f'Schema "{schema}" does not exist')
        elif not sync_shared and not sync_tenant:
            sync_shared = sync_tenant = True
        self.verbosity = int(options.get("verbosity", 1))
        if options.get("app_label") or any(
            options.get(o) for o in ("fake_initial", "run_syncdb", "prune")
        ):
            self._django_path(sync_shared, sync_tenant, schema, options)
            return
        if schema and schema != public and not _is_tenant(schema, options.get("database")):
            # A schema no tenant row names (a template, a scratch schema): the engine plans
            # over the tenant table, so Django's executor migrates it, as django-tenants does.
            self._django_path(False, True, schema, options)
            return
        self._engine_path(sync_shared, sync_tenant, schema, options)

    # -- the engine ---------------------------------------------------------------------

    def _engine_path(
        self, shared: bool, tenants: bool, schema: str | None, options: dict[str, Any]
    ) -> None:
        from ..._engine import adopt, engine_target, pending_pairs, tenant_table_exists

        conf = tenant_settings()
        database = options.get("database") or conf.db_alias
        if not tenant_table_exists(database):
            # A new project: the tenant table comes with the shared migrations.
            if not shared:
                raise CommandError(
                    "the tenant table does not exist yet: run migrate_schemas --shared first"
                )
            if tenants:
                self._engine_path(True, False, None, options)
                self._engine_path(False, True, schema, options)
                return
        fake = bool(options.get("fake"))
        has_table = tenant_table_exists(database)
        # Planning needs IDs and checksums only: no SQL is rendered for it (collect=empty).
        light = engine_target(database, fake=fake, has_tenant_table=has_table, collect=frozenset())
        only = [schema] if schema and schema != conf.public_schema_name else None
        try:
            the_plan = engine.plan(light, shared=shared, tenants=tenants, schemas=only)
            if adopt(light, the_plan.pending):
                the_plan = engine.plan(light, shared=shared, tenants=tenants, schemas=only)
        except Exception as exc:
            raise CommandError(f"planning failed: {exc}") from exc
        # The migrations pending somewhere are rendered once to SQL; anything else pending by
        # the time the engine re-plans (a tenant added meanwhile) goes through Django's apply.
        target = engine_target(
            database,
            fake=fake,
            has_tenant_table=has_table,
            collect=pending_pairs(the_plan.pending),
        )
        if options.get("plan"):
            self._show_plan(the_plan)
            return
        if options.get("check_unapplied"):
            if not the_plan.is_empty:
                self._show_plan(the_plan)
                sys.exit(1)
            return
        executor = _EXECUTORS[options.get("executor")]
        jobs = 1 if executor == "sequential" else max(1, conf.multiprocessing_max_processes)
        chunk = conf.multiprocessing_chunks if executor == "processes" else None
        if self.verbosity >= 1:
            pending = the_plan.pending
            self.stdout.write(
                self.style.NOTICE(
                    f"=== {len(pending)} of {len(the_plan.entries)} schemas to migrate "
                    f"({executor}, {jobs} worker{'s' if jobs > 1 else ''})"
                )
            )
        order = self._tenant_order(the_plan, database) if tenants and only is None else None
        if executor != "sequential":
            order = None  # as in django-tenants, the order is the standard executor's
        visits = _visits(the_plan, shared, tenants, executor, order, conf.public_schema_name)
        # django-tenants sends schema_pre_migration for each schema it visits (pending or not).
        # The engine migrates them in one run with no hook between schemas, so they are all
        # announced before it starts, in the order they are visited.
        for name in visits:
            schema_pre_migration.send(sender=MigrateSchemasCommand, schema_name=name)
        try:
            if order is not None and any(e.kind == "tenant" for e in the_plan.pending):
                report = self._migrate_in_order(
                    target, the_plan, shared, order, bool(options.get("fail_fast"))
                )
            else:
                report = engine.migrate(
                    target,
                    shared=shared,
                    tenants=tenants,
                    schemas=only,
                    jobs=jobs,
                    executor=executor,
                    chunk_size=chunk,
                    fail_fast=bool(options.get("fail_fast")),
                    progress=self._progress,
                )
        except engine.MigrationInterrupted as exc:
            raise CommandError(f"{exc}; run migrate_schemas again to resume") from exc
        except Exception as exc:
            raise CommandError(f"migration failed: {exc}") from exc
        self._after(report, options, database, visits)
        if report.failed or report.skipped:
            lines = [
                f"  {r.schema}: {r.migration or ''} {r.error or r.status}".rstrip()
                for r in (*report.failed, *report.skipped)
            ]
            raise CommandError(
                f"{len(report.failed)} schema(s) failed, {len(report.skipped)} skipped:\n"
                + "\n".join(lines)
            )
        if self.verbosity >= 1:
            counts = report.counts()
            self.stdout.write(
                self.style.SUCCESS(
                    f"=== done in {report.duration:.2f}s: {counts['applied']} migrated, "
                    f"{counts['current']} already current"
                )
            )

    def _tenant_order(self, the_plan: engine.Plan, database: str) -> list[str] | None:
        """The tenant schemas in ``TENANT_MIGRATION_ORDER`` (``order_by()`` fields), or None
        when the setting is not given (the engine's order then).

        Each pending tenant then runs as a run of its own, in that order; a tenant schema
        name tenantkit's engine cannot take one by one (django-tenants' wider names, e.g.
        with a hyphen) keeps the engine's order, with a warning.
        """
        from tenantkit import validate_schema_name
        from tenantkit.errors import InvalidSchemaName

        fields = get_tenant_migration_order()
        if fields is None:
            return None
        from ...utils import get_tenant_model

        public = tenant_settings().public_schema_name
        names = list(
            get_tenant_model()
            ._default_manager.using(database)
            .exclude(schema_name=public)
            .order_by(*fields)
            .values_list("schema_name", flat=True)
        )
        try:
            # The engine's own name rule decides which schemas it can be given by name.
            for e in the_plan.pending:
                if e.kind == "tenant":
                    validate_schema_name(e.schema, shared_schema=public)
        except InvalidSchemaName as exc:
            self.stderr.write(
                f"TENANT_MIGRATION_ORDER not applied ({exc}): tenants migrate in name order"
            )
            return None
        return names

    def _migrate_in_order(
        self,
        target: Any,
        the_plan: engine.Plan,
        shared: bool,
        order: Sequence[str],
        fail_fast: bool,
    ) -> engine.MigrationReport:
        """The public schema, then each pending tenant in ``order``, one engine run each
        (the engine orders the schemas of one run itself); one report for them all."""
        t0 = time.perf_counter()
        pending = {e.schema: e for e in the_plan.pending}
        total = len(pending)
        results: list[engine.SchemaResult] = []

        def run(**kwargs: Any) -> engine.MigrationReport:
            done = len(results)

            def progress(event: engine.ProgressEvent) -> None:
                # Number the schemas over the whole command, not per run.
                self._progress(engine.ProgressEvent(done + event.done, total, event.result))

            return engine.migrate(target, executor="sequential", progress=progress, **kwargs)

        stop: str | None = None
        if shared:
            report = run(shared=True, tenants=False)
            results.extend(report.results)
            if report.failed:
                stop = "shared migrations failed"
        rest = [n for n in order if n in pending and pending[n].kind == "tenant"]
        ordered = set(rest)
        for name in rest:
            if stop is not None:
                results.append(engine.SchemaResult(name, "tenant", "skipped", error=stop))
                continue
            report = run(shared=False, tenants=True, schemas=[name])
            results.extend(report.results)
            if report.failed and fail_fast:
                stop = "an earlier schema failed (--fail-fast)"
        # Templates, spares, tenants no row names any more: in the engine's order, last.
        others = [
            e.schema for e in the_plan.pending if e.kind != "shared" and e.schema not in ordered
        ]
        if others and stop is None:
            results.extend(run(shared=False, tenants=True, schemas=others).results)
        elif others:
            results.extend(
                engine.SchemaResult(n, pending[n].kind, "skipped", error=stop) for n in others
            )
        seen = {r.schema for r in results}
        results.extend(
            engine.SchemaResult(e.schema, e.kind, "current")
            for e in the_plan.entries
            if e.schema not in seen
        )
        return engine.MigrationReport(
            tuple(results), time.perf_counter() - t0, executor="sequential", jobs=1
        )

    def _progress(self, event: engine.ProgressEvent) -> None:
        r = event.result
        if self.verbosity >= 2 or (self.verbosity >= 1 and r.status != "current"):
            line = f"[{event.done}/{event.total}] {r.schema}: {r.status}"
            if r.applied:
                line += f" ({len(r.applied)} migration{'s' if len(r.applied) > 1 else ''})"
            if r.error:
                line += f": {r.migration or ''} {r.error}"
            style = self.style.ERROR if r.status == "failed" else self.style.MIGRATE_LABEL
            self.stdout.write(style(line))

    def _show_plan(self, the_plan: engine.Plan) -> None:
        if the_plan.is_empty:
            self.stdout.write("  No planned migration operations.")
            return
        for entry in the_plan.pending:
            self.stdout.write(self.style.MIGRATE_HEADING(f"{entry.schema} ({entry.kind}):"))
            for mid in entry.pending:
                self.stdout.write(f"  {mid}")

    def _after(
        self,
        report: engine.MigrationReport,
        options: dict[str, Any],
        db: str,
        visits: Sequence[str] = (),
    ) -> None:
        """Django's ``post_migrate`` where migrations ran (content types, permissions...),
        each with the schema current, then ``schema_migrated`` for each of ``visits`` that
        did not fail, in order.

        django-tenants runs Django's ``migrate`` per schema, so ``post_migrate`` comes once per
        schema with that schema current, and so it does here for every schema that got
        migrations (the public schema always). One exception, for speed over many tenants:
        when every receiver is one tenantkit knows does nothing in a tenant schema (Django's
        content types and permissions when the router keeps those models out of tenant
        schemas, tenantkit's own public-schema hook), it is sent once, with the first
        migrated tenant current, instead of once per tenant. Any other receiver (a project's
        own handler, ``contrib.auth`` in ``TENANT_APPS``) gets it per schema, as before.
        """
        public = tenant_settings().public_schema_name
        verbosity = max(0, self.verbosity - 1)
        interactive = options.get("interactive", False)
        per_tenant: bool | None = None
        for r in report.results:
            if r.kind not in ("shared", "tenant"):
                continue
            if r.status != "applied" and r.kind != "shared":
                continue
            if r.kind == "tenant":
                if per_tenant is None:
                    per_tenant = _post_migrate_needs_each_tenant(r.schema, db)
                    send = True
                else:
                    send = per_tenant
            else:
                send = True
            if send:
                with schema_context(r.schema if r.kind == "tenant" else public):
                    emit_post_migrate_signal(verbosity, interactive, db)
        outcome = {r.schema: r.status for r in report.results}
        for name in visits:
            # A schema the plan saw and the run did not fail or skip; django-tenants sends
            # nothing for a schema whose migrate raised.
            if outcome.get(name, "current") in ("applied", "current"):
                schema_migrated.send(sender=MigrateSchemasCommand, schema_name=name)

    # -- Django's own path (a target) ----------------------------------------------------

    def _django_path(
        self, shared: bool, tenants: bool, schema: str | None, options: dict[str, Any]
    ) -> None:
        from django.core.management import call_command
        from django.core.management.commands.migrate import Command as DjangoMigrate

        from ..._engine import resync
        from ...utils import get_tenant_model

        conf = tenant_settings()
        database = options.get("database") or conf.db_alias
        args = [a for a in (options.get("app_label"), options.get("migration_name")) if a]
        passed = {
            k: options[k]
            for k in ("fake", "fake_initial", "run_syncdb", "prune", "verbosity")
            if k in options
        }

        def names() -> Iterator[str]:
            # The public schema first: on a new database (Django's test database, with
            # run_syncdb) its migrate creates the tenant table the tenant list comes from.
            if shared:
                yield conf.public_schema_name
            if tenants:
                if schema and schema != conf.public_schema_name:
                    yield schema
                else:
                    rows = get_tenant_model()._default_manager.exclude(
                        schema_name=conf.public_schema_name
                    )
                    fields = get_tenant_migration_order()
                    if fields is not None:
                        rows = rows.order_by(*fields)
                    yield from list(rows.values_list("schema_name", flat=True))

        failed: list[str] = []
        for name in names():
            if self.verbosity >= 1:
                self.stdout.write(self.style.NOTICE(f"=== Running migrate for schema {name}"))
            schema_pre_migration.send(sender=MigrateSchemasCommand, schema_name=name)
            try:
                with schema_context(name):
                    call_command(
                        DjangoMigrate(), *args, database=database, interactive=False, **passed
                    )
                resync(database, name)
            except Exception as exc:
                failed.append(f"  {name}: {exc}")
            else:
                schema_migrated.send(sender=MigrateSchemasCommand, schema_name=name)
        if failed:
            raise CommandError(f"{len(failed)} schema(s) failed:\n" + "\n".join(failed))


def _visits(
    the_plan: engine.Plan,
    shared: bool,
    tenants: bool,
    executor: engine.ExecutorName,
    order: Sequence[str] | None,
    public: str,
) -> list[str]:
    """The schemas django-tenants' executor would migrate in this process, in its order.

    The public schema (when asked), then with the standard (and threads) executor every
    tenant schema of the plan, pending or not; a multiprocessing run migrates the tenants in
    other processes, whose signals the caller never sees, so it visits the public one only.
    """
    out = [public] if shared else []
    if not tenants or executor == "processes":
        return out
    planned = [e.schema for e in the_plan.entries if e.kind == "tenant"]
    if order is not None:
        known = set(planned)
        ranked = [n for n in order if n in known]
        planned = ranked + [n for n in planned if n not in set(ranked)]
    return out + planned


def _post_migrate_needs_each_tenant(schema: str, database: str) -> bool:
    """False only when every ``post_migrate`` receiver is known to do nothing in a tenant
    schema (see ``_after``); True whenever that cannot be shown (fail closed)."""
    from django.apps import apps
    from django.db import router
    from django.db.models.signals import post_migrate

    from ...apps import _install_triggers

    if tenant_settings().has_multi_type_tenants:
        return True  # the router's answer depends on each tenant's type
    try:
        from django.contrib.contenttypes.management import create_contenttypes
    except ImportError:  # pragma: no cover - contrib.contenttypes is part of Django
        return True
    known: dict[Any, tuple[tuple[str, str], ...]] = {
        create_contenttypes: (("contenttypes", "ContentType"),),
        _install_triggers: (),
    }
    try:
        from django.contrib.auth.management import create_permissions

        known[create_permissions] = (("contenttypes", "ContentType"), ("auth", "Permission"))
    except ImportError:  # pragma: no cover
        pass
    models: set[tuple[str, str]] = set()
    try:
        for config in apps.get_app_configs():
            # Django's own (private) receiver lookup; any change in its shape fails closed.
            sync, asynchronous = post_migrate._live_receivers(config)
            for receiver in (*sync, *asynchronous):
                if receiver not in known:
                    return True
                models.update(known[receiver])
        with schema_context(schema):
            for label in models:
                try:
                    model = apps.get_model(*label)
                except LookupError:
                    continue  # not installed: its handler returns at once
                if router.allow_migrate_model(database, model):
                    return True
    except Exception:
        return True
    return False


def _is_tenant(schema: str, database: str | None) -> bool:
    """True when a row of the tenant model names ``schema`` (False before the table exists)."""
    from ..._engine import tenant_table_exists
    from ...utils import get_tenant_model

    conf = tenant_settings()
    database = database or conf.db_alias
    if not tenant_table_exists(database):
        return False
    manager = get_tenant_model()._default_manager.using(database)
    return bool(manager.filter(schema_name=schema).exists())


Command = MigrateSchemasCommand
