"""Snapshots behind ``assert_tenants_isolated``: what some schemas hold, read in a few queries.

A snapshot covers a set of tenant schemas in full, tenantkit's template and warm spares (a row
or trigger planted there reaches every tenant created later) more cheaply, and the rest of the
database by name:

* **objects** of the tenant schemas (relations, columns, constraints, indexes, triggers, rules,
  policies, functions, types, default privileges; role and database settings), each with a
  *token* that changes when the object is altered in place or dropped and created again, and
  the *attributes* a message can name: owner, privileges, row level security, options,
  function security, settings, volatility and the like, trigger and rule state, sequence
  parameters. Definitions are not deparsed up front (``pg_get_indexdef`` and friends are the
  slow part of reading a catalog): only objects found new or changed are described, by the
  later snapshot (``since=``);
* **contents** of the tenant schemas: row count, order-independent hash and (up to 50) rows of
  every table that can hold a row (a table whose heap file is empty holds none, so it is not
  read), and every sequence's ``last_value`` and ``is_called``;
* the **template and spare** schemas ("reserved"): a fingerprint of the transaction ids that
  wrote their catalog rows (cloning writes them all in one transaction; any later DDL, GRANT
  or ALTER writes rows with a new one) and the contents of their tables that are not empty.
  When a fingerprint changed, the later snapshot reads that schema and a sibling that did not
  change as comparable definitions (:func:`tenantkit.introspection.catalog.read_catalog`):
  they are clones of each other, so the differences are what was done;
* every other non-system **schema** by name, with the names of its relations, so that schemas
  and relations appearing elsewhere (a copy of a tenant's rows in a new schema, a table
  created in the shared schema) are seen too.

Three round trips whatever the number of schemas. :mod:`pytest_pgtenants._snapshot_diff` turns
two snapshots into one line per difference.

The reads run with ``row_security = off``: a table whose row-level security applies to the
connection's role (``FORCE ROW LEVEL SECURITY`` on a table it owns, or a table it does not own)
would otherwise show only the rows its policies allow, and a row written into another tenant's
table could go unseen. PostgreSQL then refuses the read instead, and the snapshot raises
:class:`IsolationUnverifiable` naming the tables and the role. (A superuser or a role with
``BYPASSRLS`` reads everything; row-level security does not apply to a table's owner unless
forced.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantkit.introspection.catalog import ROW_SECURITY_APPLIES
from tenantkit.migrations import template_schema_name
from tenantkit.provisioning import SPARE_PREFIX


class TenantIsolationError(AssertionError):
    """Tenant isolation was violated; ``problems`` lists each leak found, one line each."""

    def __init__(self, problems: Sequence[str], header: str | None = None) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        header = header or f"tenant isolation violated ({len(self.problems)} problem(s))"
        super().__init__(f"{header}:\n{lines}")


class IsolationUnverifiable(TenantIsolationError):
    """A snapshot could not read everything it must compare (row-level security hides rows
    from the connection's role): isolation cannot be proven, so the check fails."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems, header="tenant isolation cannot be checked")


__all__ = ["IsolationSnapshot", "TableState", "take_snapshot"]

#: Tables with at most this many rows have their rows recorded, so a failure can show them.
SAMPLE_ROWS = 50

ObjectKey = tuple[str, str]
"""``(kind, name)`` of an object in a schema, e.g. ``("column", "orders.total")``."""

#: The attribute holding an object's token. Tokens start with the object's oid.
TOKEN = ""

#: Kinds of relation that hold rows.
TABLE_KINDS = ("table", "partitioned table")


@dataclass(frozen=True)
class TableState:
    """Row fingerprint of one table: count, order-independent hash, and rows when few."""

    count: int
    digest: str
    rows: tuple[str, ...] | None


EMPTY_TABLE = TableState(0, "0", ())


@dataclass
class IsolationSnapshot:
    """What some tenant schemas hold, the state of the template and spares, and which other
    schemas and relations exist.

    ``schemas`` are the tenant schemas asked for. ``objects[schema][(kind, name)]`` maps
    attribute names to values for them (:data:`TOKEN` is the token; an attribute at its default
    is absent); schema ``""`` holds what belongs to no schema (default privileges for all
    schemas, role settings). ``reserved`` maps the template and each spare schema to the
    fingerprint of its catalog rows. ``tables`` and ``sequences`` hold the contents (for
    reserved schemas, only their tables that are not empty). ``namespaces`` maps every
    non-system schema to its oid; ``relations`` lists the relations (name -> kind) of the
    schemas neither tenant nor reserved; ``roles`` maps role oids to names.

    A snapshot taken with ``since=`` also has ``details`` (definitions of the objects new or
    changed since), ``new_rows`` (row counts of the tables that appeared in schemas not
    covered) and, when a reserved schema's fingerprint changed, ``reserved_views``: that
    schema and an unchanged sibling (``reserved_views[""]`` names it) as comparable
    definitions.
    """

    schemas: tuple[str, ...]
    shared_schema: str
    include_reserved: bool = True
    server_version: int = 0
    roles: dict[int, str] = field(default_factory=dict)
    objects: dict[str, dict[ObjectKey, dict[str, str]]] = field(default_factory=dict)
    locators: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    reserved: dict[str, str] = field(default_factory=dict)
    tables: dict[tuple[str, str], TableState] = field(default_factory=dict)
    sequences: dict[tuple[str, str], tuple[int, bool]] = field(default_factory=dict)
    namespaces: dict[str, int] = field(default_factory=dict)
    relations: dict[str, dict[str, str]] = field(default_factory=dict)
    details: dict[tuple[str, str, str], str] = field(default_factory=dict)
    new_rows: dict[tuple[str, str], int] = field(default_factory=dict)
    reserved_views: dict[str, dict[ObjectKey, dict[str, str]]] = field(default_factory=dict)
    reference: str = ""

    @property
    def template(self) -> str:
        """The name of the template schema of this snapshot's shared schema."""
        return template_schema_name(self.shared_schema)

    @property
    def shared_tables(self) -> set[str]:
        """Names of the shared schema's tables."""
        rels = self.relations.get(self.shared_schema, {})
        return {name for name, kind in rels.items() if kind in TABLE_KINDS}

    def table_names(self, schemas: Iterable[str]) -> set[str]:
        """Names of the tables of ``schemas`` (covered or not)."""
        wanted = set(schemas)
        names = {t for s, t in self.tables if s in wanted}
        for schema in wanted:
            rels = self.relations.get(schema, {})
            names |= {n for n, k in rels.items() if k in TABLE_KINDS}
        return names


_TABLE_KINDS = ("table", "partitioned table")
_RELKIND = (
    "CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'"
    " WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'"
    " WHEN 'c' THEN 'composite type' ELSE 'index' END"
)
_NON_SYSTEM = "NOT starts_with(n.nspname, 'pg_') AND n.nspname <> 'information_schema'"

# Every non-system schema, the relations of the ones not covered, and the roles (by oid).
_PLACES = """
SELECT n.nspname::text, n.oid::bigint, NULL::text, NULL::text
  FROM pg_namespace n
 WHERE @NON_SYSTEM@
UNION ALL
SELECT r.rolname::text, r.oid::bigint, NULL, 'role' FROM pg_roles r
UNION ALL
SELECT n.nspname::text, n.oid::bigint, c.relname::text, @RELKIND@
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND @NON_SYSTEM@
   AND NOT n.nspname = ANY(%(covered)s)
   AND NOT coalesce(starts_with(n.nspname, %(spare)s) OR n.nspname = %(template)s, false)
"""

# The objects of the covered schemas, one row each:
# (schema, kind, name, oid, sub, size, token, attributes).
# The token changes when the object is altered in place or dropped and created again (it
# starts with the object's oid); definitions are not deparsed here (that is the slow part of
# reading a catalog). ``attributes`` is a flat [name, value, ...] array of what a message can
# name (owner, privileges, settings, state...); a NULL value means the default, so the common
# case sends almost nothing. ``size`` is the heap size of tables: an empty heap holds no rows.
_OBJECTS = """
WITH ns AS MATERIALIZED (
  SELECT n.oid, n.nspname::text AS nsp, n.nspowner, n.nspacl FROM pg_namespace n
   WHERE n.nspname = ANY(%(covered)s)
), rel AS MATERIALIZED (
  SELECT c.oid, c.relname::text AS relname, c.relkind, ns.nsp, c.relowner, c.relacl,
         c.reloptions, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity
    FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c', 'i', 'I')
), sp AS MATERIALIZED (
  SELECT n.oid, n.nspname::text AS nsp, n.xmin AS x FROM pg_namespace n
   WHERE (starts_with(n.nspname, %(spare)s) OR n.nspname = %(template)s)
     AND NOT n.nspname = ANY(%(covered)s)
), srel AS MATERIALIZED (
  SELECT c.oid, c.relnamespace, c.relname::text AS relname, c.relkind, c.xmin AS x
    FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM sp)
), sitem AS (
  -- (pg_index is left out: creating, dropping, rebuilding or altering an index writes its
  -- pg_class row too)
  SELECT sp.oid AS nsp, sp.x FROM sp
  UNION ALL SELECT r.relnamespace, r.x FROM srel r
  UNION ALL
  SELECT r.relnamespace, a.xmin FROM srel r JOIN pg_attribute a ON a.attrelid = r.oid
   WHERE a.attnum > 0 AND r.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
  UNION ALL
  SELECT r.relnamespace, d.xmin FROM srel r JOIN pg_attrdef d ON d.adrelid = r.oid
  UNION ALL
  SELECT r.relnamespace, k.xmin FROM srel r JOIN pg_constraint k ON k.conrelid = r.oid
  UNION ALL
  SELECT r.relnamespace, q.xmin FROM srel r JOIN pg_sequence q ON q.seqrelid = r.oid
  UNION ALL
  SELECT r.relnamespace, t.xmin FROM srel r JOIN pg_trigger t ON t.tgrelid = r.oid
  UNION ALL
  SELECT r.relnamespace, w.xmin FROM srel r JOIN pg_rewrite w ON w.ev_class = r.oid
  UNION ALL
  SELECT r.relnamespace, y.xmin FROM srel r JOIN pg_policy y ON y.polrelid = r.oid
  UNION ALL
  SELECT p.pronamespace, p.xmin FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM sp)
  UNION ALL
  SELECT t.typnamespace, t.xmin FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM sp)
  UNION ALL
  SELECT t.typnamespace, e.xmin FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
   WHERE t.typnamespace IN (SELECT oid FROM sp)
  UNION ALL
  SELECT d.defaclnamespace, d.xmin FROM pg_default_acl d
   WHERE d.defaclnamespace IN (SELECT oid FROM sp)
), sfp AS (
  -- How many of the schema's catalog rows each transaction wrote: a clone writes them all in
  -- one transaction; any later DDL, GRANT or ALTER adds rows with a new transaction id or
  -- removes some (VACUUM and ANALYZE update rows in place, keeping their xmin).
  SELECT g.nsp, string_agg(g.x::text || '*' || g.n, ',' ORDER BY g.x::text) AS rows_by_xid
    FROM (SELECT nsp, x, count(*) AS n FROM sitem GROUP BY nsp, x) g
   GROUP BY g.nsp
)
-- A reserved schema is one row: that fingerprint, and the names of its tables whose heap file
-- is not empty (the only ones that can hold rows).
SELECT sp.nsp, 'reserved', '', sp.oid::bigint, 0, NULL::bigint, f.rows_by_xid,
       ARRAY(SELECT r.relname FROM srel r
              WHERE r.relnamespace = sp.oid AND r.relkind = 'r' AND pg_relation_size(r.oid) > 0)
  FROM sp JOIN sfp f ON f.nsp = sp.oid
UNION ALL
SELECT ns.nsp, 'schema', '', ns.oid::bigint, 0, NULL, NULL,
       ARRAY['owner', ns.nspowner::text,
             'privileges', array_to_string(ns.nspacl::text[], ',')]
  FROM ns
UNION ALL
SELECT r.nsp, @RELKIND@, r.relname, r.oid::bigint, 0,
       CASE WHEN r.relkind = 'r' THEN pg_relation_size(r.oid) END,
       concat_ws(':', r.oid, r.relkind,
                 CASE WHEN r.relkind IN ('v', 'm') THEN
                   (SELECT md5(w.ev_action::text) FROM pg_rewrite w
                     WHERE w.ev_class = r.oid AND w.rulename = '_RETURN') END),
       CASE WHEN r.relkind IN ('i', 'I') THEN
         CASE WHEN r.reloptions IS NOT NULL
              THEN ARRAY['options', array_to_string(r.reloptions, ', ')] END
       ELSE ARRAY[
         'owner', r.relowner::text,
         'privileges', array_to_string(r.relacl::text[], ','),
         'options', array_to_string(r.reloptions, ', '),
         'persistence', CASE r.relpersistence WHEN 'u' THEN 'unlogged' END,
         'row level security', CASE WHEN r.relrowsecurity OR r.relforcerowsecurity THEN
           concat_ws(', ', CASE WHEN r.relrowsecurity THEN 'enabled' ELSE 'disabled' END,
                     CASE WHEN r.relforcerowsecurity THEN 'forced' END) END,
         'parameters', CASE WHEN r.relkind = 'S' THEN
           (SELECT format('as %%s, increment %%s, minvalue %%s, maxvalue %%s, start %%s, '
                          'cache %%s, %%s', format_type(s.seqtypid, NULL), s.seqincrement,
                          s.seqmin, s.seqmax, s.seqstart, s.seqcache,
                          CASE WHEN s.seqcycle THEN 'cycle' ELSE 'no cycle' END)
              FROM pg_sequence s WHERE s.seqrelid = r.oid) END]
       END
  FROM rel r
UNION ALL
SELECT r.nsp, 'column', r.relname || '.' || t.attname, r.oid::bigint, t.attnum::int, NULL,
       concat_ws(':', t.attnum, t.atttypid, t.atttypmod, t.attnotnull, t.attidentity,
                 t.attgenerated,
                 t.attcollation, d.oid),
       CASE WHEN t.attacl IS NOT NULL
            THEN ARRAY['privileges', array_to_string(t.attacl::text[], ',')] END
  FROM rel r
  JOIN pg_attribute t ON t.attrelid = r.oid AND t.attnum > 0 AND NOT t.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = t.attrelid AND d.adnum = t.attnum
 WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
UNION ALL
SELECT r.nsp, 'constraint', r.relname || '.' || k.conname, k.oid::bigint, 0, NULL,
       concat_ws(':', k.oid, k.condeferrable, k.condeferred, k.convalidated), NULL
  FROM rel r JOIN pg_constraint k ON k.conrelid = r.oid
UNION ALL
SELECT r.nsp, 'trigger',
       r.relname || '.' || t.tgname
       || coalesce(' (internal, of constraint ' || k.conname || ')', ''),
       t.oid::bigint, 0, NULL,
       CASE WHEN NOT t.tgisinternal
            THEN t.oid || ':' || md5((to_jsonb(t) - 'tgenabled')::text) END,
       CASE WHEN t.tgenabled <> 'O' THEN ARRAY['state', t.tgenabled::text] END
  FROM rel r JOIN pg_trigger t ON t.tgrelid = r.oid
  LEFT JOIN pg_constraint k ON t.tgisinternal AND k.oid = t.tgconstraint
 WHERE NOT t.tgisinternal OR t.tgenabled <> 'O'
UNION ALL
SELECT r.nsp, 'rule', r.relname || '.' || w.rulename, w.oid::bigint, 0, NULL,
       w.oid || ':' || md5((to_jsonb(w) - 'ev_enabled')::text),
       CASE WHEN w.ev_enabled <> 'O' THEN ARRAY['state', w.ev_enabled::text] END
  FROM rel r JOIN pg_rewrite w ON w.ev_class = r.oid AND w.rulename <> '_RETURN'
UNION ALL
SELECT r.nsp, 'policy', r.relname || '.' || y.polname, y.oid::bigint, 0, NULL,
       y.oid || ':' || md5(y::text), NULL
  FROM rel r JOIN pg_policy y ON y.polrelid = r.oid
UNION ALL
SELECT ns.nsp, CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                              ELSE 'function' END,
       p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       p.oid::bigint, 0, NULL,
       p.oid || ':' || md5((to_jsonb(p) - ARRAY['proowner', 'proacl', 'proconfig',
             'prosecdef', 'proleakproof', 'provolatile', 'proisstrict', 'proparallel',
             'procost', 'prorows'])::text),
       ARRAY['owner', p.proowner::text,
             'privileges', array_to_string(p.proacl::text[], ','),
             'settings', array_to_string(p.proconfig, ', '),
             'security', CASE WHEN p.prosecdef THEN 'definer' END,
             'leakproof', CASE WHEN p.proleakproof THEN 'yes' END,
             'volatility', CASE p.provolatile WHEN 'i' THEN 'immutable'
                                              WHEN 's' THEN 'stable' END,
             'strict', CASE WHEN p.proisstrict THEN 'yes' END,
             'parallel', CASE p.proparallel WHEN 's' THEN 'safe'
                                            WHEN 'r' THEN 'restricted' END,
             'cost', p.procost::text,
             'rows', nullif(p.prorows, 0)::text]
  FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
UNION ALL
SELECT ns.nsp, 'type', t.typname::text, t.oid::bigint, 0, NULL,
       concat_ws(':', t.oid, md5(concat_ws(':', t.typbasetype, t.typtypmod, t.typnotnull,
                 t.typdefaultbin::text,
                 (SELECT string_agg(e.enumlabel::text, ',' ORDER BY e.enumsortorder)
                    FROM pg_enum e WHERE e.enumtypid = t.oid),
                 (SELECT string_agg(k.oid || ':' || md5(k::text), ',' ORDER BY k.oid)
                    FROM pg_constraint k WHERE k.contypid = t.oid)))),
       ARRAY['owner', t.typowner::text,
             'privileges', array_to_string(t.typacl::text[], ',')]
  FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
 WHERE t.typrelid = 0 AND t.typtype <> 'm' AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
UNION ALL
SELECT coalesce(ns.nsp, ''), 'default privileges',
       'for ' || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                 WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas'
                 ELSE d.defaclobjtype::text END
       || ' created by ' || pg_get_userbyid(d.defaclrole),
       d.oid::bigint, 0, NULL, NULL,
       ARRAY['privileges', array_to_string(d.defaclacl::text[], ','),
             '#role', d.defaclrole::text, '#object type', d.defaclobjtype::text]
  FROM pg_default_acl d LEFT JOIN ns ON ns.oid = d.defaclnamespace
 WHERE d.defaclnamespace = 0 OR ns.oid IS NOT NULL
UNION ALL
SELECT '', 'settings',
       concat_ws(' ', 'for', CASE WHEN s.setrole <> 0
                                  THEN 'role ' || pg_get_userbyid(s.setrole) END,
                 CASE WHEN s.setdatabase <> 0 THEN 'in this database' END),
       0, 0, NULL, NULL, ARRAY['settings', array_to_string(s.setconfig, ', ')]
  FROM pg_db_role_setting s
 -- Settings that reach connections to this database as this role: the role's own (in any
 -- database or in this one) and this database's (settings of other roles and databases are
 -- other people's business, and may change while the block runs).
 WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
   AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user))
"""

_PLACES = _PLACES.replace("@NON_SYSTEM@", _NON_SYSTEM).replace("@RELKIND@", _RELKIND)
_OBJECTS = _OBJECTS.replace("@RELKIND@", _RELKIND.replace("c.relkind", "r.relkind"))

# Definitions of the objects found new or changed (only when something was): by catalog.
_DETAILS = """
SELECT 'rel', c.oid::bigint, 0,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid)
            WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid) END
  FROM pg_class c WHERE c.oid = ANY(%(rel)s)
UNION ALL
SELECT 'column', t.attrelid::bigint, t.attnum::int,
       format_type(t.atttypid, t.atttypmod)
       || CASE WHEN t.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute t
  LEFT JOIN pg_attrdef d ON d.adrelid = t.attrelid AND d.adnum = t.attnum
 WHERE (t.attrelid, t.attnum) IN (SELECT * FROM unnest(%(col_rel)s::oid[], %(col_num)s::int2[]))
UNION ALL
SELECT 'constraint', k.oid::bigint, 0, pg_get_constraintdef(k.oid)
  FROM pg_constraint k WHERE k.oid = ANY(%(constraint)s)
UNION ALL
SELECT 'trigger', t.oid::bigint, 0, pg_get_triggerdef(t.oid)
  FROM pg_trigger t WHERE t.oid = ANY(%(trigger)s)
UNION ALL
SELECT 'rule', w.oid::bigint, 0, pg_get_ruledef(w.oid)
  FROM pg_rewrite w WHERE w.oid = ANY(%(rule)s)
UNION ALL
SELECT 'policy', y.oid::bigint, 0,
       CASE WHEN y.polpermissive THEN 'permissive' ELSE 'restrictive' END || ' for '
       || CASE y.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                        WHEN 'd' THEN 'DELETE' ELSE 'ALL' END
       || ' to ' || (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC'
                                            ELSE pg_get_userbyid(r)::text END, ', ')
                       FROM unnest(y.polroles) r)
       || coalesce(' using (' || pg_get_expr(y.polqual, y.polrelid) || ')', '')
       || coalesce(' with check (' || pg_get_expr(y.polwithcheck, y.polrelid) || ')', '')
  FROM pg_policy y WHERE y.oid = ANY(%(policy)s)
UNION ALL
SELECT 'function', p.oid::bigint, 0,
       'returns ' || pg_get_function_result(p.oid) || ', language ' || l.lanname
       || coalesce(': ' || nullif(left(regexp_replace(btrim(p.prosrc), '\\s+', ' ', 'g'), 120),
                                  ''), '')
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = ANY(%(function)s)
UNION ALL
SELECT 'type', t.oid::bigint, 0,
       CASE t.typtype
         WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', '
                                                      ORDER BY e.enumsortorder)
                                      FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
         WHEN 'd' THEN 'domain over ' || format_type(t.typbasetype, t.typtypmod)
         WHEN 'r' THEN 'range type' ELSE 'base type' END
  FROM pg_type t WHERE t.oid = ANY(%(type)s)
"""

# Which catalog describes each kind of object (the key of its oid list in _DETAILS).
_DETAIL_SOURCE = {
    "column": "column",
    "constraint": "constraint",
    "trigger": "trigger",
    "rule": "rule",
    "policy": "policy",
    "function": "function",
    "procedure": "function",
    "aggregate": "function",
    "type": "type",
}


def _params(
    covered: Sequence[str], *, spare: str | None = None, template: str | None = None
) -> dict[str, Any]:
    return {"covered": list(covered), "spare": spare, "template": template}


def take_snapshot(
    conn: psycopg.Connection[Any],
    schemas: Iterable[str],
    *,
    shared_schema: str = "public",
    reserved: bool = True,
    since: IsolationSnapshot | None = None,
) -> IsolationSnapshot:
    """Snapshot the tenant ``schemas`` and, with ``reserved``, the template and spare schemas.

    Three round trips whatever the number of schemas; the third reads only the tables that can
    hold rows, and the tenants' sequences. With ``since`` (an earlier snapshot of the same
    schemas), what is new or changed since is described: more queries, run only when there is
    something to describe. On an autocommit connection the reads share one repeatable-read
    snapshot.
    """
    names = tuple(sorted(set(schemas)))
    for attempt in (1, 2):
        try:
            with _reading(conn):
                return _take(conn, names, shared_schema, reserved, since)
        except psycopg.errors.UndefinedTable:
            # A spare was claimed (renamed) between listing and reading it: read again, once,
            # in a new transaction (only possible when we own the transaction).
            if attempt == 2 or not conn.autocommit:
                raise
        except psycopg.errors.InsufficientPrivilege as exc:
            if "row-level security" not in str(exc):
                raise
            params = _params(names, spare=SPARE_PREFIX if reserved else None)
            params["template"] = template_schema_name(shared_schema) if reserved else None
            raise IsolationUnverifiable(_hidden_by_row_security(conn, params, exc)) from exc
    raise AssertionError("unreachable")  # pragma: no cover


# The tables of the covered, template and spare schemas whose row-level security applies to
# the current role: enabled, and forced or not owned (directly or through a role it inherits),
# for a role that is neither a superuser nor BYPASSRLS.
_ROW_SECURITY = sql.SQL("""
SELECT n.nspname, c.relname, current_user::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {applies}
   AND (n.nspname = ANY(%(covered)s) OR n.nspname = %(template)s
        OR left(n.nspname, length(%(spare)s)) = %(spare)s)
 ORDER BY 1, 2
""").format(applies=ROW_SECURITY_APPLIES)


def _hidden_by_row_security(
    conn: psycopg.Connection[Any], params: dict[str, Any], exc: psycopg.Error
) -> list[str]:
    """One line per table row-level security hides rows of (PostgreSQL refused to read it
    with ``row_security = off``), or PostgreSQL's own message when the catalog cannot be
    asked (the caller's transaction is aborted)."""
    advice = (
        "its rows cannot all be read, so a change there could go unseen; take snapshots as a "
        "superuser or a role with BYPASSRLS"
    )
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        rows = conn.execute(_ROW_SECURITY, params).fetchall()
        if rows:
            return [
                f"table {schema}.{table}: row-level security applies to role {role} "
                f"(forced, or a table it does not own); {advice}"
                for schema, table, role in rows
            ]
    return [f"{exc.diag.message_primary} (row_security = off); {advice}"]


def _take(
    conn: psycopg.Connection[Any],
    names: tuple[str, ...],
    shared_schema: str,
    reserved: bool,
    since: IsolationSnapshot | None,
) -> IsolationSnapshot:
    snap = IsolationSnapshot(
        schemas=names,
        shared_schema=shared_schema,
        include_reserved=reserved,
        server_version=conn.info.server_version,
    )
    params = _params(
        names,
        spare=SPARE_PREFIX if reserved else None,
        template=snap.template if reserved else None,
    )
    for name, oid, relname, kind in conn.execute(_PLACES, params).fetchall():
        if kind == "role":
            snap.roles[int(oid)] = name
        elif relname is None:
            snap.namespaces[name] = int(oid)
        else:
            snap.relations.setdefault(name, {})[relname] = kind
    to_read = _read_objects(conn, snap, params)
    _read_contents(conn, snap, to_read)
    if since is not None:
        _describe_changes(conn, snap, since)
        _describe_reserved(conn, snap, since)
    return snap


def _read_objects(
    conn: psycopg.Connection[Any], snap: IsolationSnapshot, params: dict[str, Any]
) -> list[tuple[str, str, str]]:
    """Run :data:`_OBJECTS` into ``snap``; return what the contents query must read."""
    to_read: list[tuple[str, str, str]] = []  # (schema, name, "table" | "sequence")
    for schema, kind, name, oid, sub, size, token, attributes in conn.execute(
        _OBJECTS, params
    ).fetchall():
        if kind == "reserved":
            snap.reserved[schema] = token
            to_read += [(schema, table, "table") for table in attributes]
            continue
        attrs: dict[str, str] = {}
        if token is not None:
            attrs[TOKEN] = token
            snap.locators[(schema, kind, name)] = (int(oid), int(sub))
        if attributes:
            pairs = iter(attributes)
            attrs.update((k, v) for k, v in zip(pairs, pairs, strict=True) if v is not None)
        snap.objects.setdefault(schema, {})[(kind, name)] = attrs
        if kind == "sequence":
            to_read.append((schema, name, kind))
        elif kind == "partitioned table" or (kind == "table" and size):
            to_read.append((schema, name, "table"))
        elif kind == "table":
            snap.tables[(schema, name)] = EMPTY_TABLE  # an empty heap file: no row at all
    return to_read


def _read_contents(
    conn: psycopg.Connection[Any], snap: IsolationSnapshot, to_read: Sequence[tuple[str, str, str]]
) -> None:
    """Row fingerprints of the tables and states of the sequences in ``to_read``, in one
    round trip."""
    if not to_read:
        return
    parts = []
    for schema, name, kind in to_read:
        names = {
            "s": sql.Literal(schema),
            "t": sql.Literal(name),
            "i": sql.Identifier(schema, name),
        }
        if kind == "sequence":
            # Read from the sequence itself: pg_sequences shows no last_value before the
            # first nextval, so setval(seq, n, false) there would go unseen.
            query = (
                "SELECT {s}::text, {t}::text, last_value::numeric, is_called::text,"
                " NULL::text[] FROM {i}"
            )
        else:
            query = (
                "SELECT {s}::text, {t}::text, count(*)::numeric,"
                " coalesce(sum(hashtextextended(x::text, 0)::numeric), 0)::text,"
                " (SELECT array_agg(y::text) FROM (SELECT y FROM {i} y LIMIT {n}) q)"
                " FROM {i} x"
            )
        parts.append(sql.SQL(query).format(n=sql.Literal(SAMPLE_ROWS + 1), **names))
    kinds = {(schema, name): kind for schema, name, kind in to_read}
    for schema, name, number, digest, sample in _union_all(conn, parts):
        if kinds[(schema, name)] == "sequence":
            snap.sequences[(schema, name)] = (int(number), digest == "true")
            continue
        count = int(number)
        sampled = tuple(sorted(sample or ())) if count <= SAMPLE_ROWS else None
        snap.tables[(schema, name)] = TableState(count, str(digest), sampled)


def _describe_changes(
    conn: psycopg.Connection[Any], snap: IsolationSnapshot, since: IsolationSnapshot
) -> None:
    """Fill ``snap.details`` for the objects new or changed since ``since`` (in the schemas
    both cover) and ``snap.new_rows`` for the tables that appeared in schemas not covered."""
    wanted: dict[str, list[int]] = {k: [] for k in (*_DETAIL_SOURCE.values(), "rel")}
    columns: tuple[list[int], list[int]] = ([], [])
    for schema in ("", *since.schemas):
        old_objects = since.objects.get(schema, {})
        for key, attrs in snap.objects.get(schema, {}).items():
            token = attrs.get(TOKEN)
            if token is None or token == old_objects.get(key, {}).get(TOKEN):
                continue
            oid, sub = snap.locators[(schema, *key)]
            source = _DETAIL_SOURCE.get(key[0], "rel")
            if source == "column":
                columns[0].append(oid)
                columns[1].append(sub)
            else:
                wanted[source].append(oid)
    if columns[0] or any(wanted.values()):
        params = {**wanted, "col_rel": columns[0], "col_num": columns[1]}
        found = {
            (str(src), int(oid), int(sub)): str(text)
            for src, oid, sub, text in conn.execute(_DETAILS, params).fetchall()
            if text is not None
        }
        for (schema, kind, name), (oid, sub) in snap.locators.items():
            text = found.get((_DETAIL_SOURCE.get(kind, "rel"), oid, sub))
            if text is not None:
                snap.details[(schema, kind, name)] = text
    counted = [
        (schema, name)
        for schema, rels in snap.relations.items()
        for name, kind in rels.items()
        if kind in TABLE_KINDS and name not in since.relations.get(schema, {})
    ]
    parts = [
        sql.SQL("SELECT {}::text, {}::text, count(*) FROM {}").format(
            sql.Literal(s), sql.Literal(t), sql.Identifier(s, t)
        )
        for s, t in counted
    ]
    for schema, table, count in _union_all(conn, parts):
        snap.new_rows[(schema, table)] = int(count)


#: Branches per UNION ALL statement: planning one statement grows faster than linearly with
#: its branches (2,000 sequences: 0.8 s as one statement, 46 ms in statements of 50).
_UNION_CHUNK = 50


def _union_all(conn: psycopg.Connection[Any], parts: Sequence[sql.Composable]) -> list[Any]:
    """The rows of the ``parts`` (queries of the same shape), in statements of
    :data:`_UNION_CHUNK` branches sent together in one pipeline: one round trip."""
    if not parts:
        return []
    statements = [
        sql.SQL(" UNION ALL ").join(parts[i : i + _UNION_CHUNK])
        for i in range(0, len(parts), _UNION_CHUNK)
    ]
    if len(statements) == 1:
        return conn.execute(statements[0]).fetchall()
    with conn.pipeline():
        cursors = [conn.execute(statement) for statement in statements]
    return [row for cursor in cursors for row in cursor.fetchall()]


#: Object kinds of this module -> the kind of key :meth:`SchemaCatalog.objects` uses.
_CATALOG_KIND = {
    "table": "table",
    "partitioned table": "table",
    "column": "column",
    "constraint": "constraint",
    "index": "index",
    "sequence": "sequence",
    "view": "view",
    "materialized view": "view",
    "function": "function",
    "procedure": "function",
    "aggregate": "function",
    "trigger": "trigger",
    "type": "type",
}


def _describe_reserved(
    conn: psycopg.Connection[Any], snap: IsolationSnapshot, since: IsolationSnapshot
) -> None:
    """For the reserved schemas whose fingerprint changed since ``since``, record their objects
    and those of an unchanged sibling (the template, else a spare) in ``snap.reserved_views``.

    Tokens hold object ids, which differ between two copies of a schema: here they are replaced by
    the definitions :func:`tenantkit.introspection.catalog.read_catalog` normalises for comparing
    schemas (objects it does not read, rules and policies, compare by name and attributes).
    """
    changed = sorted(s for s, fp in snap.reserved.items() if since.reserved.get(s, fp) != fp)
    if not changed:
        return
    from tenantkit.introspection.catalog import read_catalog

    unchanged = sorted(
        (s != snap.template, s)
        for s, fp in snap.reserved.items()
        if s not in changed and since.reserved.get(s) == fp
    )
    snap.reference = unchanged[0][1] if unchanged else ""
    schemas = [*changed, *([snap.reference] if snap.reference else [])]
    full = IsolationSnapshot(schemas=tuple(schemas), shared_schema=snap.shared_schema)
    _read_objects(conn, full, _params(schemas))
    catalogs = read_catalog(conn, schemas)
    for schema in schemas:
        definitions = catalogs[schema].objects()
        view: dict[ObjectKey, dict[str, str]] = {}
        for (kind, name), attrs in full.objects.get(schema, {}).items():
            attrs = dict(attrs)
            if TOKEN in attrs:
                # (normalised: the schema's own name is PLACEHOLDER in both)
                key = f"{_CATALOG_KIND.get(kind, kind)} {name}"
                attrs[TOKEN] = definitions.get(key, "present")
            view[(kind, name)] = attrs
        snap.reserved_views[schema] = view


@contextlib.contextmanager
def _reading(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Run the reads in one repeatable-read snapshot when the connection allows it, and with
    ``row_security = off`` (a read that row-level security would filter fails instead); in
    the caller's transaction the setting is put back afterwards."""
    if conn.autocommit and not conn.info.transaction_status:
        with conn.transaction():
            conn.execute(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;"
                " SET LOCAL row_security = off"
            )
            yield
        return
    with unfiltered(conn):
        yield


@contextlib.contextmanager
def unfiltered(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """``row_security = off`` in the current transaction (a read that row-level security
    would filter fails with ``InsufficientPrivilege`` instead), put back afterwards."""
    row = conn.execute(
        "SELECT current_setting('row_security'), set_config('row_security', 'off', true)"
    ).fetchone()
    try:
        yield
    finally:
        # (In an aborted transaction the rollback puts it back.)
        if row is not None and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.execute("SELECT set_config('row_security', %s, true)", (row[0],))
