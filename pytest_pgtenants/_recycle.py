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
* its *data* is deleted: only tables whose heap file is not empty can hold rows, found with a
  catalog query, and emptied with ``DELETE`` under ``session_replication_role = replica`` so
  foreign-key order does not matter (this needs a superuser; otherwise it is thrown away);
  identity and serial sequences that were used are reset with ``setval``.

A schema whose tables had rows when it was built (seed data in a tenant migration) is never
recycled, since deleting would lose the seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from tenantkit.core.storage import HISTORY_TABLE

if TYPE_CHECKING:
    from tenantkit.provisioning import Spares

__all__ = ["TRACKING_TABLE", "fingerprints", "recycle"]

#: The per-schema migrations history table (its rows must stay: they say the schema is migrated).
TRACKING_TABLE = HISTORY_TABLE

# One pass over the schema's pg_class rows (materialised), then index lookups by relation oid;
# only pg_proc and pg_type are scanned by namespace. Besides the fingerprint it returns the
# tables that may hold rows (a non-empty heap file) and the sequences, for the reset.
_STATE = """
SELECT n.nspname, n.oid::bigint, f.fingerprint, f.used, f.sequences
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
                 WHERE relkind = 'r' AND relname <> %(tracking)s
                   AND pg_relation_size(oid) > 0) AS used,
          array(SELECT oid::bigint FROM rel WHERE relkind = 'S') AS sequences
 ) f
 WHERE n.nspname = ANY(%(names)s)
"""

_RESET_SEQUENCES = """
SELECT count(setval(s.seqrelid, s.seqstart, false))
  FROM pg_sequence s
 WHERE s.seqrelid = ANY({oids}::oid[]) AND pg_sequence_last_value(s.seqrelid) IS NOT NULL
"""

Baseline = tuple[str, bool]  # (catalog fingerprint, had rows when built)


def fingerprints(conn: psycopg.Connection[Any], schemas: Iterable[str]) -> dict[int, Baseline]:
    """Fingerprint of each schema, by namespace oid (renames keep the oid)."""
    rows = conn.execute(_STATE, {"names": list(schemas), "tracking": TRACKING_TABLE}).fetchall()
    return {int(oid): (str(fp), bool(used)) for _name, oid, fp, used, _seqs in rows}


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
    if baseline is None or baseline[1]:
        return False
    try:
        with conn.transaction():
            row = conn.execute(_STATE, {"names": [holding], "tracking": TRACKING_TABLE}).fetchone()
            if row is None or int(row[1]) != nsp_oid or row[2] != baseline[0]:
                return False
            used: list[str] = list(row[3])
            # The reset in one round trip (the janitor competes with the tests for the same
            # two cores, so fewer messages matter), then the adoption in another.
            statements: list[sql.Composable] = []
            if used:
                # FK order does not matter with triggers off; needs a superuser.
                statements.append(sql.SQL("SET LOCAL session_replication_role = replica"))
                statements.extend(
                    sql.SQL("DELETE FROM {}").format(sql.Identifier(holding, t)) for t in used
                )
            if row[4]:
                statements.append(
                    sql.SQL(_RESET_SEQUENCES).format(
                        oids=sql.Literal("{" + ",".join(str(o) for o in row[4]) + "}")
                    )
                )
            if statements:
                conn.execute(sql.SQL("; ").join(statements))
            spares.adopt(holding, conn)
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True
