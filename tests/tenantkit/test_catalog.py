"""Fingerprints and drift: a hand-made change shows up as exactly that difference."""

# Fixtures come from _migrations_support (imported by name, so pytest sees them).
# ruff: noqa: F811

from __future__ import annotations

import psycopg
from _migrations_support import mig_dir, mig_tenancy, shared_name  # noqa: F401 (fixtures)
from hypothesis import assume, given
from hypothesis import strategies as st

from tenantkit.core.tenancy import Tenancy
from tenantkit.introspection.catalog import Difference, diff_objects, rewrite_schema, schema_sizes


def test_rewrite_schema_only_touches_qualified_references() -> None:
    text = "nextval('acme.s'::regclass) + acme.f(x) + xacme.g() + \"acme\".t + acme"
    assert (
        rewrite_schema(text, "acme", "@")
        == "nextval('@.s'::regclass) + @.f(x) + xacme.g() + @.t + acme"
    )


def test_diff_objects() -> None:
    diff = diff_objects({"a": "1", "b": "2"}, {"b": "3", "c": "4"})
    assert [(d.object, d.change) for d in diff] == [
        ("a", "missing"),
        ("b", "changed"),
        ("c", "extra"),
    ]
    assert str(Difference("b", "2", "3")) == "b: 3 (expected 2)"


def test_drift_reports_exactly_the_change(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    names = [mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_{i}").schema for i in range(4)]
    assert mig_tenancy.drift().ok
    conn.execute(f'alter table "{names[1]}".items add column extra int default 7')
    conn.execute(f'drop index "{names[3]}".items_name_idx')
    conn.execute(f'alter table "{names[3]}".orders alter column created drop default')
    report = mig_tenancy.drift()
    assert report.checked == 4
    assert {d.schema: [(x.object, x.change) for x in d.differences] for d in report.drifted} == {
        names[1]: [("column items.extra", "extra")],
        names[3]: [("column orders.created", "changed"), ("index items_name_idx", "missing")],
    }
    extra = report.drifted[0].differences[0]
    assert extra.actual == "integer default 7"
    only = mig_tenancy.drift(schemas=[names[0], names[1]])
    assert [d.schema for d in only.drifted] == [names[1]]
    assert report.as_dict()["drifted"][0]["schema"] == names[1]


def test_drift_reports_privileges(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    """A tenant whose access lists differ from the template's drifts: a table opened to
    PUBLIC, a column grant, PUBLIC's EXECUTE revoked, a grant on the schema itself."""
    names = [mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_{i}").schema for i in range(3)]
    assert mig_tenancy.drift().ok
    conn.execute(f'grant select on "{names[1]}".items to public')
    conn.execute(f'grant update (name) on "{names[1]}".items to public')
    conn.execute(f'grant usage on schema "{names[2]}" to public')
    conn.execute(f'revoke all on "{names[2]}".orders from public, current_user')
    report = mig_tenancy.drift()
    changes = {d.schema: [(x.object, x.change) for x in d.differences] for d in report.drifted}
    assert changes == {
        names[1]: [
            ("privileges on column items.name", "extra"),
            ("privileges on table items", "extra"),
        ],
        names[2]: [("privileges on schema", "extra"), ("privileges on table orders", "extra")],
    }
    detail = {x.object: x.actual for d in report.drifted for x in d.differences}
    assert f"SELECT to PUBLIC by {conn.info.user}" in detail["privileges on table items"]
    assert detail["privileges on table orders"] == "(none)"
    # The same grants in the reference: no drift; the order they were granted in is not
    # part of the comparison.
    conn.execute(f'grant update (name) on "{names[0]}".items to public')
    conn.execute(f'grant select on "{names[0]}".items to public')
    assert mig_tenancy.drift(schemas=[names[1]], reference=names[0]).ok


def test_drift_reports_row_level_security(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    """Row-level security turned on, forced or off by hand, and a policy added or changed in
    one tenant: each is drift, with the policy's definition (its references to the tenant's
    own schema normalised, so equal policies in two tenants compare equal)."""
    names = [mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_{i}").schema for i in range(4)]
    for name in names:
        conn.execute(
            f'alter table "{name}".items enable row level security; '
            f'create policy named on "{name}".items for select to public '
            f"using (name <> '' and exists (select from \"{name}\".orders))"
        )
    assert mig_tenancy.drift(schemas=names[1:], reference=names[0]).ok
    conn.execute(f'alter table "{names[1]}".items disable row level security')
    conn.execute(f'alter table "{names[2]}".items force row level security')
    conn.execute(f'alter policy named on "{names[3]}".items using (true)')
    conn.execute(f'create policy extra on "{names[3]}".orders as restrictive using (false)')
    report = mig_tenancy.drift(schemas=names[1:], reference=names[0])
    changes = {d.schema: [(x.object, x.change) for x in d.differences] for d in report.drifted}
    assert changes == {
        names[1]: [("row security on items", "missing")],
        names[2]: [("row security on items", "changed")],
        names[3]: [("policy items.named", "changed"), ("policy orders.extra", "extra")],
    }
    detail = {
        (d.schema, x.object): (x.expected, x.actual) for d in report.drifted for x in d.differences
    }
    assert detail[(names[2], "row security on items")] == ("enabled", "enabled, forced")
    named = detail[(names[3], "policy items.named")]
    assert named[0].startswith("permissive for select to PUBLIC using (")
    assert "orders" in named[0] and names[0] not in named[0]
    assert named[1] == "permissive for select to PUBLIC using (true)"
    assert (
        detail[(names[3], "policy orders.extra")][1]
        == "restrictive for all to PUBLIC using (false)"
    )


def test_schema_sizes(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    name = mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_a").schema
    sizes = schema_sizes(conn, [name])
    assert sizes[name] > 0


_IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)


@given(schema=_IDENT, table=_IDENT, other=_IDENT)
def test_rewrite_schema_round_trips(schema: str, table: str, other: str) -> None:
    assume("tk_target" not in (schema, table, other) and other != schema)
    text = (
        f"select * from {schema}.{table} join {other}.{table} on true "
        f"where nextval('{schema}.{table}_seq'::regclass) > 0 and x{schema}.y = {schema}"
    )
    moved = rewrite_schema(text, schema, '"tk_target"')
    # Only the qualified references moved: other schemas, longer names and bare words did not.
    assert f"{other}.{table}" in moved and f"x{schema}.y" in moved
    assert moved.count('"tk_target".') == 2
    assert rewrite_schema(moved, "tk_target", schema) == text
