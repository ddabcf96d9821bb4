"""Benchmark: routed Django request overhead, tenantkit.django vs django-tenants 4.0.1 vs none.

The same small project (a tenant app with one table, a one-query view) runs three ways, each
in its own process (Django settings are per process) on its own database of one server:

- *plain*: Django's own PostgreSQL backend, no tenancy (the baseline);
- *tenantkit*: ``tenantkit.django`` (backend, router, ``TenantMainMiddleware``);
- *django-tenants*: ``django_tenants`` 4.0.1, configured the same way.

Each request goes through Django's WSGI handler called in a loop with a synthetic environ (no
HTTP client measured), with persistent connections, in two patterns: *switch* rotates over the
tenants' hosts (a tenant switch on every request, the worst case for a connection), *repeat*
sends a round's requests to one tenant (the next round to the next one). Short rounds rotate
over the sides (ABC BCA CAB ...) so that load from other processes hits all alike; the figure
per side is the median of its rounds' mean time per request. Statements and round trips per
request are read from a libpq trace of the connection during warm requests (what the client
sent, including anything the library sends itself), Django-visible queries from
``CaptureQueriesContext``. CPU per request adds the worker's CPU time and its PostgreSQL
server process's (``/proc``, Linux), summed over all rounds: unlike wall-clock time it leaves
out what a busy or virtualised machine takes away (time stolen by the hypervisor, other
processes), so its ratio is the steadier one.

    PGTENANTS_DSN=... python benchmarks/django_requests.py [--tenants 10] [--rounds 30]
        [--requests 200]

Without PGTENANTS_DSN an embedded server is started.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder is sys.path[0], where benchmarks/django.py would shadow Django.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

SIDES = ("plain", "tenantkit", "django-tenants")
PATTERNS = ("switch", "repeat")
PACKAGE = {"tenantkit": "tenantkit.django", "django-tenants": "django_tenants"}

# -- the project, written into a temporary directory ----------------------------------------

CUSTOMERS_MODELS = """
from django.conf import settings
from django.db import models

if "django_tenants" in settings.INSTALLED_APPS:
    from django_tenants.models import DomainMixin, TenantMixin
else:
    from tenantkit.django.models import DomainMixin, TenantMixin

class Client(TenantMixin):
    name = models.CharField(max_length=100, default="")

class Domain(DomainMixin):
    pass
"""

CUSTOMERS_MIGRATION = """
import django.db.models.deletion
from django.db import migrations, models

class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(name="Client", fields=[
            ("id", models.BigAutoField(primary_key=True, serialize=False)),
            ("schema_name", models.CharField(db_index=True, max_length=63, unique=True)),
            ("name", models.CharField(default="", max_length=100)),
        ]),
        migrations.CreateModel(name="Domain", fields=[
            ("id", models.BigAutoField(primary_key=True, serialize=False)),
            ("domain", models.CharField(db_index=True, max_length=253, unique=True)),
            ("is_primary", models.BooleanField(db_index=True, default=True)),
            ("tenant", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                related_name="domains", to="customers.client")),
        ]),
    ]
"""

ITEMS_MODELS = """
from django.db import models

class Item(models.Model):
    name = models.CharField(max_length=100)
"""

ITEMS_MIGRATION = """
from django.db import migrations, models

class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(name="Item", fields=[
            ("id", models.BigAutoField(primary_key=True, serialize=False)),
            ("name", models.CharField(max_length=100)),
        ]),
    ]
"""

URLS = """
from django.http import JsonResponse
from django.urls import path
from bench_proj.items.models import Item

def items(request):
    return JsonResponse({"items": [i.name for i in Item.objects.order_by("id")[:10]]})

urlpatterns = [path("items/", items)]
"""


def write_project(root: Path) -> None:
    """The project's package ``bench_proj`` (both tenancy flavours import their own mixins)."""
    proj = root / "bench_proj"
    for app in ("customers", "items"):
        (proj / app / "migrations").mkdir(parents=True)
        (proj / app / "__init__.py").write_text("")
        (proj / app / "migrations" / "__init__.py").write_text("")
    (proj / "__init__.py").write_text("")
    (proj / "urls.py").write_text(URLS)
    (proj / "items" / "models.py").write_text(ITEMS_MODELS)
    (proj / "customers" / "models.py").write_text(CUSTOMERS_MODELS)
    (proj / "items" / "migrations" / "0001_initial.py").write_text(ITEMS_MIGRATION)
    (proj / "customers" / "migrations" / "0001_initial.py").write_text(CUSTOMERS_MIGRATION)


# -- a worker: one side, one process ---------------------------------------------------------


def _settings(side: str, conninfo: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo)
    database = {
        "NAME": params.get("dbname", ""),
        "HOST": params.get("host", ""),
        "PORT": str(params.get("port", "")),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "CONN_MAX_AGE": None,
    }
    values: dict[str, Any] = {
        "DEBUG": False,
        "SECRET_KEY": "bench",
        "ALLOWED_HOSTS": ["*"],
        "USE_TZ": True,
        "ROOT_URLCONF": "bench_proj.urls",
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "LOGGING_CONFIG": None,
    }
    if side == "plain":
        database["ENGINE"] = "django.db.backends.postgresql"
        values.update(INSTALLED_APPS=["bench_proj.items"], MIDDLEWARE=[])
    else:
        pkg = PACKAGE[side]
        database["ENGINE"] = f"{pkg}.postgresql_backend"
        # django-tenants imports contenttypes; both sides get it (shared only).
        shared = [pkg, "bench_proj.customers", "django.contrib.contenttypes"]
        tenant = ["bench_proj.items"]
        values.update(
            SHARED_APPS=shared,
            TENANT_APPS=tenant,
            INSTALLED_APPS=shared + tenant,
            TENANT_MODEL="customers.Client",
            TENANT_DOMAIN_MODEL="customers.Domain",
            DATABASE_ROUTERS=[f"{pkg}.routers.TenantSyncRouter"],
            MIDDLEWARE=[f"{pkg}.middleware.main.TenantMainMiddleware"],
        )
    values["DATABASES"] = {"default": database}
    return values


def _setup(side: str, tenants: int) -> list[str]:
    """Migrate, create the tenants and their rows; return the hosts to rotate over."""
    from bench_proj.items.models import Item
    from django.core.management import call_command

    rows = [f"item {n}" for n in range(10)]
    if side == "plain":
        call_command("migrate", verbosity=0, interactive=False)
        Item.objects.bulk_create([Item(name=r) for r in rows])
        return ["plain.bench"]
    from bench_proj.customers.models import Client, Domain

    if side == "tenantkit":
        from tenantkit.django._migrate import migrate_schema
        from tenantkit.django.utils import tenant_context

        migrate_schema("public")
    else:
        from django_tenants.utils import tenant_context

        call_command("migrate_schemas", shared=True, verbosity=0, interactive=False)
    public = Client(schema_name="public")
    public.save(verbosity=0)
    Domain(domain="public.bench", tenant=public).save()
    hosts = []
    for n in range(tenants):
        client = Client(schema_name=f"t{n}")
        client.save(verbosity=0)
        host = f"t{n}.bench"
        Domain(domain=host, tenant=client).save()
        with tenant_context(client):
            Item.objects.bulk_create([Item(name=r) for r in rows])
        hosts.append(host)
    return hosts


def _environ(host: str) -> dict[str, Any]:
    import io

    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/items/",
        "QUERY_STRING": "",
        "SERVER_NAME": host,
        "SERVER_PORT": "80",
        "HTTP_HOST": host,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _trace(raw: Any, action: Any) -> list[tuple[str, str]]:
    from psycopg import pq

    with tempfile.TemporaryFile("w+") as trace:
        raw.pgconn.trace(trace.fileno())
        raw.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            action()
        finally:
            raw.pgconn.untrace()
            ctypes.CDLL(None).fflush(None)
        trace.seek(0)
        out = []
        for line in trace:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[0] == "F":
                out.append((parts[2], parts[3] if len(parts) > 3 else ""))
        return out


def _wire_counts(messages: list[tuple[str, str]]) -> tuple[int, int]:
    """(statements, round trips) the client sent: a statement per Parse or per ``;``-part of
    a simple Query; a wait per simple Query, per pipeline Flush, per Sync outside one."""
    statements = 0
    waits = 0
    syncs = 0
    for kind, text in messages:
        if kind == "Parse":
            statements += 1
        elif kind == "Query":
            statements += len([p for p in text.split(";") if p.strip(' "')])
            waits += 1 + syncs
            syncs = 0
        elif kind == "Flush":
            waits += 1
            syncs = 0
        elif kind == "Sync":
            syncs += 1
    return statements, waits + syncs


def _sample(hosts: list[str], pattern: str, number: int, count: int) -> list[str]:
    """The hosts of round ``number``: rotating (``switch``) or one tenant (``repeat``)."""
    if pattern == "switch":
        return [hosts[n % len(hosts)] for n in range(count)]
    return [hosts[number % len(hosts)]] * count


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` has used (Linux ``/proc``). Time stolen
    by the hypervisor is not in it, unlike in wall-clock time."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(side: str, conninfo: str, project: str, tenants: int) -> None:
    """Serve commands from the parent on stdin: ``round N PATTERN K``, ``stats PATTERN``,
    ``notify N``, ``quit``."""
    sys.path.insert(0, project)
    import django
    from django.conf import settings

    settings.configure(**_settings(side, conninfo))
    django.setup()
    import logging

    logging.getLogger("django.request").setLevel(logging.ERROR)  # the 404s of "notify"
    hosts = _setup(side, tenants)
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    handler = WSGIHandler()

    def start_response(status: str, headers: Any) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"{side}: {status}")

    def request(host: str) -> None:
        body = b"".join(handler(_environ(host), start_response))
        if b"item 0" not in body:
            raise RuntimeError(f"{side}: unexpected body {body[:100]!r}")

    for _ in range(3):  # warm: routing tables, connections, caches
        for host in hosts:
            request(host)
    if side == "tenantkit":
        from tenantkit.django._source import get_resolver

        get_resolver().wait_subscribed(10)
        get_resolver().warm()
        for host in hosts:
            request(host)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "round":
            count, pattern, number = int(command[1]), command[2], int(command[3])
            sample = _sample(hosts, pattern, number, count)
            connection.ensure_connection()
            backend = connection.connection.info.backend_pid
            server_before = _cpu_of(backend)
            cpu_before = time.process_time()
            started = time.perf_counter()
            for host in sample:
                request(host)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            # The same server process served the round (persistent connection), or its CPU
            # time is unknown for this round.
            same = connection.connection.info.backend_pid == backend
            server = _cpu_of(backend) - server_before if same else None
            print(json.dumps({"wall": wall, "cpu": cpu, "server": server, "n": count}), flush=True)
        elif command[0] == "stats":
            connection.ensure_connection()
            sample = _sample(hosts, command[1], 0, 40)
            if command[1] == "repeat":
                request(sample[0])  # the switch that starts a round of one tenant
            with CaptureQueriesContext(connection) as queries:

                def run(sample: list[str] = sample) -> None:
                    for host in sample:
                        request(host)

                messages = _trace(connection.connection, run)
            statements, waits = _wire_counts(messages)
            print(
                json.dumps(
                    {
                        "django_queries": len(queries) / len(sample),
                        "statements": statements / len(sample),
                        "round_trips": waits / len(sample),
                    }
                ),
                flush=True,
            )
        elif command[0] == "notify":
            # A domain added by another client: how long until this process routes it.
            import psycopg
            from bench_proj.customers.models import Client

            tenant_id = Client.objects.get(schema_name="t0").pk
            seen = []
            for n in range(int(command[1])):
                host = f"late{n}.bench"
                with psycopg.connect(conninfo, autocommit=True) as other:
                    started = time.perf_counter()
                    other.execute(
                        "INSERT INTO customers_domain (domain, tenant_id, is_primary) "
                        "VALUES (%s, %s, false)",
                        (host, tenant_id),
                    )
                while True:
                    status: list[str] = []
                    body = b"".join(
                        handler(_environ(host), lambda s, h, status=status: status.append(s))
                    )
                    del body
                    if status and status[0].startswith("200"):
                        break
                    time.sleep(0.001)
                seen.append(time.perf_counter() - started)
            print(json.dumps(statistics.median(seen)), flush=True)
        elif command[0] == "quit":
            break
    connection.close()
    if side == "tenantkit":
        from tenantkit.django._source import reset_resolver

        reset_resolver()


# -- the parent -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--worker", nargs=3, metavar=("SIDE", "CONNINFO", "PROJECT"))
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.worker[2], args.tenants)
        return

    from tenantkit.server import server_conninfo_from_env, temporary_database

    with server_conninfo_from_env() as server, tempfile.TemporaryDirectory() as project:
        write_project(Path(project))
        with (
            temporary_database(server, prefix="bench_plain") as db_plain,
            temporary_database(server, prefix="bench_tk") as db_tk,
            temporary_database(server, prefix="bench_dt") as db_dt,
        ):
            databases = {"plain": db_plain, "tenantkit": db_tk, "django-tenants": db_dt}
            procs: dict[str, subprocess.Popen[str]] = {}
            try:
                for side in SIDES:
                    procs[side] = subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "--tenants",
                            str(args.tenants),
                            "--worker",
                            side,
                            databases[side],
                            project,
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        env={**os.environ, "PYTHONWARNINGS": "ignore"},
                    )
                for side, proc in procs.items():
                    assert proc.stdout is not None
                    line = proc.stdout.readline().strip()
                    if line != "ready":
                        raise SystemExit(f"{side} worker failed to start: {line!r}")

                def ask(side: str, command: str) -> Any:
                    proc = procs[side]
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(command + "\n")
                    proc.stdin.flush()
                    return json.loads(proc.stdout.readline())

                times = {(p, side): list[float]() for p in PATTERNS for side in SIDES}
                cpu = {(p, side): [0.0, 0] for p in PATTERNS for side in SIDES}
                for n in range(args.rounds):
                    order = SIDES[n % 3 :] + SIDES[: n % 3]
                    for pattern in PATTERNS:
                        for side in order:
                            got = ask(side, f"round {args.requests} {pattern} {n}")
                            times[pattern, side].append(got["wall"] / got["n"])
                            if got["server"] is not None:
                                # Summed over the rounds: /proc counts in ticks (10 ms).
                                cpu[pattern, side][0] += got["cpu"] + got["server"]
                                cpu[pattern, side][1] += got["n"]
                stats = {(p, side): ask(side, f"stats {p}") for p in PATTERNS for side in SIDES}
                notify = ask("tenantkit", "notify 5")
            finally:
                for proc in procs.values():
                    if proc.stdin is not None and proc.poll() is None:
                        proc.stdin.write("quit\n")
                        proc.stdin.close()
                    proc.wait(timeout=60)
    print(
        f"routed requests: {args.tenants} tenants, {args.rounds} rounds x {args.requests} "
        "requests per side and pattern"
    )
    overheads = {}
    cpu_overheads = {}
    for pattern in PATTERNS:
        what = "a tenant switch on every request" if pattern == "switch" else "one tenant per round"
        print(f"{pattern}: {what}")
        header = f"  {'side':<16}{'median/request':>16}{'vs plain':>10}{'CPU/request':>13}"
        header += f"{'vs plain':>10}{'django queries':>16}{'statements':>12}{'round trips':>13}"
        print(header)
        base = statistics.median(times[pattern, "plain"])
        cpu_base = _per_request(cpu[pattern, "plain"])
        for side in SIDES:
            median = statistics.median(times[pattern, side])
            per = _per_request(cpu[pattern, side])
            s = stats[pattern, side]
            print(
                f"  {side:<16}{median * 1e6:>13.0f} us{median / base:>9.2f}x"
                f"{per * 1e6:>10.0f} us{per / cpu_base:>9.2f}x"
                f"{s['django_queries']:>16.2f}{s['statements']:>12.2f}{s['round_trips']:>13.2f}"
            )
        overheads[pattern] = statistics.median(times[pattern, "tenantkit"]) / base - 1
        cpu_overheads[pattern] = _per_request(cpu[pattern, "tenantkit"]) / cpu_base - 1
    print(
        f"tenantkit.django: a domain added by another client is routed after "
        f"{notify * 1e3:.1f} ms (median of 5; LISTEN/NOTIFY)"
    )
    for pattern in PATTERNS:
        print(
            f"tenantkit.django overhead vs plain ({pattern}): {overheads[pattern]:+.1%} "
            "(target < +10%)"
        )
    for pattern in PATTERNS:
        print(
            f"tenantkit.django CPU overhead vs plain ({pattern}): {cpu_overheads[pattern]:+.1%} "
            "(client and server process, all rounds)"
        )


def _per_request(total: list[Any]) -> float:
    """CPU seconds per request from a ``[seconds, requests]`` total."""
    return float(total[0]) / max(1, int(total[1]))


if __name__ == "__main__":
    main()
