"""Copy a schema's structure (and optionally its data) to a new schema, in Python.

The DDL is generated from the catalog (:mod:`tenantkit.introspection.catalog`), so nothing is
installed in the user's database (no plpgsql clone function). References to the source schema inside
definitions (sequence defaults, foreign keys, views, triggers, enum-typed columns) are rewritten to
the target; references to other schemas (the shared one) are kept. Identity columns get their own
sequences under the same names; serial sequences are re-created and re-owned.

Rows, when copied, go in right after the tables are created: before the foreign keys (so the
order of the tables does not matter) and before the triggers (the source's rows are copied as
they are, nothing fires twice). Each sequence then continues where the source's stands, and a
materialized view the source has populated is created populated.

Row-level security is reproduced: each table's policies (permissive or restrictive, command,
roles, ``USING`` and ``WITH CHECK`` expressions, references to the source schema rewritten)
and whether it is enabled and forced, set after the rows are copied.

Privileges are reproduced: those granted on the schema, its tables, views, sequences,
columns, functions and types (each object's access list ends up with the same entries as the
source's, PUBLIC's defaults included), and the schema's default privileges (set last, so they
apply to what is created in the clone afterwards, as in the source).

Refused with :class:`CloneError` (a copy would differ from the source, or fail half-way):
privileges granted by a role other than the object's owner, default privileges of another
role or of the current role in every schema, objects owned by another role, copying the rows
of a table whose row-level security applies to the current role (it would copy only the
rows the policies show), partitioned and foreign tables, table inheritance, rules, triggers
that are not simply enabled, views with options (``security_barrier``...), domains, composite
and range types, extension members. Not copied: comments.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..core.names import validate_schema_name
from ..errors import CloneError, InvalidSchemaName, SchemaExists, SchemaNotFound
from ..introspection.catalog import (
    PLACEHOLDER,
    ROW_SECURITY_APPLIES,
    Column,
    SchemaCatalog,
    Sequence_,
    read_catalog,
)

__all__ = ["CloneError", "CloneScript", "Rows", "clone_schema", "clone_script"]


#: Which rows a :class:`CloneScript` copies from its source: ``"none"`` (structure only),
#: ``"all"`` (every table, every sequence position: ``clone_schema(data=True)``) or
#: ``"present"`` (the tables that held rows and the sequences that had been used when the
#: script was built: a template's seed data, written by its migrations).
Rows = Literal["none", "all", "present"]


@dataclass(frozen=True)
class CloneScript:
    """The DDL that recreates a schema, with the schema's name left as a placeholder.

    Generated once from the catalog and replayed for every new schema, so cloning N schemas
    costs one catalog read and N single-message scripts. With ``rows`` other than ``"none"``
    the script also copies rows from its ``source`` (read when the script runs).
    """

    source: str
    statements: tuple[str, ...]
    rows: Rows = "none"

    def render(self, conn: psycopg.Connection[Any], target: str) -> bytes:
        """The script for ``target``, as one multi-statement message."""
        quoted = sql.Identifier(target).as_string(conn)
        return ";\n".join(self.statements).replace(PLACEHOLDER, quoted).encode()

    def apply(self, conn: psycopg.Connection[Any], target: str) -> None:
        """Create the objects in the (existing, empty) schema ``target`` on ``conn``."""
        if self.statements:
            conn.execute(self.render(conn, target))


def clone_script(
    conn: psycopg.Connection[Any],
    source: str,
    *,
    rows: Rows = "none",
    skip_rows: Collection[str] = (),
) -> CloneScript:
    """Read ``source`` from the catalog and build its :class:`CloneScript`.

    ``rows`` says which rows the script copies (see :data:`Rows`); ``skip_rows`` names tables
    whose rows are never copied (a history table the caller writes itself).
    """
    exists = conn.execute(
        "select exists (select from pg_namespace where nspname = %s)", (source,)
    ).fetchone()
    if not exists or not exists[0]:
        raise SchemaNotFound(f"schema {source!r} does not exist; nothing to clone")
    found = conn.execute(_Q_UNSUPPORTED, {"schema": source, "rows": rows != "none"}).fetchall()
    cat = read_catalog(conn, [source])[source]
    grants, foreign = _privileges(conn, cat)
    _refuse(source, [*found, *foreign])
    script = _build(conn, cat, _what_to_copy(conn, cat, rows, set(skip_rows)), rows)
    return CloneScript(script.source, script.statements + tuple(grants), rows)


#: What the cloner does not reproduce, found in one query: a clone would silently differ from
#: its source (a tenant made by migrations), in ways that matter (grants by another role, a
#: view's security options, a disabled trigger, rows hidden by row-level security from the
#: current role when rows are copied) or it would fail half-way (types).
_Q_UNSUPPORTED = sql.SQL("""
with n as (select oid, nspacl from pg_catalog.pg_namespace where nspname = %(schema)s),
rel as (select c.* from pg_catalog.pg_class c join n on c.relnamespace = n.oid),
me as (select oid from pg_catalog.pg_roles where rolname = current_user)
select 'partitioned table', relname from rel where relkind = 'p'
union all select 'foreign table', relname from rel where relkind = 'f'
union all select 'domain, composite or range type', t.typname from pg_catalog.pg_type t join n
    on t.typnamespace = n.oid where t.typtype in ('d', 'r', 'm')
    or (t.typtype = 'c' and exists (select from rel where rel.oid = t.typrelid
        and rel.relkind = 'c'))
union all select 'rows hidden from the current role by row-level security', c.relname
    from rel c where %(rows)s and c.relkind = 'r' and {applies}
union all select 'default privileges of the current role in every schema', ''
    from pg_catalog.pg_default_acl d
    where d.defaclnamespace = 0 and d.defaclrole = (select oid from me)
union all select 'owned by another role', relname from rel where relowner <> (select oid from me)
union all select 'owned by another role', p.proname from pg_catalog.pg_proc p join n
    on p.pronamespace = n.oid where p.proowner <> (select oid from me)
union all select 'owned by another role', t.typname from pg_catalog.pg_type t join n
    on t.typnamespace = n.oid where t.typtype = 'e' and t.typowner <> (select oid from me)
union all select 'table inheritance', rel.relname from pg_catalog.pg_inherits i
    join rel on rel.oid = i.inhrelid where not rel.relispartition
union all select 'rule', r.rulename from pg_catalog.pg_rewrite r join rel on rel.oid = r.ev_class
    where r.rulename <> '_RETURN'
union all select 'trigger not simply enabled', tg.tgname from pg_catalog.pg_trigger tg
    join rel on rel.oid = tg.tgrelid where not tg.tgisinternal and tg.tgenabled <> 'O'
union all select 'view options (security_barrier, security_invoker...)', relname from rel
    where relkind in ('v', 'm') and reloptions is not null
union all select 'extension member', coalesce(rel.relname, p.proname, t.typname)
    from pg_catalog.pg_depend d
    left join rel on d.classid = 'pg_catalog.pg_class'::regclass and rel.oid = d.objid
    left join pg_catalog.pg_proc p on d.classid = 'pg_catalog.pg_proc'::regclass
        and p.oid = d.objid and p.pronamespace = (select oid from n)
    left join pg_catalog.pg_type t on d.classid = 'pg_catalog.pg_type'::regclass
        and t.oid = d.objid and t.typnamespace = (select oid from n)
    where d.deptype = 'e' and coalesce(rel.oid, p.oid, t.oid) is not null
""").format(applies=ROW_SECURITY_APPLIES)


#: ``ALTER DEFAULT PRIVILEGES`` object kinds, by ``pg_default_acl.defaclobjtype``.
_DEFAULT_KINDS = {"r": "tables", "S": "sequences", "f": "functions", "T": "types"}


def _privileges(
    conn: psycopg.Connection[Any], cat: SchemaCatalog
) -> tuple[list[str], list[tuple[str, str]]]:
    """The statements giving a clone of ``cat``'s schema the same privileges, and what cannot
    be reproduced (entries granted by a role other than the current one, the owner) as
    (kind, name) pairs for :func:`_refuse`.

    Each object with an access list first loses every privilege (PUBLIC's defaults and the
    owner's included), then gets the source's entries, one ``GRANT`` per grantee and grant
    option; a column's list is only added to. The schema's default privileges come last.
    """
    if not cat.privileges:
        return [], []
    me = conn.execute("select current_user").fetchone()
    foreign: list[tuple[str, str]] = []
    # (kind, name, sub) -> {(grantee, grantable): [privileges]}, in the catalog's order.
    objects: dict[tuple[str, str, str | None], dict[tuple[str | None, bool], list[str]]] = {}
    for p in cat.privileges:
        entries = objects.setdefault((p.kind, p.name, p.sub), {})
        if p.privilege is None:
            continue  # an empty access list: everything revoked
        if me is None or p.grantor != me[0]:
            label = "privileges granted by a role other than the current one"
            if p.kind == "default":
                label = "default privileges of another role"
            foreign.append((label, "" if p.kind in ("schema", "default") else p.name))
            continue
        entries.setdefault((p.grantee, p.grantable), []).append(p.privilege)

    def ident(name: str) -> str:
        return sql.Identifier(name).as_string(conn)

    out: list[str] = []
    defaults: list[str] = []
    for (kind, name, sub), entries in objects.items():
        if kind == "default":
            on, target = "on " + _DEFAULT_KINDS[name], ""
        elif kind == "schema":
            on, target = "on schema", PLACEHOLDER
        elif kind == "routine":
            on, target = "on routine", f"{PLACEHOLDER}.{ident(name)}({sub})"
        elif kind == "column":
            on, target = "on table", f"{PLACEHOLDER}.{ident(name)}"
        else:
            on, target = f"on {kind}", f"{PLACEHOLDER}.{ident(name)}"
        if kind not in ("column", "default"):
            out.append(f"revoke all {on} {target} from public, current_user")
        for (grantee, grantable), privileges in entries.items():
            what = ", ".join(privileges)
            if kind == "column":
                what = ", ".join(f"{p} ({ident(str(sub))})" for p in privileges)
            to = "public" if grantee is None else ident(grantee)
            option = " with grant option" if grantable else ""
            if kind == "default":
                defaults.append(
                    f"alter default privileges in schema {PLACEHOLDER} "
                    f"grant {what} {on} to {to}{option}"
                )
            else:
                out.append(f"grant {what} {on} {target} to {to}{option}")
    return out + defaults, foreign


def _refuse(source: str, found: Collection[tuple[str, str]]) -> None:
    """Raise :class:`CloneError` naming what ``source`` holds that a clone would lose, given
    as (kind, name) pairs; nothing when there is none."""
    if not found:
        return
    kinds: dict[str, list[str]] = {}
    for kind, name in found:
        kinds.setdefault(kind, []).append(name)
    listed = "; ".join(
        kind + (f": {', '.join(sorted(set(names))[:5])}" if any(names) else "")
        for kind, names in kinds.items()
    )
    raise CloneError(
        f"schema {source!r} holds what clone_schema does not reproduce ({listed}); a copy "
        "would differ from it, so create such schemas by migrations (tenantkit's provisioner "
        "does so by itself)"
    )


@dataclass(frozen=True)
class _Copy:
    """The rows a script copies: tables, sequence positions, populated materialized views."""

    tables: tuple[str, ...] = ()
    sequences: tuple[str, ...] = ()
    populated: frozenset[str] = frozenset()


def _what_to_copy(
    conn: psycopg.Connection[Any], cat: SchemaCatalog, rows: Rows, skip: set[str]
) -> _Copy:
    if rows == "none":
        return _Copy()
    tables = [name for name, _kind, _p in cat.tables if name not in skip]
    sequences = [s.name for s in cat.sequences]
    matviews = [name for name, kind, _d in cat.views if kind == "m"]
    populated = frozenset(
        row[0]
        for row in conn.execute(
            "select c.relname from pg_catalog.pg_class c "
            "join pg_catalog.pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relname = any(%s) and c.relispopulated",
            (cat.schema, matviews),
        )
    )
    if rows == "present" and (tables or sequences):
        # One query: which tables hold a row, which sequences have been used.
        checks = [
            sql.SQL("select 't', {} where exists (select from {})").format(
                sql.Literal(t), sql.Identifier(cat.schema, t)
            )
            for t in tables
        ] + [
            sql.SQL("select 's', {} from {} where is_called").format(
                sql.Literal(q), sql.Identifier(cat.schema, q)
            )
            for q in sequences
        ]
        found = conn.execute(sql.SQL(" union all ").join(checks)).fetchall()
        tables = [t for t in tables if ("t", t) in found]
        sequences = [q for q in sequences if ("s", q) in found]
    return _Copy(tuple(tables), tuple(sequences), populated)


def clone_schema(
    conn: psycopg.Connection[Any],
    source: str,
    target: str,
    *,
    data: bool = False,
    script: CloneScript | None = None,
    validate_name: Callable[[str], object] | None = None,
) -> None:
    """Create schema ``target`` with the structure of ``source`` (and its rows with ``data``).

    Runs in one transaction (a savepoint inside the caller's transaction). ``script`` reuses a
    script built earlier by :func:`clone_script` instead of reading the catalog again: from
    ``source``, with ``rows="all"`` when ``data`` (``ValueError`` otherwise). With ``data``
    every row is copied and every sequence continues where the source's stands.

    ``validate_name`` is the name policy for ``target``: a callable that raises for a name it
    refuses (default: tenantkit's strict :func:`~tenantkit.validate_schema_name`). An
    integration with a wider rule (django-tenants allows hyphens, capitals...) passes its
    own; the name is only ever quoted as an identifier, and whatever the policy, an empty
    name, a NUL byte or more than 63 bytes (which PostgreSQL would truncate) is refused.
    """
    if validate_name is None:
        validate_schema_name(target, shared_schema="")
    else:
        _check_identifier(target)
        validate_name(target)
    if script is not None and (script.source != source or (script.rows == "all") != data):
        raise ValueError(
            f"the script was built from {script.source!r} with rows={script.rows!r}; "
            f"clone_schema({source!r}, data={data}) needs clone_script(conn, {source!r}, "
            f"rows={'all' if data else 'none'!r})"
        )
    with conn.transaction():
        if script is None:
            script = clone_script(conn, source, rows="all" if data else "none")
        try:
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(target)))
        except psycopg.errors.DuplicateSchema as exc:
            raise SchemaExists(f"schema {target!r} already exists; pick another name") from exc
        script.apply(conn, target)


def _check_identifier(name: object) -> None:
    """What every policy must refuse: not a usable, untruncated PostgreSQL identifier."""
    if not isinstance(name, str) or not name:
        raise InvalidSchemaName(name, "expected a non-empty str")
    if "\x00" in name:
        raise InvalidSchemaName(name, "it contains a NUL byte")
    if len(name.encode("utf-8")) > 63:
        raise InvalidSchemaName(name, "it is longer than 63 bytes (PostgreSQL would truncate it)")


def _build(
    conn: psycopg.Connection[Any], cat: SchemaCatalog, copy: _Copy, rows: Rows
) -> CloneScript:
    def q(name: str) -> str:
        return sql.Identifier(name).as_string(conn)

    def lit(value: str) -> str:
        return sql.Literal(value).as_string(conn)

    def rel(name: str) -> str:
        return f"{PLACEHOLDER}.{q(name)}"

    out: list[str] = []
    if cat.functions:
        # Function bodies may mention tables created later in the script.
        out.append("set local check_function_bodies = off")
    for name, labels in cat.enums:
        out.append(f"create type {rel(name)} as enum ({', '.join(lit(x) for x in labels)})")
    identity = {s.owner: s for s in cat.sequences if s.dep == "i" and s.owner}
    for s in cat.sequences:
        if s.dep != "i":
            out.append(f"create sequence {rel(s.name)} as {s.type} {s.options()}")
    kinds = {name: kind for name, kind, _ in cat.tables}
    inline = {(t, n) for t, n, k, d in cat.constraints if k != "f" and "NOT VALID" not in d}
    deferred_defaults: list[str] = []
    for table, _kind, persistence in cat.tables:
        cols = [
            _column(c, identity.get((table, c.name)), rel, q, deferred_defaults, table)
            for c in cat.columns.get(table, ())
        ]
        cols += [
            f"constraint {q(n)} {d}"
            for t, n, _k, d in cat.constraints
            if (t, n) in inline and t == table
        ]
        unlogged = "unlogged " if persistence == "u" else ""
        out.append(f"create {unlogged}table {rel(table)} ({', '.join(cols)})")
    out.extend(_copy_rows(conn, cat, copy))
    for t, n, _k, d in cat.constraints:
        if (t, n) not in inline:
            out.append(f"alter table {rel(t)} add constraint {q(n)} {d}")
    late_indexes: list[str] = []
    for t, _n, d in cat.indexes:
        (out if t in kinds else late_indexes).append(d)
    for s in cat.sequences:
        if s.dep == "a" and s.owner:
            out.append(f"alter sequence {rel(s.name)} owned by {rel(s.owner[0])}.{q(s.owner[1])}")
    out.extend(d for _sig, d in cat.functions)
    out.extend(deferred_defaults)
    for name, kind, definition in cat.views:
        body = definition.strip().rstrip(";")
        if kind == "m":
            data = "data" if name in copy.populated else "no data"
            out.append(f"create materialized view {rel(name)} as {body} with {data}")
        else:
            out.append(f"create view {rel(name)} as {body}")
    out.extend(late_indexes)
    out.extend(d for _t, _n, d in cat.triggers)
    out.extend(_row_security(cat, rel, q))
    return CloneScript(cat.schema, tuple(out), rows)


def _row_security(
    cat: SchemaCatalog, rel: Callable[[str], str], q: Callable[[str], str]
) -> list[str]:
    """The policies, then row-level security enabled and forced where the source has it
    (after the rows were copied: a forced policy would filter the owner's inserts)."""
    out: list[str] = []
    for pol in cat.policies:
        roles = ", ".join("public" if r is None else q(r) for r in pol.roles)
        text = (
            f"create policy {q(pol.name)} on {rel(pol.table)} "
            f"as {'permissive' if pol.permissive else 'restrictive'} "
            f"for {pol.command} to {roles}"
        )
        if pol.using is not None:
            text += f" using ({pol.using})"
        if pol.check is not None:
            text += f" with check ({pol.check})"
        out.append(text)
    for table, enabled, forced in cat.row_security:
        if enabled:
            out.append(f"alter table {rel(table)} enable row level security")
        if forced:
            out.append(f"alter table {rel(table)} force row level security")
    return out


def _column(
    c: Column,
    identity: Sequence_ | None,
    rel: Callable[[str], str],
    q: Callable[[str], str],
    deferred: list[str],
    table: str,
) -> str:
    parts = [q(c.name), c.type]
    if c.collation:
        parts.append(f"collate {c.collation}")
    if c.generated:
        parts.append(f"generated always as ({c.default}) stored")
    elif c.default is not None:
        if PLACEHOLDER in c.default and not c.default.startswith("nextval("):
            # A default calling one of the schema's own functions: set it once they exist.
            deferred.append(
                f"alter table {rel(table)} alter column {q(c.name)} set default {c.default}"
            )
        else:
            parts.append(f"default {c.default}")
    if c.identity:
        mode = "always" if c.identity == "a" else "by default"
        opts = f" (sequence name {rel(identity.name)} {identity.options()})" if identity else ""
        parts.append(f"generated {mode} as identity{opts}")
    if c.not_null:
        parts.append("not null")
    return " ".join(parts)


#: Sequence positions copied per statement (4 sequences: 8 one-row relations, under the
#: planner's join_collapse_limit).
_SEQUENCES_PER_STATEMENT = 4


def _copy_rows(conn: psycopg.Connection[Any], cat: SchemaCatalog, copy: _Copy) -> list[str]:
    """Statements copying ``copy``'s rows and sequence positions from ``cat.schema``."""

    def target(name: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(sql.SQL(PLACEHOLDER), sql.Identifier(name))

    out: list[sql.Composable] = []
    for table in copy.tables:
        cols = [c for c in cat.columns.get(table, ()) if not c.generated]
        if not cols:
            continue
        # Values of the schema's own types (enums) are cast through text to the target's type;
        # the type text comes from the catalog (format_type), not from user input.
        exprs = [
            sql.SQL("{}::text::{}").format(sql.Identifier(c.name), sql.SQL(c.type))
            if PLACEHOLDER in c.type
            else sql.Identifier(c.name)
            for c in cols
        ]
        out.append(
            sql.SQL("insert into {} ({}) overriding system value select {} from {}").format(
                target(table),
                sql.SQL(", ").join(sql.Identifier(c.name) for c in cols),
                sql.SQL(", ").join(exprs),
                sql.Identifier(cat.schema, table),
            )
        )
    # A few sequences per statement: each target sequence (a one-row relation, named in the
    # FROM clause, so no name goes into a literal) takes its source's position. (One statement
    # for all would make the planner search a join of hundreds of relations.)
    for start in range(0, len(copy.sequences), _SEQUENCES_PER_STATEMENT):
        names = copy.sequences[start : start + _SEQUENCES_PER_STATEMENT]
        pairs = [(sql.Identifier(f"d{i}"), sql.Identifier(f"s{i}")) for i in range(len(names))]
        out.append(
            sql.SQL("select {} from {}").format(
                sql.SQL(", ").join(
                    sql.SQL("pg_catalog.setval({}.tableoid, {}.last_value, {}.is_called)").format(
                        d, s, s
                    )
                    for d, s in pairs
                ),
                sql.SQL(", ").join(
                    sql.SQL("{} {}, {} {}").format(
                        target(name), d, sql.Identifier(cat.schema, name), s
                    )
                    for name, (d, s) in zip(names, pairs, strict=True)
                ),
            )
        )
    return [part.as_string(conn) for part in out]
