"""Catalog queries: a schema's structure, its fingerprint, sizes, and drift between tenants.

Definitions are read with ``search_path = pg_catalog`` so PostgreSQL qualifies every name, then the
inspected schema's own name is replaced by a placeholder: two tenants built by the same migrations
get identical definitions, and :mod:`tenantkit.provisioning.clone` renders the same text for a new
schema. Every query covers a list of schemas at once, so checking 1,000 tenants costs a handful of
queries, not thousands.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "PLACEHOLDER",
    "Difference",
    "DriftReport",
    "Policy",
    "Privilege",
    "SchemaCatalog",
    "SchemaDrift",
    "diff_objects",
    "drift",
    "fingerprint",
    "read_catalog",
    "rewrite_schema",
    "schema_sizes",
]

#: Stands for the inspected schema inside normalised definitions (a quoted identifier, so a
#: definition rendered for another schema only needs this token replaced).
PLACEHOLDER = '"__tenantkit_schema__"'


def rewrite_schema(text: str, schema: str, replacement: str) -> str:
    """Replace qualified references to ``schema`` (``s.x`` or ``"s".x``) by ``replacement.x``.

    Matches only where an identifier starts (not inside a longer name), which covers
    ``s.t``, ``'s.seq'::regclass`` and ``"s".t``.
    """
    quoted = '"' + schema.replace('"', '""') + '"'
    pattern = r'(?<![\w$"])(?:' + re.escape(quoted) + "|" + re.escape(schema) + r")\."
    return re.sub(pattern, lambda _m: replacement + ".", text)


@dataclass(frozen=True)
class Column:
    """One column, its definition normalised."""

    name: str
    type: str
    not_null: bool
    default: str | None
    identity: str  # '' | 'a' (always) | 'd' (by default)
    generated: str  # '' | 's' (stored)
    collation: str | None


@dataclass(frozen=True)
class Sequence_:
    """A sequence; ``owner`` is ``(table, column)`` and ``dep`` 'a' (serial) or 'i' (identity)."""

    name: str
    type: str
    start: int
    increment: int
    min: int
    max: int
    cache: int
    cycle: bool
    owner: tuple[str, str] | None
    dep: str | None

    def options(self) -> str:
        """The option clause shared by CREATE SEQUENCE and identity columns."""
        return (
            f"INCREMENT BY {self.increment} MINVALUE {self.min} MAXVALUE {self.max} "
            f"START WITH {self.start} CACHE {self.cache} {'CYCLE' if self.cycle else 'NO CYCLE'}"
        )


@dataclass(frozen=True)
class Privilege:
    """One entry of an access list in a schema, or an access list with no entry at all
    (``privilege`` None: everything revoked). Objects without an access list (the defaults)
    have none."""

    #: ``schema``, ``table`` (views too), ``sequence``, ``column``, ``routine``, ``type`` or
    #: ``default`` (the schema's default privileges).
    kind: str
    #: The object's name; "" for the schema; the object type letter for ``default``.
    name: str
    #: The column's name, or the routine's identity arguments (normalised).
    sub: str | None
    #: The role granted to; None: PUBLIC.
    grantee: str | None
    privilege: str | None
    grantable: bool
    grantor: str | None

    @property
    def target(self) -> str:
        """The object, as drift names it."""
        if self.kind == "schema":
            return "schema"
        if self.kind == "column":
            return f"column {self.name}.{self.sub}"
        if self.kind == "routine":
            return f"routine {self.name}({self.sub})"
        return f"{self.kind} {self.name}"


#: SQL condition on ``c``, a ``pg_class`` row: row-level security filters what the current
#: role reads of that relation (enabled, and forced or not owned by the role, directly or
#: through a role it inherits; the role is neither a superuser nor ``BYPASSRLS``).
ROW_SECURITY_APPLIES = sql.SQL(
    "c.relrowsecurity and (c.relforcerowsecurity "
    "or not pg_catalog.pg_has_role(c.relowner, 'USAGE')) "
    "and not (select rolsuper or rolbypassrls from pg_catalog.pg_roles "
    "where rolname = current_user)"
)

#: ``pg_policy.polcmd`` -> the command a policy applies to.
POLICY_COMMANDS = {"r": "select", "a": "insert", "w": "update", "d": "delete", "*": "all"}


@dataclass(frozen=True)
class Policy:
    """A row-level security policy on one of the schema's tables, its expressions
    normalised."""

    table: str
    name: str
    permissive: bool
    #: ``select``, ``insert``, ``update``, ``delete`` or ``all``.
    command: str
    #: The roles it applies to, in the catalog's order; None: PUBLIC.
    roles: tuple[str | None, ...]
    using: str | None
    check: str | None

    def definition(self) -> str:
        """How drift shows it: ``permissive for select to PUBLIC using (...) ...``."""
        roles = ", ".join(r if r is not None else "PUBLIC" for r in self.roles)
        text = f"{'permissive' if self.permissive else 'restrictive'} for {self.command}"
        text += f" to {roles}"
        if self.using is not None:
            text += f" using ({self.using})"
        if self.check is not None:
            text += f" with check ({self.check})"
        return text


@dataclass(frozen=True)
class SchemaCatalog:
    """The structure of one schema with its own name replaced by :data:`PLACEHOLDER`."""

    schema: str
    tables: tuple[tuple[str, str, str], ...] = ()  # (name, relkind, relpersistence)
    columns: Mapping[str, tuple[Column, ...]] = field(default_factory=dict)
    constraints: tuple[tuple[str, str, str, str], ...] = ()  # (table, name, contype, def)
    indexes: tuple[tuple[str, str, str], ...] = ()  # (table, name, def)
    sequences: tuple[Sequence_, ...] = ()
    views: tuple[tuple[str, str, str], ...] = ()  # (name, relkind, def)
    functions: tuple[tuple[str, str], ...] = ()  # (signature, def)
    triggers: tuple[tuple[str, str, str], ...] = ()  # (table, name, def)
    enums: tuple[tuple[str, tuple[str, ...]], ...] = ()
    privileges: tuple[Privilege, ...] = ()
    #: Tables with row-level security enabled or forced: (table, enabled, forced).
    row_security: tuple[tuple[str, bool, bool], ...] = ()
    policies: tuple[Policy, ...] = ()

    def objects(self) -> dict[str, str]:
        """Every object as ``"kind name" -> normalised definition`` (what drift compares)."""
        out: dict[str, str] = {}
        for name, kind, persistence in self.tables:
            out[f"table {name}"] = f"relkind={kind} persistence={persistence}"
            for c in self.columns.get(name, ()):
                out[f"column {name}.{c.name}"] = _column_text(c)
        for table, name, _kind, definition in self.constraints:
            out[f"constraint {table}.{name}"] = definition
        for _table, name, definition in self.indexes:
            out[f"index {name}"] = definition
        for s in self.sequences:
            owner = f" owned by {s.owner[0]}.{s.owner[1]}" if s.owner else ""
            out[f"sequence {s.name}"] = f"{s.type} {s.options()}{owner}"
        for name, kind, definition in self.views:
            out[f"view {name}"] = f"relkind={kind} {definition}"
        for signature, definition in self.functions:
            out[f"function {signature}"] = definition
        for table, name, definition in self.triggers:
            out[f"trigger {table}.{name}"] = definition
        for name, labels in self.enums:
            out[f"type {name}"] = "enum(" + ", ".join(labels) + ")"
        lists: dict[str, list[str]] = {}
        for p in self.privileges:
            entries = lists.setdefault(f"privileges on {p.target}", [])
            if p.privilege is not None:
                option = " with grant option" if p.grantable else ""
                entries.append(
                    f"{p.privilege} to {p.grantee or 'PUBLIC'}{option} by {p.grantor or '?'}"
                )
        for key, entries in lists.items():
            out[key] = "; ".join(sorted(entries)) or "(none)"
        for table, enabled, forced in self.row_security:
            state = ["enabled" if enabled else "disabled"] + (["forced"] if forced else [])
            out[f"row security on {table}"] = ", ".join(state)
        for pol in self.policies:
            out[f"policy {pol.table}.{pol.name}"] = pol.definition()
        return out

    @property
    def fingerprint(self) -> str:
        """A short hash of :meth:`objects`: equal fingerprints, equal structure."""
        h = hashlib.sha256()
        for key, value in sorted(self.objects().items()):
            h.update(f"{key}\0{value}\n".encode())
        return h.hexdigest()[:16]


def _column_text(c: Column) -> str:
    parts = [c.type]
    if c.collation:
        parts.append(f"collate {c.collation}")
    if c.generated:
        parts.append(f"generated always as ({c.default}) stored")
    elif c.default is not None:
        parts.append(f"default {c.default}")
    if c.identity:
        parts.append("identity " + ("always" if c.identity == "a" else "by default"))
    if c.not_null:
        parts.append("not null")
    return " ".join(parts)


@contextmanager
def catalog_path(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Run catalog reads with ``search_path = pg_catalog`` (so every name comes qualified),
    in a transaction or savepoint, restoring the caller's search_path afterwards."""
    with conn.transaction():
        row = conn.execute(
            "select current_setting('search_path'), set_config('search_path', 'pg_catalog', true)"
        ).fetchone()
        assert row is not None
        try:
            yield
        finally:
            if not conn.closed and conn.info.transaction_status == 2:  # INTRANS
                conn.execute("select set_config('search_path', %s, true)", (row[0],))


_Q_TABLES = """
select n.nspname, c.relname, c.relkind, c.relpersistence
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s) and c.relkind in ('r', 'p')
  and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass
  and d.objid = c.oid and d.deptype = 'e')
order by 1, c.oid
"""
_Q_COLUMNS = """
select n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
       case when a.attcollation <> t.typcollation
            then quote_ident(cn.nspname) || '.' || quote_ident(co.collname) end
from pg_attribute a
join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
join pg_type t on t.oid = a.atttypid
left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
left join pg_collation co on co.oid = a.attcollation
left join pg_namespace cn on cn.oid = co.collnamespace
where n.nspname = any(%s) and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
order by 1, c.oid, a.attnum
"""
_Q_CONSTRAINTS = """
select n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
from pg_constraint k join pg_class c on c.oid = k.conrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s) and c.relkind in ('r', 'p')
order by 1, (k.contype = 'f'), c.oid, k.conname
"""
_Q_INDEXES = """
select n.nspname, c.relname, ic.relname, pg_get_indexdef(i.indexrelid)
from pg_index i join pg_class c on c.oid = i.indrelid
join pg_class ic on ic.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s) and c.relkind in ('r', 'p', 'm')
  and not exists (select from pg_constraint k where k.conindid = i.indexrelid
                  and k.conrelid = i.indrelid and k.contype in ('p', 'u', 'x'))
order by 1, ic.relname
"""
_Q_SEQUENCES = """
select n.nspname, c.relname, format_type(s.seqtypid, null), s.seqstart, s.seqincrement,
       s.seqmin, s.seqmax, s.seqcache, s.seqcycle, tc.relname, a.attname, d.deptype
from pg_sequence s join pg_class c on c.oid = s.seqrelid
join pg_namespace n on n.oid = c.relnamespace
left join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = c.oid
     and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
left join pg_class tc on tc.oid = d.refobjid
left join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
where n.nspname = any(%s)
order by 1, c.relname
"""
_Q_VIEWS = """
select n.nspname, c.relname, c.relkind, pg_get_viewdef(c.oid)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s) and c.relkind in ('v', 'm')
  and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass
  and d.objid = c.oid and d.deptype = 'e')
order by 1, c.oid
"""
_Q_FUNCTIONS = """
select n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       pg_get_functiondef(p.oid)
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname = any(%s) and p.prokind in ('f', 'p', 'w')
  and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass
  and d.objid = p.oid and d.deptype = 'e')
order by 1, p.oid
"""
_Q_TRIGGERS = """
select n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid)
from pg_trigger t join pg_class c on c.oid = t.tgrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s) and not t.tgisinternal
order by 1, c.relname, t.tgname
"""
#: Row-level security: the tables that have it enabled or forced (policy NULL), and every
#: policy (its roles by name, NULL for PUBLIC; expressions deparsed, names qualified).
_Q_ROW_SECURITY = """
select n.nspname, c.relname, null::name, c.relrowsecurity, c.relforcerowsecurity,
       null::bool, null::text, null::text[], null::text, null::text
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s) and c.relkind in ('r', 'p')
  and (c.relrowsecurity or c.relforcerowsecurity)
union all
select n.nspname, c.relname, p.polname, null, null, p.polpermissive, p.polcmd::text,
       array(select r.rolname from unnest(p.polroles) with ordinality as u(oid, i)
             left join pg_roles r on r.oid = u.oid order by u.i),
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
from pg_policy p join pg_class c on c.oid = p.polrelid
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%s)
order by 1, 2, 3 nulls first
"""
_Q_ENUMS = """
select n.nspname, t.typname, array_agg(e.enumlabel order by e.enumsortorder)
from pg_type t join pg_namespace n on n.oid = t.typnamespace
join pg_enum e on e.enumtypid = t.oid
where n.nspname = any(%s)
  and not exists (select from pg_depend d where d.classid = 'pg_type'::regclass
  and d.objid = t.oid and d.deptype = 'e')
group by 1, 2, t.oid order by 1, t.oid
"""


#: Every access list in the schemas (theirs, their relations', columns', routines' and
#: types', their default privileges): one row per entry, one row of NULLs for an empty list.
_Q_PRIVILEGES = """
with n as (select oid, nspname, nspacl from pg_namespace where nspname = any(%s)),
obj as (
  select n.nspname, 0 as ord, 'schema' as kind, '' as name, null::text as sub, n.nspacl as acl
    from n where n.nspacl is not null
  union all
  select n.nspname, 1, case c.relkind when 'S' then 'sequence' else 'table' end, c.relname,
         null, c.relacl
    from pg_class c join n on c.relnamespace = n.oid where c.relacl is not null
  union all
  select n.nspname, 2, 'column', c.relname, a.attname, a.attacl
    from pg_attribute a join pg_class c on c.oid = a.attrelid join n on c.relnamespace = n.oid
    where a.attacl is not null and a.attnum > 0 and not a.attisdropped
  union all
  select n.nspname, 3, 'routine', p.proname, pg_get_function_identity_arguments(p.oid), p.proacl
    from pg_proc p join n on p.pronamespace = n.oid where p.proacl is not null
  union all
  select n.nspname, 4, 'type', t.typname, null, t.typacl
    from pg_type t join n on t.typnamespace = n.oid where t.typacl is not null
  union all
  select n.nspname, 5, 'default', d.defaclobjtype::text, null, d.defaclacl
    from pg_default_acl d join n on d.defaclnamespace = n.oid
)
select o.nspname, o.kind, o.name, o.sub, ge.rolname, x.privilege_type, x.is_grantable,
       gr.rolname
  from obj o
  left join lateral aclexplode(o.acl) x on true
  left join pg_roles ge on ge.oid = x.grantee
  left join pg_roles gr on gr.oid = x.grantor
 order by 1, o.ord, o.name, o.sub, ge.rolname nulls first, x.privilege_type
"""


def read_catalog(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> dict[str, SchemaCatalog]:
    """Read the structure of ``schemas`` (eleven queries whatever their number)."""
    names = list(schemas)
    acc: dict[str, dict[str, Any]] = {
        s: {
            k: []
            for k in (
                "tables",
                "constraints",
                "indexes",
                "sequences",
                "views",
                "functions",
                "triggers",
                "enums",
                "privileges",
                "row_security",
                "policies",
            )
        }
        | {"columns": {}}
        for s in names
    }

    def norm(schema: str, text: str | None) -> str | None:
        return None if text is None else rewrite_schema(text, schema, PLACEHOLDER)

    with catalog_path(conn):
        for s, t, kind, pers in conn.execute(_Q_TABLES, (names,)):
            acc[s]["tables"].append((t, kind, pers))
        for s, t, name, typ, nn, default, ident, gen, coll in conn.execute(_Q_COLUMNS, (names,)):
            col = Column(name, norm(s, typ) or "", nn, norm(s, default), ident, gen, coll)
            acc[s]["columns"].setdefault(t, []).append(col)
        for s, t, name, kind, definition in conn.execute(_Q_CONSTRAINTS, (names,)):
            acc[s]["constraints"].append((t, name, kind, norm(s, definition)))
        for s, t, name, definition in conn.execute(_Q_INDEXES, (names,)):
            acc[s]["indexes"].append((t, name, norm(s, definition)))
        for row in conn.execute(_Q_SEQUENCES, (names,)):
            s, name, typ, start, inc, mn, mx, cache, cycle, otab, ocol, dep = row
            owner = (otab, ocol) if otab is not None else None
            acc[s]["sequences"].append(
                Sequence_(name, typ, start, inc, mn, mx, cache, cycle, owner, dep)
            )
        for s, name, kind, definition in conn.execute(_Q_VIEWS, (names,)):
            acc[s]["views"].append((name, kind, norm(s, definition)))
        for s, signature, definition in conn.execute(_Q_FUNCTIONS, (names,)):
            acc[s]["functions"].append((norm(s, signature), norm(s, definition)))
        for s, t, name, definition in conn.execute(_Q_TRIGGERS, (names,)):
            acc[s]["triggers"].append((t, name, norm(s, definition)))
        for s, name, labels in conn.execute(_Q_ENUMS, (names,)):
            acc[s]["enums"].append((name, tuple(labels)))
        for s, kind, name, sub, grantee, privilege, grantable, grantor in conn.execute(
            _Q_PRIVILEGES, (names,)
        ):
            # (PUBLIC, grantee 0, has no role: None, as in an empty list's row.)
            p = Privilege(kind, name, norm(s, sub), grantee, privilege, bool(grantable), grantor)
            acc[s]["privileges"].append(p)
        for row in conn.execute(_Q_ROW_SECURITY, (names, names)):
            s, table, name, enabled, forced, permissive, cmd, roles, using, check = row
            if name is None:
                acc[s]["row_security"].append((table, bool(enabled), bool(forced)))
                continue
            policy = Policy(
                table,
                name,
                bool(permissive),
                POLICY_COMMANDS[cmd],
                tuple(roles),
                norm(s, using),
                norm(s, check),
            )
            acc[s]["policies"].append(policy)
    return {
        s: SchemaCatalog(
            s,
            columns={t: tuple(cols) for t, cols in a.pop("columns").items()},
            **{k: tuple(v) for k, v in a.items()},
        )
        for s, a in acc.items()
    }


def fingerprint(conn: psycopg.Connection[Any], schema: str) -> str:
    """The structural fingerprint of one schema (see :attr:`SchemaCatalog.fingerprint`)."""
    return read_catalog(conn, [schema])[schema].fingerprint


#: Bytes of each schema's tables, indexes, TOAST tables and TOAST indexes from the page counts
#: pg_class keeps (set by VACUUM, ANALYZE, CREATE INDEX and autovacuum): a read of the catalog,
#: no relation opened and no file looked at. pg_class has no index on the namespace alone, so
#: each call scans it once (about 20 ms per 100,000 relations): ask for many schemas at once.
_Q_SIZES_FROM_CATALOG = """
select n.nspname,
       (coalesce(sum(c.relpages::bigint), 0) + coalesce(sum(t.relpages::bigint), 0)
        + coalesce(sum(ti.pages), 0))
       * pg_catalog.current_setting('block_size')::bigint
from pg_catalog.pg_namespace n
left join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relkind in ('r', 'm', 'i')
left join pg_catalog.pg_class t on t.oid = nullif(c.reltoastrelid, 0)
left join lateral (
    select sum(i.relpages::bigint) as pages
    from pg_catalog.pg_index x join pg_catalog.pg_class i on i.oid = x.indexrelid
    where x.indrelid = t.oid
) ti on t.oid is not null
where n.nspname = any(%s)
group by n.nspname
"""
#: Exact bytes: every relation's files measured (a relation opened and stat() called per fork).
_Q_SIZES_EXACT = """
select n.nspname, coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::bigint
from pg_catalog.pg_namespace n
left join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relkind in ('r', 'm', 'p')
where n.nspname = any(%s)
group by n.nspname
"""


def schema_sizes(
    conn: psycopg.Connection[Any], schemas: Sequence[str], *, exact: bool = False
) -> dict[str, int]:
    """Bytes of the tables, indexes and TOAST of each existing schema, in one query.

    By default from the page counts in ``pg_class`` (up to date as of the last VACUUM,
    ANALYZE or index build, which autovacuum keeps recent): one catalog read, cheap for
    thousands of schemas. ``exact=True`` measures every relation's files instead
    (``pg_total_relation_size``), which opens each relation: use it for a few schemas.
    """
    query = _Q_SIZES_EXACT if exact else _Q_SIZES_FROM_CATALOG
    rows = conn.execute(query, (list(schemas),)).fetchall()
    return {s: int(size) for s, size in rows}


@dataclass(frozen=True)
class Difference:
    """One object that differs from the reference: ``expected`` None means the tenant has an
    extra object, ``actual`` None means it lacks one."""

    object: str
    expected: str | None
    actual: str | None

    @property
    def change(self) -> str:
        """``"missing"``, ``"extra"`` or ``"changed"``."""
        if self.actual is None:
            return "missing"
        return "extra" if self.expected is None else "changed"

    def __str__(self) -> str:
        if self.change == "missing":
            return f"{self.object}: missing (expected {self.expected})"
        if self.change == "extra":
            return f"{self.object}: extra ({self.actual})"
        return f"{self.object}: {self.actual} (expected {self.expected})"


@dataclass(frozen=True)
class SchemaDrift:
    """A schema whose structure differs from the reference."""

    schema: str
    fingerprint: str
    differences: tuple[Difference, ...]


@dataclass(frozen=True)
class DriftReport:
    """Result of :func:`drift`: the reference and the schemas that differ from it."""

    reference: str
    fingerprint: str
    checked: int
    drifted: tuple[SchemaDrift, ...]

    @property
    def ok(self) -> bool:
        """True when every checked schema matches the reference."""
        return not self.drifted

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``tenantkit drift --json``)."""
        return {
            "reference": self.reference,
            "fingerprint": self.fingerprint,
            "checked": self.checked,
            "drifted": [
                {
                    "schema": d.schema,
                    "fingerprint": d.fingerprint,
                    "differences": [
                        {
                            "object": x.object,
                            "change": x.change,
                            "expected": x.expected,
                            "actual": x.actual,
                        }
                        for x in d.differences
                    ],
                }
                for d in self.drifted
            ],
        }


def diff_objects(expected: Mapping[str, str], actual: Mapping[str, str]) -> tuple[Difference, ...]:
    """Object-by-object differences between two :meth:`SchemaCatalog.objects` maps."""
    out = []
    for key in sorted(expected.keys() | actual.keys()):
        e, a = expected.get(key), actual.get(key)
        if e != a:
            out.append(Difference(key, e, a))
    return tuple(out)


def drift(
    tenancy: Any, *, schemas: Sequence[str] | None = None, reference: str | None = None
) -> DriftReport:
    """Compare every tenant schema (or ``schemas``) with the template and list differences.

    The reference is ``reference`` when given, else the provisioning template, which is built
    (or brought to the migration head) first when needed, so it is what the migrations produce.
    """
    from ..core.storage import tables
    from ..migrations._tracking import resolve  # late: migrations imports this module's peers
    from ..provisioning.provisioners import Template

    target = resolve(tenancy)
    if reference is None:
        reference = Template(tenancy).ensure()
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        if schemas is None:
            rows = conn.execute(
                sql.SQL(
                    "select t.schema from {tenants} t join pg_namespace n "
                    "on n.nspname = t.schema where t.state <> 'dropping' and t.schema <> %s "
                    "order by 1"
                ).format(**tables(target.shared_schema)),
                (target.shared_schema,),
            ).fetchall()
            schemas = [r[0] for r in rows]
        cats = read_catalog(conn, [reference, *schemas])
    ref = cats[reference]
    expected = ref.objects()
    drifted = []
    for schema in schemas:
        cat = cats[schema]
        if cat.fingerprint != ref.fingerprint:
            drifted.append(
                SchemaDrift(schema, cat.fingerprint, diff_objects(expected, cat.objects()))
            )
    return DriftReport(reference, ref.fingerprint, len(schemas), tuple(drifted))
