"""What changed between two isolation snapshots, one line per difference (no database access).

Every line names the schema and the object, in the words of SQL, and says what changed:

* ``schema globex: column orders.note was created (text)``, ``... changed to: bigint``,
  ``... was dropped``, ``... was dropped and created again``;
* ``schema globex: table orders: owner changed from app to acme_app``,
  ``schema globex: table orders: privileges changed: SELECT granted to acme_app``,
  ``schema globex: function touch(): security changed from invoker to definer``;
* ``table globex.orders: 1 row(s) added: (...)``, ``sequence globex.orders_id_seq: value
  changed from unused (next 1) to 1``;
* ``schema loot appeared during the block and is not a tenant: table orders (3 row(s))``,
  ``shared schema public gained table orders, which is a tenant table name: ...``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from tenantkit.introspection.catalog import PLACEHOLDER

from ._recycle import TRACKING_TABLE
from ._snapshot import EMPTY_TABLE, TABLE_KINDS, TOKEN, IsolationSnapshot, ObjectKey, TableState

__all__ = ["acl_levels", "compare_snapshots", "describe_privileges"]

#: How an attribute reads when it is at its default (absent from the snapshot).
_UNSET = {
    "row level security": "disabled",
    "persistence": "logged",
    "security": "invoker",
    "leakproof": "no",
    "strict": "no",
    "volatility": "volatile",
    "parallel": "unsafe",
    "rows": "0",
    "state": "enabled",
}

#: Trigger and rule states (``tgenabled``, ``ev_enabled``).
_STATES = {"O": "enabled", "D": "disabled", "R": "enabled on replicas only", "A": "enabled always"}

#: ``pg_default_acl.defaclobjtype`` -> the kind of object it applies to.
_OBJECT_TYPES = {"r": "table", "S": "sequence", "f": "function", "T": "type", "n": "schema"}

#: Letters of ``aclitem`` and the privileges they stand for, in the order GRANT lists them.
_PRIVILEGES = {
    "r": "SELECT",
    "a": "INSERT",
    "w": "UPDATE",
    "d": "DELETE",
    "D": "TRUNCATE",
    "x": "REFERENCES",
    "t": "TRIGGER",
    "m": "MAINTAIN",
    "X": "EXECUTE",
    "U": "USAGE",
    "C": "CREATE",
    "c": "CONNECT",
    "T": "TEMPORARY",
    "s": "SET",
    "A": "ALTER SYSTEM",
}
_ORDER = {name: i for i, name in enumerate(_PRIVILEGES.values())}

Levels = dict[tuple[str, str], int]
"""``{(grantee, privilege): 1}``, or 2 when held with grant option."""


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted  # a doubled quote inside a name toggles twice
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _role(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text or "PUBLIC"


def acl_levels(text: str) -> Levels:
    """Parse ``aclitem`` texts joined by commas (``"grantee=privs/grantor,..."``)."""
    levels: Levels = {}
    for item in _split_outside_quotes(text, ",") if text else []:
        grantee, *rest = _split_outside_quotes(item, "=")
        privs = "=".join(rest).split("/", 1)[0]  # letters (each maybe followed by *), /grantor
        who = _role(grantee)
        for i, letter in enumerate(privs):
            if letter != "*":
                key = (who, _PRIVILEGES.get(letter, letter))
                level = 2 if privs[i + 1 : i + 2] == "*" else 1
                levels[key] = max(levels.get(key, 0), level)
    return levels


def _default_levels(kind: str, owner: str, server_version: int) -> Levels:
    """What PostgreSQL grants when an object's ACL is NULL (``acldefault``)."""
    if kind in ("table", "partitioned table", "view", "materialized view", "foreign table"):
        privs = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
        if server_version >= 170000:
            privs.append("MAINTAIN")
        return {(owner, p): 1 for p in privs}
    if kind == "sequence":
        return {(owner, p): 1 for p in ("SELECT", "UPDATE", "USAGE")}
    if kind == "schema":
        return {(owner, p): 1 for p in ("USAGE", "CREATE")}
    if kind in ("function", "procedure", "aggregate"):
        return {(owner, "EXECUTE"): 1, ("PUBLIC", "EXECUTE"): 1}
    if kind == "type":
        return {(owner, "USAGE"): 1, ("PUBLIC", "USAGE"): 1}
    return {}  # columns, default privileges: nothing beyond the object's own


def describe_privileges(before: Levels, after: Levels) -> str:
    """What changed between two privilege sets, e.g. ``"SELECT granted to acme_app"``."""
    changes: dict[tuple[str, str], list[str]] = {}
    for key in before.keys() | after.keys():
        was, now = before.get(key, 0), after.get(key, 0)
        if was == now:
            continue
        who, privilege = key
        if was == 0:
            verb = "granted with grant option to" if now == 2 else "granted to"
        elif now == 0:
            verb = "revoked from"
        else:
            verb = "grant option granted to" if now > was else "grant option revoked from"
        changes.setdefault((verb, who), []).append(privilege)
    return "; ".join(
        f"{', '.join(sorted(privs, key=lambda p: _ORDER.get(p, 99)))} {verb} {who}"
        for (verb, who), privs in sorted(
            changes.items(), key=lambda kv: ("revoked" in kv[0][0], kv[0][1].lower(), kv[0][0])
        )
    )


def _compound_diff(old: str, new: str) -> str:
    """``"increment 1, cache 1"`` vs ``"increment 5, cache 1"`` -> what changed, by item."""
    a = dict(item.split(" ", 1) for item in old.split(", ") if " " in item)
    b = dict(item.split(" ", 1) for item in new.split(", ") if " " in item)
    changed = [
        f"{key} changed from {a.get(key, 'unset')} to {b.get(key, 'unset')}"
        for key in a.keys() | b.keys()
        if a.get(key) != b.get(key)
    ]
    order = list(a) + [k for k in b if k not in a]
    changed.sort(key=lambda line: order.index(line.split(" changed", 1)[0]))
    return "; ".join(changed) or f"changed from ({old}) to ({new})"


def _one_line(text: str, limit: int = 300) -> str:
    """A definition on one line (messages are one line each), cut after ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _label(schema: str, kind: str, name: str) -> str:
    if kind == "schema":
        return f"schema {schema}"
    return (f"schema {schema}: " if schema else "database: ") + f"{kind} {name}"


class _Differ:
    """Compares the objects of one schema in two snapshots."""

    def __init__(self, before: IsolationSnapshot, after: IsolationSnapshot) -> None:
        self.before = before
        self.after = after

    def _owner(self, snap: IsolationSnapshot, attrs: Mapping[str, str]) -> str:
        owner = attrs.get("owner", "")
        return snap.roles.get(int(owner), owner) if owner.isdigit() else owner

    def _display(self, snap: IsolationSnapshot, attr: str, value: str) -> str:
        if not value:
            return _UNSET.get(attr, "none")
        if attr == "owner" and value.isdigit():
            return snap.roles.get(int(value), f"role {value}")
        if attr == "state":
            return _STATES.get(value, value)
        return value

    def _privileges(
        self, schema: str, kind: str, was: Mapping[str, str], now: Mapping[str, str]
    ) -> str:
        before, after = self.before, self.after
        old = acl_levels(was["privileges"]) if was.get("privileges") else None
        new = acl_levels(now["privileges"]) if now.get("privileges") else None
        if kind == "default privileges":
            # No entry: nothing added in a schema; the built-in defaults for all schemas.
            entry = was or now
            kind = _OBJECT_TYPES.get(entry.get("#object type", ""), "") if not schema else ""
            was = now = {"owner": entry.get("#role", "")}
        if old is None:
            old = _default_levels(kind, self._owner(before, was), before.server_version)
        if new is None:
            new = _default_levels(kind, self._owner(after, now), after.server_version)
        return describe_privileges(old, new)

    def attribute(
        self, schema: str, key: ObjectKey, attr: str, was: Mapping[str, str], now: Mapping[str, str]
    ) -> str | None:
        """The line for one changed attribute, or None when nothing effective changed."""
        kind, name = key
        label = _label(schema, kind, name)
        if attr == "privileges":
            what = self._privileges(schema, kind, was, now)
            if not what:
                return None  # e.g. a NULL ACL made explicit with the same grants
            if kind == "default privileges":
                return f"{label} changed: {what}"
            return f"{label}: privileges changed: {what}"
        old, new = was.get(attr, ""), now.get(attr, "")
        if attr == "parameters" and old and new:
            return f"{label}: {_compound_diff(old, new)}"
        old_text = self._display(self.before, attr, old)
        new_text = self._display(self.after, attr, new)
        return f"{label}: {attr} changed from {old_text} to {new_text}"

    def objects(self, schema: str) -> list[str]:
        """One line per object created, dropped or changed in ``schema``."""
        old = self.before.objects.get(schema, {})
        new = self.after.objects.get(schema, {})
        details = self.after.details
        return self._compare(schema, old, new, lambda key: details.get((schema, *key), ""))

    def reserved(self, schema: str) -> list[str]:
        """One line per difference between a changed template or spare and an unchanged
        sibling it should be a copy of (see ``IsolationSnapshot.reserved_views``)."""
        views, reference = self.after.reserved_views, self.after.reference
        if schema not in views or reference not in views:
            return [f"schema {schema}: its definition changed during the block"]
        new = views[schema]

        def detail(key: ObjectKey) -> str:
            text = new.get(key, {}).get(TOKEN, "")
            return "" if text == "present" else text.replace(PLACEHOLDER, schema)

        return self._compare(schema, views[reference], new, detail, by_definition=True)

    def _compare(
        self,
        schema: str,
        old: Mapping[ObjectKey, Mapping[str, str]],
        new: Mapping[ObjectKey, Mapping[str, str]],
        detail_of: Callable[[ObjectKey], str],
        *,
        by_definition: bool = False,
    ) -> list[str]:
        lines: list[str] = []
        for key in sorted(old.keys() | new.keys()):
            kind, name = key
            was, now = old.get(key, {}), new.get(key, {})
            label = _label(schema, kind, name)
            if TOKEN in now and TOKEN not in was:
                detail = _one_line(detail_of(key))
                lines.append(f"{label} was created" + (f" ({detail})" if detail else ""))
                continue
            if TOKEN in was and TOKEN not in now:
                lines.append(f"{label} was dropped")
                continue
            if was.get(TOKEN) != now.get(TOKEN):
                detail = _one_line(detail_of(key))
                if not by_definition and was[TOKEN].split(":", 1)[0] != now[TOKEN].split(":", 1)[0]:
                    lines.append(
                        f"{label} was dropped and created again"
                        + (f" ({detail})" if detail else "")
                    )
                else:
                    lines.append(f"{label} changed to: {detail or 'a new definition'}")
            for attr in sorted((was.keys() | now.keys()) - {TOKEN}):
                if attr.startswith("#"):
                    continue  # context for messages, not an attribute of its own
                if was.get(attr, "") != now.get(attr, ""):
                    line = self.attribute(schema, key, attr, was, now)
                    if line is not None:
                        lines.append(line)
        return lines


def _describe_rows(rows: Counter[str], verb: str) -> str:
    shown = ", ".join(sorted(rows.elements())[:3])
    more = sum(rows.values()) - min(3, sum(rows.values()))
    return f"{sum(rows.values())} row(s) {verb}: {shown}" + (f" (+{more} more)" if more else "")


def _diff_table(key: tuple[str, str], before: TableState, after: TableState) -> str:
    schema, table = key
    where = f"table {schema}.{table}"
    if before.rows is not None and after.rows is not None:
        added = Counter(after.rows) - Counter(before.rows)
        removed = Counter(before.rows) - Counter(after.rows)
        what = []
        if added:
            what.append(_describe_rows(added, "added"))
        if removed:
            what.append(_describe_rows(removed, "removed"))
        if what:
            return f"{where}: " + "; ".join(what)
    return f"{where}: rows changed ({before.count} row(s) before, {after.count} after)"


def _sequence_value(state: tuple[int, bool]) -> str:
    value, called = state
    return str(value) if called else f"unused (next {value})"


def _list_contents(items: Sequence[tuple[str, str, int | None]]) -> str:
    if not items:
        return "no relations"
    shown = [
        f"{kind} {name}" + (f" ({rows} row(s))" if rows is not None else "")
        for kind, name, rows in items[:5]
    ]
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return ", ".join(shown) + more


def _new_schema(schema: str, origin: str | None, after: IsolationSnapshot) -> str | None:
    """The line for a schema that appeared during the block; None for a clean new spare."""
    template = after.template
    if schema in after.reserved:
        # A spare refilled or recycled while the block ran, or the template built for the
        # first time: fine as long as it holds no row that a fresh copy would not hold.
        extra = []
        for (owner, name), state in sorted(after.tables.items()):
            if owner != schema:
                continue
            if schema == template:
                if name != TRACKING_TABLE and state.count:
                    extra.append(f"table {name} ({state.count} row(s))")
                continue
            reference = after.tables.get((template, name))
            expected = reference.count if reference is not None else 0
            if state.count != expected:
                extra.append(
                    f"table {name} ({state.count} row(s) where the template has {expected})"
                )
        if not extra:
            return None
        what = "template" if schema == template else "spare"
        return (
            f"schema {schema} appeared during the block holding rows a fresh {what} would "
            "not hold: " + ", ".join(extra)
        )
    items = [
        (kind, name, after.new_rows.get((schema, name)))
        for name, kind in sorted(after.relations.get(schema, {}).items())
    ]
    renamed = f" (renamed from {origin})" if origin else ""
    return (
        f"schema {schema} appeared during the block{renamed} and is not a tenant: "
        + _list_contents(items)
    )


def _gained(schema: str, after: IsolationSnapshot, kind: str, name: str, shaped: set[str]) -> str:
    rows = after.new_rows.get((schema, name))
    count = f" ({rows} row(s))" if rows is not None else ""
    if schema != after.shared_schema:
        return f"schema {schema} gained {kind} {name}{count}"
    if kind in TABLE_KINDS and name in shaped:
        return (
            f"shared schema {schema} gained {kind} {name}, which is a tenant table name: "
            "a statement ran without a tenant on its search_path"
        )
    return f"shared schema {schema} gained {kind} {name}{count}"


def compare_snapshots(
    before: IsolationSnapshot,
    after: IsolationSnapshot,
    *,
    tenant_tables: set[str] | None = None,
    tenant_schemas: Iterable[str] = (),
) -> list[str]:
    """Describe every difference between two snapshots of the same schemas, one line each.

    ``after`` should be taken with ``since=before`` (so new and changed objects come with
    their definitions). ``tenant_schemas`` (the tenants allowed to change, and tenants
    registered meanwhile) may appear and gain relations freely. ``tenant_tables`` are the
    names that count as "tenant-shaped" in the shared schema (default: the tables of the
    covered tenant schemas).
    """
    allowed = set(tenant_schemas)
    problems: list[str] = []
    new_names = {oid: name for name, oid in after.namespaces.items()}
    compared: list[str] = []
    for schema in before.schemas:
        if schema in after.namespaces or schema not in before.namespaces:
            compared.append(schema)
            continue
        moved = new_names.get(before.namespaces[schema])
        problems.append(
            f"schema {schema} was renamed to {moved}" if moved else f"schema {schema} was dropped"
        )
    differ = _Differ(before, after)
    for schema in [*compared, ""]:
        problems += differ.objects(schema)
    reserved = sorted(set(before.reserved) & set(after.reserved))
    for schema in reserved:
        if before.reserved[schema] != after.reserved[schema]:
            problems += differ.reserved(schema)
    for key in sorted(set(before.tables) | set(after.tables)):
        if key[0] in compared:
            old, new = before.tables.get(key), after.tables.get(key)
            if old is None or new is None:
                continue  # reported as a created or dropped table
        elif key[0] in reserved:
            # Only their tables that are not empty are read: the others hold nothing.
            old, new = before.tables.get(key, EMPTY_TABLE), after.tables.get(key, EMPTY_TABLE)
        else:
            continue
        if old != new:
            problems.append(_diff_table(key, old, new))
    for key in sorted(set(before.sequences) & set(after.sequences)):
        was, now = before.sequences[key], after.sequences[key]
        if key[0] in compared and was != now:
            problems.append(
                f"sequence {key[0]}.{key[1]}: value changed from {_sequence_value(was)} "
                f"to {_sequence_value(now)}"
            )
    shaped = tenant_tables if tenant_tables is not None else after.table_names(after.schemas)
    for schema in sorted(after.relations):
        if schema in allowed or schema not in before.namespaces:
            continue
        known = before.relations.get(schema, {})
        problems += [
            _gained(schema, after, kind, name, shaped)
            for name, kind in sorted(after.relations[schema].items())
            if name not in known
        ]
    old_names = {oid: name for name, oid in before.namespaces.items()}
    for schema in sorted(set(after.namespaces) - set(before.namespaces)):
        origin = old_names.get(after.namespaces[schema])
        if schema in allowed or origin in before.schemas:
            continue  # a tenant, or a tenant schema renamed (reported above)
        line = _new_schema(schema, origin, after)
        if line is not None:
            problems.append(line)
    return problems
