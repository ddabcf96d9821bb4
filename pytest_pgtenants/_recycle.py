"""Recycling test tenants into the spare pool, so a suite pays for very few schema clones.

A spare costs a clone of the template schema (tens of milliseconds of server time for 20
tables). Claiming one is a rename; but with one fresh tenant per test, every claimed spare had
to be rebuilt in the background, and that work competed with the tests themselves. Instead,
after a test its tenant is checked and reset:

* its *structure* must be untouched: the catalog rows of the schema (relations, columns,
  defaults, functions, types, constraints, triggers, rules, policies) still carry the
  transaction ids (``xmin``) they had when the spare was built. Any DDL writes new catalog
  rows, so the fingerprint changes and the schema is thrown away instead. (Vacuum and analyze
  update ``pg_class`` in place, keeping ``xmin``, so they do not count as changes.)
* its *data* is reset: rows the schema held when it was built (the migrations' own seed rows,
  the history tables of tenantkit, Alembic or Django) must be exactly those rows still: the
  same tuples, found by ``ctid`` and ``xmin``, so any insert, update or delete in such a table
  throws the schema away. Other tables whose heap file is not empty (found with a catalog
  query) are emptied with ``DELETE`` under ``session_replication_role = replica``, so
  foreign-key order does not matter (this needs a superuser; otherwise it is thrown away);
  sequences that moved are put back where they were when the schema was built, with
  ``setval``.

Rows are read with ``row_security = off``: where row-level security hides rows from the
plugin's role, the schema is not recycled (the check cannot see what a test left).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg
from psycopg import sql

from tenantkit.core.storage import HISTORY_TABLE

from ._snapshot import _union_all, unfiltered

if TYPE_CHECKING:
    from tenantkit.provisioning import Spares

__all__ = ["TRACKING_TABLE", "Baseline", "fingerprints", "recycle"]

#: The per-schema migrations history table (its rows must stay: they say the schema is migrated).
TRACKING_TABLE = HISTORY_TABLE

# One pass over the schema's pg_class rows (materialised), then index lookups by relation oid;
# only pg_proc and pg_type are scanned by namespace. Besides the fingerprint it returns the
# tables that may hold rows (a non-empty heap file) and the sequences with their positions
# (pg_sequence_last_value: NULL before the first nextval), for the reset.
_STATE = """
SELECT n.nspname, n.oid::bigint, f.fingerprint, f.used, f.sequences, f.positions
  FROM pg_namespace n
 CROSS JOIN LATERAL (
   WITH rel AS MATERIALIZED (
     SELECT c.oid, c.relname, c.relkind, c.xmin::text AS x FROM pg_class c
      WHERE c.relnamespace = n.oid
   )
   SELECT md5(concat_ws('|',
            (SELECT string_agg(oid || ':' || x, ',' ORDER BY oid) FROM rel),
            (SELECT string_agg(a.attrelid || '.' || a.attnum || ':' || a.xmin::text, ','
                               ORDER BY a.attrelid, a.attnum)
               FROM pg_attribute a WHERE a.attrelid = ANY(ARRAY(SELECT oid FROM rel))),
            (SELECT string_agg(d.oid || ':' || d.xmin::text, ',' ORDER BY d.oid)
               FROM pg_attrdef d WHERE d.adrelid = ANY(ARRAY(SELECT oid FROM rel))),
            (SELECT string_agg(g.oid || ':' || g.xmin::text, ',' ORDER BY g.oid)
               FROM pg_trigger g WHERE g.tgrelid = ANY(ARRAY(SELECT oid FROM rel))),
            (SELECT string_agg(k.oid || ':' || k.xmin::text, ',' ORDER BY k.oid)
               FROM pg_constraint k WHERE k.conrelid = ANY(ARRAY(SELECT oid FROM rel))),
            (SELECT string_agg(r.oid || ':' || r.xmin::text, ',' ORDER BY r.oid)
               FROM pg_rewrite r WHERE r.ev_class = ANY(ARRAY(SELECT oid FROM rel))),
            (SELECT string_agg(y.oid || ':' || y.xmin::text, ',' ORDER BY y.oid)
               FROM pg_policy y WHERE y.polrelid = ANY(ARRAY(SELECT oid FROM rel))),
            (SELECT string_agg(p.oid || ':' || p.xmin::text, ',' ORDER BY p.oid)
               FROM pg_proc p WHERE p.pronamespace = n.oid),
            (SELECT string_agg(t.oid || ':' || t.xmin::text, ',' ORDER BY t.oid)
               FROM pg_type t WHERE t.typnamespace = n.oid AND t.typrelid = 0)
          )) AS fingerprint,
          array(SELECT relname::text FROM rel
                 WHERE relkind = 'r' AND pg_relation_size(oid) > 0) AS used,
          array(SELECT oid::bigint FROM rel WHERE relkind = 'S' ORDER BY oid) AS sequences,
          array(SELECT pg_sequence_last_value(oid) FROM rel WHERE relkind = 'S' ORDER BY oid)
            AS positions
 ) f
 WHERE n.nspname = ANY(%(names)s)
"""

# Back to where the sequence stood when the schema was built: never called (NULL: the start,
# not called), or called with that last value.
_RESET_SEQUENCES = """
SELECT count(setval(s.seqrelid, coalesce(b.pos, s.seqstart), b.pos IS NOT NULL))
  FROM pg_sequence s JOIN unnest({oids}::oid[], {positions}::bigint[]) AS b(oid, pos)
    ON s.seqrelid = b.oid
"""

# The tuples a table holds, by where they are and which transaction wrote them: an insert, an
# update (a new tuple) or a delete of a committed row changes it; a rolled-back one does not.
_TUPLES = (
    "SELECT {s}::text, {t}::text, md5(coalesce(string_agg(ctid::text || ':' || xmin::text,"
    " ',' ORDER BY ctid), '')) FROM {i}"
)


class Baseline(NamedTuple):
    """A schema as it was built, for :func:`recycle`."""

    #: Catalog fingerprint (see the module's docstring).
    fingerprint: str
    #: The tables that held rows, and the digest of their tuples (see ``_TUPLES``).
    rows: dict[str, str]
    #: Each sequence's ``pg_sequence_last_value`` (None before the first ``nextval``), by oid.
    sequences: dict[int, int | None]


def _tuples(conn: psycopg.Connection[Any], tables: Iterable[tuple[str, str]]) -> dict[Any, str]:
    """The digest of each (schema, table)'s tuples, in one round trip."""
    parts = [
        sql.SQL(_TUPLES).format(
            s=sql.Literal(schema), t=sql.Literal(table), i=sql.Identifier(schema, table)
        )
        for schema, table in tables
    ]
    return {(str(s), str(t)): str(d) for s, t, d in _union_all(conn, parts)}


def _unfiltered_tuples(
    conn: psycopg.Connection[Any], tables: Iterable[tuple[str, Iterable[str]]]
) -> dict[Any, str] | None:
    """:func:`_tuples` of each (schema, its tables) with ``row_security = off``; None when
    row-level security hides rows of one of them from the connection's role."""
    pairs = [(schema, t) for schema, used in tables for t in used]
    if not pairs:
        return {}
    try:
        # A savepoint inside the caller's transaction (a spare being built), else its own.
        with conn.transaction(), unfiltered(conn):
            return _tuples(conn, pairs)
    except psycopg.errors.InsufficientPrivilege:
        return None


def fingerprints(conn: psycopg.Connection[Any], schemas: Iterable[str]) -> dict[int, Baseline]:
    """How each schema is now, by namespace oid (renames keep the oid): the schemas are
    taken to be pristine.

    A schema holding rows that row-level security hides from the connection's role gets no
    baseline (it is never recycled): its digest would cover only the rows the policies show,
    and a row a test added out of their sight would stay for the next test.
    """
    rows = conn.execute(_STATE, {"names": list(schemas)}).fetchall()
    digests = _unfiltered_tuples(conn, [(row[0], row[3]) for row in rows])
    if digests is None:  # hidden rows somewhere: schema by schema, leaving those out
        digests = {}
        for name, _o, _f, used, _s, _p in rows:
            digests.update(_unfiltered_tuples(conn, [(name, used)]) or {})
        rows = [row for row in rows if all((row[0], t) in digests for t in row[3])]
    return {
        int(oid): Baseline(
            str(fp),
            {str(t): digests[(name, t)] for t in used},
            {int(o): None if p is None else int(p) for o, p in zip(seqs, positions, strict=True)},
        )
        for name, oid, fp, used, seqs, positions in rows
    }


def recycle(
    conn: psycopg.Connection[Any],
    spares: Spares,
    holding: str,
    nsp_oid: int,
    baseline: Baseline | None,
) -> bool:
    """Reset ``holding`` and return it to the spare pool; False (nothing done) when unsafe.

    Runs in one transaction on ``conn`` (autocommit); on any error nothing changes.
    """
    if baseline is None:
        return False
    try:
        with conn.transaction():
            # A read row-level security would filter fails instead (see fingerprints).
            conn.execute("SET LOCAL row_security = off")
            row = conn.execute(_STATE, {"names": [holding]}).fetchone()
            if row is None or int(row[1]) != nsp_oid or row[2] != baseline.fingerprint:
                return False
            if baseline.rows:
                kept = _tuples(conn, [(holding, table) for table in baseline.rows])
                if any(kept[(holding, t)] != d for t, d in baseline.rows.items()):
                    return False
            used = [table for table in row[3] if table not in baseline.rows]
            moved = {
                oid: position
                for oid, now in zip(row[4], row[5], strict=True)
                if (position := baseline.sequences.get(int(oid), now)) != now
            }
            # The reset in one round trip (the janitor competes with the tests for the same
            # two cores, so fewer messages matter), then the adoption in another.
            statements: list[sql.Composable] = []
            if used:
                # FK order does not matter with triggers off; needs a superuser.
                statements.append(sql.SQL("SET LOCAL session_replication_role = replica"))
                statements.extend(
                    sql.SQL("DELETE FROM {}").format(sql.Identifier(holding, t)) for t in used
                )
            if moved:
                statements.append(
                    sql.SQL(_RESET_SEQUENCES).format(
                        oids=sql.Literal("{" + ",".join(str(o) for o in moved) + "}"),
                        positions=sql.Literal(
                            "{"
                            + ",".join("NULL" if p is None else str(p) for p in moved.values())
                            + "}"
                        ),
                    )
                )
            if statements:
                conn.execute(sql.SQL("; ").join(statements))
            spares.adopt(holding, conn)
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True
