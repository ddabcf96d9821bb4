"""Values returned by planning and migrating (frozen dataclasses), and the interruption that
carries a partial report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "MigrationInterrupted",
    "MigrationReport",
    "Plan",
    "ProgressEvent",
    "SchemaPlan",
    "SchemaResult",
]

#: What a schema is to the migrator: the shared schema, a registered tenant, a spare schema
#: waiting to be claimed, or the provisioning template.
SchemaKind = Literal["shared", "tenant", "spare", "template"]
#: ``applied``: something ran; ``current``: nothing was pending; ``failed``: rolled back, see
#: ``error``; ``skipped``: not attempted or rolled back by a stop (``error`` says which: a
#: fail-fast stop, ``"interrupted"``, or the schema vanished meanwhile).
Status = Literal["applied", "current", "failed", "skipped"]


@dataclass(frozen=True)
class SchemaPlan:
    """What is pending in one schema."""

    schema: str
    kind: SchemaKind
    pending: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """Every schema in scope and what is pending in it, from one query on the central summary.

    ``entries`` holds all schemas in scope (the shared one first), up-to-date ones with an
    empty ``pending``.
    """

    entries: tuple[SchemaPlan, ...]
    shared_head: str
    tenant_head: str

    @property
    def pending(self) -> tuple[SchemaPlan, ...]:
        """Entries with something pending."""
        return tuple(p for p in self.entries if p.pending)

    @property
    def is_empty(self) -> bool:
        """True when nothing is pending anywhere."""
        return not any(p.pending for p in self.entries)

    @property
    def shared(self) -> SchemaPlan | None:
        """The shared schema's entry, when it is in scope."""
        return next((p for p in self.entries if p.kind == "shared"), None)

    @property
    def tenants(self) -> tuple[SchemaPlan, ...]:
        """Entries of tenant, spare and template schemas with something pending."""
        return tuple(p for p in self.entries if p.kind != "shared" and p.pending)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``tenantkit migrate --plan --json``)."""
        return {
            "schemas": len(self.entries),
            "current": sum(1 for p in self.entries if not p.pending),
            "pending": [
                {"schema": p.schema, "kind": p.kind, "migrations": list(p.pending)}
                for p in self.pending
            ],
        }


@dataclass(frozen=True)
class SchemaResult:
    """The outcome of migrating one schema."""

    schema: str
    kind: SchemaKind
    status: Status
    applied: tuple[str, ...] = ()
    duration: float = 0.0
    error: str | None = None
    #: The migration that failed (with ``status == "failed"``).
    migration: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "schema": self.schema,
            "kind": self.kind,
            "status": self.status,
            "applied": list(self.applied),
            "duration_ms": round(self.duration * 1000, 3),
            "error": self.error,
            "migration": self.migration,
        }


@dataclass(frozen=True)
class ProgressEvent:
    """Passed to the ``progress`` callback after each schema is done."""

    done: int
    total: int
    result: SchemaResult


@dataclass(frozen=True)
class MigrationReport:
    """What a ``migrate()`` run did, schema by schema."""

    results: tuple[SchemaResult, ...]
    duration: float
    run_id: int | None = None
    #: ID of an interrupted run this one picked up after (its journal row stayed "running").
    resumed_from: int | None = None
    executor: str = "sequential"
    jobs: int = 1
    #: True when a graceful stop (Ctrl-C, SIGTERM) ended the run early; the schemas it did
    #: not finish are ``skipped`` with the error ``"interrupted"``, and the next run resumes.
    interrupted: bool = False
    _index: dict[str, SchemaResult] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update((r.schema, r) for r in self.results)

    def __getitem__(self, schema: str) -> SchemaResult:
        return self._index[schema]

    @property
    def ok(self) -> bool:
        """True when no schema failed and the run was not interrupted."""
        return not self.failed and not self.interrupted

    @property
    def failed(self) -> tuple[SchemaResult, ...]:
        """Results of schemas whose migrations were rolled back."""
        return tuple(r for r in self.results if r.status == "failed")

    @property
    def applied(self) -> tuple[SchemaResult, ...]:
        """Results of schemas where at least one migration ran."""
        return tuple(r for r in self.results if r.status == "applied")

    @property
    def skipped(self) -> tuple[SchemaResult, ...]:
        """Results of schemas not attempted."""
        return tuple(r for r in self.results if r.status == "skipped")

    @property
    def shared(self) -> SchemaResult | None:
        """The shared schema's result, when shared migrations were run."""
        return next((r for r in self.results if r.kind == "shared"), None)

    def counts(self) -> dict[str, int]:
        """Number of schemas per status."""
        out = {"applied": 0, "current": 0, "failed": 0, "skipped": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``tenantkit migrate --json``)."""
        return {
            "ok": self.ok,
            "interrupted": self.interrupted,
            "run_id": self.run_id,
            "resumed_from": self.resumed_from,
            "executor": self.executor,
            "jobs": self.jobs,
            "duration_ms": round(self.duration * 1000, 3),
            "counts": self.counts(),
            "results": [r.as_dict() for r in self.results],
        }


class MigrationInterrupted(KeyboardInterrupt):
    """Raised by ``migrate()`` when Ctrl-C or SIGTERM (any ``KeyboardInterrupt``) stopped it.

    The stop is graceful: no schema is started after it, the statements in progress are
    cancelled (those schemas roll back to their old version), and the run's journal is
    written as ``interrupted`` before this is raised, so the next run resumes it.
    ``report`` says what was done. A ``KeyboardInterrupt``, so code that does not look for it
    stops as it would have on Ctrl-C.
    """

    def __init__(self, report: MigrationReport) -> None:
        self.report = report
        counts = report.counts()
        left = counts["skipped"] + counts["failed"]
        super().__init__(
            f"migration run {report.run_id} interrupted: {counts['applied']} schemas migrated, "
            f"{left} left for the next run"
        )
