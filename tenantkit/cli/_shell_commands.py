"""The backslash commands of ``tenantkit shell``: one function each, and their table.

Inspection runs on :meth:`ShellSession.inspection`, a connection bound to the current tenant,
so types and definitions print as the tenant sees them. Catalog queries live in
:mod:`tenantkit.introspection.describe` and :mod:`tenantkit.introspection.catalog`; this
module only presents them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from ..core.storage import TABLE_PREFIX
from ..errors import TenantkitError, TenantNotFound
from ..introspection import describe as tk_inspect
from ..introspection.catalog import diff_objects, read_catalog
from ..introspection.catalog import drift as catalog_drift
from ._migration_state import unknown_migrations
from ._shell_render import format_bytes, format_duration, table

if TYPE_CHECKING:
    from ._shell_session import ShellSession

__all__ = ["COMMANDS", "Command", "CommandError", "find_command"]


class CommandError(TenantkitError):
    """A backslash command could not run; the message is shown as one line."""


@dataclass(frozen=True)
class Command:
    """A backslash command: its names, argument synopsis, one-line help, the function that
    runs it, and what its argument completes to (``"tenant"``, ``"table"`` or ``""``)."""

    names: tuple[str, ...]
    args: str
    help: str
    run: Callable[[ShellSession, str], None] | None  # None: \\q, handled by the session
    completes: str = ""


_WHO_NOTE = """\
\\who cannot see another session's search_path (PostgreSQL does not show it): a session is
listed under the tenants whose tables it holds locks on, that is, while it works in a
transaction there. tenantkit leaves no tenant path on idle pooled connections, so idle
sessions belong to no tenant."""
_HELP_TAIL = f"""\
Anything else is SQL, run as the current tenant: its schema first on the search_path, then the
shared schema. Statements end with ';' and may span lines. Each runs in its own transaction;
BEGIN ... COMMIT/ROLLBACK groups several. Ctrl-C cancels a running statement or clears the
line being typed.
{_WHO_NOTE}"""


def cmd_use(sh: ShellSession, arg: str) -> None:
    if not arg:
        raise CommandError(
            "usage: \\use NAME (a tenant's schema name or host); \\public "
            "goes back to the shared schema"
        )
    sh.use(arg)
    _say_where(sh)


def cmd_public(sh: ShellSession, arg: str) -> None:
    sh.use(None)
    _say_where(sh)


def _say_where(sh: ShellSession) -> None:
    where = f"tenant {sh.tenant}" if sh.tenant else "the shared schema (no tenant)"
    sh.say(Text(f"now working in {where}; search_path: {sh.search_path()}"))


def cmd_conninfo(sh: ShellSession, arg: str) -> None:
    path = sh.search_path()
    info = sh.connection().info
    where = f"tenant {sh.tenant}" if sh.tenant else "the shared schema (no tenant)"
    sh.say(
        Text(
            f'database "{info.dbname}" on {info.host or "local socket"} port {info.port} '
            f'as user "{info.user}"; {where}; search_path: {path}'
        )
    )


def cmd_timing(sh: ShellSession, arg: str) -> None:
    if arg.lower() not in ("", "on", "off"):
        raise CommandError("usage: \\timing [on|off]")
    sh.timing = (not sh.timing) if not arg else arg.lower() == "on"
    sh.say(f"Timing is {'on' if sh.timing else 'off'}.")


def cmd_help(sh: ShellSession, arg: str) -> None:
    if arg:
        key = arg if arg.startswith("\\") else "\\" + arg
        command = _BY_NAME.get(key)
        if command is None:
            raise CommandError(f"no command {key}; \\? lists them")
        sh.say(Text(f"{' '.join(command.names)} {command.args}".rstrip()))
        sh.say(Text(f"    {command.help}"))
        if command.names[0] == "\\who":
            sh.say(Text(_WHO_NOTE))
        return
    rows = [(", ".join(c.names), c.args, c.help) for c in COMMANDS]
    sh.say(table(("command", "argument", "what it does"), rows))
    sh.say(Text(_HELP_TAIL))


def cmd_tenants(sh: ShellSession, arg: str) -> None:
    domains: dict[int, list[str]] = {}
    for d in sh.tenancy.domains():
        domains.setdefault(d.tenant_id, []).append(d.host + ("*" if d.is_primary else ""))
    tenants = sh.tenancy.tenants()
    rows = [
        (
            t.schema,
            t.name,
            t.state.value,
            ", ".join(domains.get(t.id, [])),
            t.created_at.strftime("%Y-%m-%d %H:%M"),
        )
        for t in tenants
    ]
    sh.say(table(("schema", "name", "state", "domains (* primary)", "created"), rows))
    current = f"; current: {sh.tenant}" if sh.tenant else ""
    sh.say(f"({len(tenants)} tenant{'' if len(tenants) == 1 else 's'}{current})")


#: tenantkit's own tables (registry, migration history and journal, spares) start with this;
#: ``\\dt`` leaves them out unless asked (``\\dtS``, or a pattern naming them).
INTERNAL_PREFIX = TABLE_PREFIX


def cmd_dt(sh: ShellSession, arg: str) -> None:
    _list_tables(sh, arg, internal=False)


def cmd_dt_all(sh: ShellSession, arg: str) -> None:
    _list_tables(sh, arg, internal=True)


def _list_tables(sh: ShellSession, arg: str, *, internal: bool) -> None:
    schemas = sh.path_schemas()
    with sh.inspection() as conn:
        tables = tk_inspect.list_tables(conn, schemas)
    hidden = 0
    if arg:
        # A pattern is an explicit request: it may name tenantkit's own tables.
        tables = tuple(t for t in tables if fnmatch.fnmatchcase(t.name, arg))
    elif not internal:
        shown = tuple(t for t in tables if not t.name.startswith(INTERNAL_PREFIX))
        hidden, tables = len(tables) - len(shown), shown
    seen: set[str] = set()
    rows = []
    for t in tables:
        kind = t.kind
        if t.name in seen:
            kind += " (shadowed)"
        seen.add(t.name)
        rows.append(
            (
                t.schema,
                t.name,
                kind,
                "" if t.rows_estimate is None else t.rows_estimate,
                format_bytes(t.size_bytes) if t.kind != "view" else "",
            )
        )
    own = f"; {hidden} of tenantkit's own not shown (\\dtS shows them)" if hidden else ""
    if not rows:
        what = f" matching {arg}" if arg else ""
        sh.say(f"no tables{what} in {', '.join(schemas)}{own}")
        return
    sh.say(table(("schema", "name", "kind", "rows (est.)", "size"), rows, right=("rows (est.)",)))
    sh.say(
        f"({len(rows)} relation{'' if len(rows) == 1 else 's'}{own}; sizes include indexes "
        "and TOAST)"
    )


def cmd_d(sh: ShellSession, arg: str) -> None:
    if not arg:
        cmd_dt(sh, "")
        return
    schema, name = _split_name(arg)
    candidates = [schema] if schema else sh.path_schemas()
    with sh.inspection() as conn:
        for candidate in candidates:
            found = tk_inspect.describe_table(conn, candidate, name)
            if found is not None:
                _print_description(sh, found)
                return
    raise CommandError(f"no table {arg!r} in {', '.join(candidates)}; \\dt lists the tables")


def _print_description(sh: ShellSession, d: tk_inspect.TableDescription) -> None:
    title = f"{d.kind.capitalize()} {d.schema}.{d.name}"
    has_collation = any(c.collation for c in d.columns)
    columns = [
        "column",
        "type",
        *(["collation"] if has_collation else []),
        "nullable",
        "default",
    ]
    rows = []
    for c in d.columns:
        if c.generated:
            default = f"generated always as ({c.default}) stored"
        elif c.identity:
            default = f"generated {c.identity} as identity"
        else:
            default = c.default or ""
        collation = [c.collation or ""] if has_collation else []
        rows.append((c.name, c.type, *collation, "" if c.nullable else "not null", default))
    sh.say(Text(title))
    sh.say(table(columns, rows))
    lines: list[tuple[str, list[str]]] = []
    marks = {
        "primary key": "PRIMARY KEY, ",
        "unique": "UNIQUE CONSTRAINT, ",
        "exclusion": "EXCLUSION CONSTRAINT, ",
    }
    lines.append(
        (
            "Indexes",
            [
                f'"{i.name}" '
                + (marks.get(i.constraint or "") or ("UNIQUE, " if i.is_unique else ""))
                + i.summary
                + ("" if i.is_valid else " INVALID")
                for i in d.indexes
            ],
        )
    )
    lines.append(
        (
            "Check constraints",
            [f'"{c.name}" {c.definition}' for c in d.constraints if c.kind == "check"],
        )
    )
    lines.append(
        ("Foreign-key constraints", [f'"{f.name}" {f.definition}' for f in d.foreign_keys])
    )
    lines.append(
        (
            "Referenced by",
            [
                f'TABLE "{_qualified(f.table, sh.path_schemas())}" CONSTRAINT "{f.name}" '
                f"{f.definition}"
                for f in d.referenced_by
            ],
        )
    )
    lines.append(
        ("Triggers", [t.definition + ("" if t.enabled else " (disabled)") for t in d.triggers])
    )
    for heading, items in lines:
        if items:
            sh.say(Text(f"{heading}:"))
            for item in items:
                sh.say(Text(f"    {item}"))


def cmd_sizes(sh: ShellSession, arg: str) -> None:
    shared = sh.tenancy.shared_schema
    schemas = [*sh.tenant_schemas(), shared]
    with sh.inspection() as conn:
        summaries = tk_inspect.schema_summaries(conn, schemas)
    rows = [
        (
            f"{x.schema} (shared)" if x.schema == shared else x.schema,
            x.tables,
            x.rows_estimate,
            format_bytes(x.size_bytes),
        )
        for x in summaries
    ]
    right = ("tables", "rows (est.)", "size")
    sh.say(table(("schema", "tables", "rows (est.)", "size"), rows, right=right))
    total = sum(x.size_bytes for x in summaries)
    count = sum(1 for x in summaries if x.schema != shared)
    sh.say(
        f"({count} tenant{'' if count == 1 else 's'}; {format_bytes(total)} in all, "
        "shared schema included; rows are planner estimates)"
    )


def _resolve_schema(sh: ShellSession, name: str) -> str:
    """A tenant's schema from its schema name or host, or any existing schema's name."""
    try:
        return sh.lookup(name).schema
    except TenantNotFound:
        with sh.inspection() as conn:
            row = conn.execute(
                "select 1 from pg_catalog.pg_namespace where nspname = %s", (name,)
            ).fetchone()
        if row is None:
            raise
        return name


def cmd_diff(sh: ShellSession, arg: str) -> None:
    names = arg.split()
    if len(names) == 1 and sh.tenant:
        names = [sh.tenant, *names]
    if len(names) != 2:
        raise CommandError("usage: \\diff A B (two tenants), or \\diff B inside a tenant")
    a, b = (_resolve_schema(sh, n) for n in names)
    with sh.inspection() as conn:
        catalogs = read_catalog(conn, [a, b])
    differences = diff_objects(catalogs[a].objects(), catalogs[b].objects())
    if not differences:
        sh.say(Text(f"{a} and {b} are identical ({catalogs[a].fingerprint})"))
        return
    labels = {"missing": f"only in {a}", "extra": f"only in {b}", "changed": "differs"}
    rows = [(x.object, labels[x.change], x.expected or "", x.actual or "") for x in differences]
    sh.say(table(("object", "change", a, b), rows))
    count = len(differences)
    sh.say(f"({count} difference{'' if count == 1 else 's'} between {a} and {b})")


def cmd_drift(sh: ShellSession, arg: str) -> None:
    if arg:
        reference = _resolve_schema(sh, arg)
        schemas = [s for s in sh.tenant_schemas() if s != reference]
        report = catalog_drift(sh.tenancy, schemas=schemas, reference=reference)
    elif sh.migrations_dir is not None:
        report = catalog_drift(sh.tenancy)
    else:
        raise CommandError(
            "\\drift needs a reference: name a tenant to compare the others with "
            "(\\drift acme), or start the shell with --migrations DIR to compare every "
            "tenant with what the migrations build"
        )
    if report.ok:
        sh.say(
            Text(
                f"No drift: {report.checked} schemas match {report.reference} "
                f"({report.fingerprint})."
            )
        )
        return
    rows = []
    for d in report.drifted:
        for x in d.differences:
            detail = x.actual if x.change != "missing" else x.expected
            rows.append((d.schema, x.object, x.change, detail or ""))
    sh.say(table(("schema", "object", "change", "detail"), rows))
    sh.say(
        Text(f"{len(report.drifted)} of {report.checked} schemas differ from {report.reference}.")
    )


def cmd_plan(sh: ShellSession, arg: str) -> None:
    if sh.migrations_dir is None:
        raise CommandError(
            "\\plan needs the migrations: start the shell with "
            "--migrations DIR (or set TENANTKIT_MIGRATIONS)"
        )
    plan = sh.tenancy.plan()
    with sh.inspection() as conn:
        unknown = unknown_migrations(conn, sh.tenancy.shared_schema, str(sh.migrations_dir))
    pending = plan.pending
    if not pending and not unknown:
        sh.say(f"Nothing to migrate ({len(plan.entries)} schemas at the head).")
        return
    if pending:
        rows = [(e.schema, e.kind, ", ".join(e.pending)) for e in pending]
        sh.say(table(("schema", "kind", "pending"), rows))
        sh.say(f"({len(pending)} of {len(plan.entries)} schemas have pending migrations)")
    if unknown:
        # Planning compares what exists on disk, so these schemas look up to date there.
        ahead = [(schema, ", ".join(ids)) for schema, ids in unknown.items()]
        sh.say(table(("schema", f"applied, not in {sh.migrations_dir}"), ahead))
        sh.say(
            f"({len(unknown)} schema{'' if len(unknown) == 1 else 's'} ahead of the "
            "migrations directory: the code is older than the database)"
        )


def cmd_who(sh: ShellSession, arg: str) -> None:
    shared = sh.tenancy.shared_schema
    tenants = sh.tenant_schemas()
    exclude = sorted(sh.own_pids)
    with sh.inspection() as conn:
        found = tk_inspect.list_sessions(conn, [*tenants, shared], exclude=exclude)
        database = conn.info.dbname
    sessions = [x for x in found if not sh.own_application or x.application != sh.own_application]

    def label(schemas: tuple[str, ...]) -> str:
        return ", ".join(f"{s} (shared)" if s == shared else s for s in schemas)

    def order(x: tk_inspect.SessionInfo) -> tuple[int, str, int]:
        own = [s for s in x.schemas if s != shared]
        return (0 if own else 1 if x.schemas else 2, label(x.schemas), x.pid)

    rows = []
    for x in sorted(sessions, key=order):
        query = " ".join(x.query.split())
        rows.append(
            (
                label(x.schemas) or "(no tenant)",
                x.pid,
                x.user or "",
                x.application,
                x.client.rsplit(":", 1)[0],  # the pid tells connections apart
                x.state or "",
                format_duration(x.duration),
                query[:80] + ("..." if len(query) > 80 else ""),
            )
        )
    if not rows:
        sh.say(Text(f"no other sessions on {database}"))
        return
    columns = ("tenant", "pid", "user", "application", "client", "state", "since", "query")
    # On a narrow terminal cells wrap, but a pid is never cut.
    sh.say(table(columns, rows, right=("pid",), keep=("pid", "since")))
    working: dict[str, int] = {}
    for x in sessions:
        for schema in x.schemas:
            working[schema] = working.get(schema, 0) + 1
    idle = sum(1 for x in sessions if not x.schemas)
    parts = [f"{n} in {label((k,))}" for k, n in sorted(working.items())]
    parts.append(f"{idle} in no tenant")
    sh.say(
        Text(
            f"({len(sessions)} other session{'' if len(sessions) == 1 else 's'} on "
            f"{database}: {', '.join(parts)}; a session counts for the tenants it holds locks "
            "in, see \\help who)"
        )
    )


def _split_name(text: str) -> tuple[str | None, str]:
    """``schema.table``, ``table`` or quoted parts into (schema or None, table)."""
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."]+)', text.strip())
    names = [q.replace('""', '"') if q else u.lower() for q, u in parts]
    if len(names) == 2:
        return names[0], names[1]
    if len(names) == 1:
        return None, names[0]
    raise CommandError(f"not a table name: {text!r} (use table or schema.table)")


def _qualified(table: tuple[str, str], visible: list[str]) -> str:
    return table[1] if table[0] in visible else f"{table[0]}.{table[1]}"


COMMANDS: tuple[Command, ...] = (
    Command(
        ("\\use", "\\c"), "NAME", "work as tenant NAME (schema name or host)", cmd_use, "tenant"
    ),
    Command(("\\public",), "", "work in the shared schema (no tenant)", cmd_public),
    Command(("\\tenants",), "", "tenants with their state and domains", cmd_tenants),
    Command(
        ("\\dt",),
        "[PATTERN]",
        "tables of the current tenant and the shared schema, with estimated rows and sizes "
        "(tenantkit's own tables left out)",
        cmd_dt,
        "table",
    ),
    Command(
        ("\\dtS", "\\dt+"),
        "[PATTERN]",
        "\\dt with tenantkit's own tables too (registry, migration history, journal)",
        cmd_dt_all,
        "table",
    ),
    Command(
        ("\\d",),
        "TABLE",
        "columns, indexes, constraints, foreign keys and triggers of TABLE (as the tenant "
        "resolves it; schema.table works too)",
        cmd_d,
        "table",
    ),
    Command(
        ("\\sizes",),
        "",
        "tables, estimated rows and total size of every tenant, largest first",
        cmd_sizes,
    ),
    Command(
        ("\\diff",),
        "A [B]",
        "structural difference between tenants A and B (B alone: the current tenant and B)",
        cmd_diff,
        "tenant",
    ),
    Command(
        ("\\drift",),
        "[REFERENCE]",
        "tenants whose structure differs from the migrations' template (--migrations) or "
        "from tenant REFERENCE",
        cmd_drift,
        "tenant",
    ),
    Command(("\\plan",), "", "pending migrations per schema (needs --migrations)", cmd_plan),
    Command(("\\who",), "", "sessions on this database, by the tenant they hold locks in", cmd_who),
    Command(
        ("\\conninfo",), "", "database, user, tenant and the search_path in effect", cmd_conninfo
    ),
    Command(("\\timing",), "[on|off]", "show how long each statement takes", cmd_timing),
    Command(("\\help", "\\?"), "[COMMAND]", "this help, or the help of one command", cmd_help),
    Command(("\\q", "\\quit"), "", "quit (also Ctrl-D)", None),
)
_BY_NAME = {name: command for command in COMMANDS for name in command.names}


def find_command(name: str) -> Command | None:
    """The command called ``name`` (``\\dt``), or None."""
    return _BY_NAME.get(name)
