"""Benchmark: the cost of ``normalize_host`` per kind of Host value, against a baseline revision.

Routing normalises each distinct raw Host value once (the resolver caches the result), so this
cost is paid on a cold host: the first request for a host, and every request of a flood of
random hosts. The baseline is ``tenantkit/core/names.py`` as of a git revision (``--baseline``,
default ``HEAD``), loaded next to the working tree's, and both run the same inputs in
alternating rounds (AB BA ...), so load from other processes hits both sides alike. A host one
side rejects and the other accepts is still timed (the call either way).

    python benchmarks/hosts.py [--baseline REV] [--rounds 30] [--calls 2000]

No database is needed.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from tenantkit.core import names as current
from tenantkit.errors import InvalidHostname

ROOT = Path(__file__).resolve().parent.parent

KINDS: dict[str, Callable[[int], str]] = {
    "ascii name": lambda i: f"t{i}.bench.test",
    "ascii, upper case, dot, port": lambda i: f"T{i}.Bench.Test.:8443",
    "ipv4": lambda i: f"10.0.{i % 256}.1",
    "ipv6 literal with port": lambda i: f"[2001:db8::{i:x}]:8000",
    "a-label": lambda i: f"xn--bcher-kva.t{i}.example",
    "unicode": lambda i: f"bücher{i}.example",
    "rejected: space": lambda i: f"bad host{i}.example",
    "rejected: port 99999": lambda i: f"t{i}.bench.test:99999",
}


def load_baseline(rev: str) -> ModuleType:
    """``tenantkit.core.names`` as of ``rev``, imported as a sibling module of the package."""
    source = subprocess.run(
        ["git", "show", f"{rev}:tenantkit/core/names.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("tenantkit._names_baseline", handle.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "tenantkit"  # its "from .errors import ..." finds ours
    spec.loader.exec_module(module)
    Path(handle.name).unlink()
    return module


def per_call(normalize: Callable[[str], str], hosts: list[str]) -> float:
    started = time.perf_counter()
    for host in hosts:
        try:  # noqa: SIM105 (contextlib.suppress would add its own cost to each call)
            normalize(host)
        except InvalidHostname:
            pass
    return (time.perf_counter() - started) / len(hosts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision of the baseline")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and side")
    args = parser.parse_args()
    baseline = load_baseline(args.baseline)
    sides = {"baseline": baseline.normalize_host, "current": current.normalize_host}
    print(
        f"normalize_host, ns per call: median of {args.rounds} alternating rounds of "
        f"{args.calls} calls; baseline = tenantkit/core/names.py at {args.baseline}"
    )
    print(f"{'kind':<30} {'baseline':>9} {'current':>9} {'ratio':>6}")
    for kind, make in KINDS.items():
        hosts = [make(i) for i in range(args.calls)]
        timings: dict[str, list[float]] = {name: [] for name in sides}
        for fn in sides.values():
            per_call(fn, hosts[:100])  # warm up
        for r in range(args.rounds):
            order = list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]
            for name, fn in order:
                timings[name].append(per_call(fn, hosts))
        base = statistics.median(timings["baseline"])
        cur = statistics.median(timings["current"])
        ratio = statistics.median(
            c / b for b, c in zip(timings["baseline"], timings["current"], strict=True)
        )
        print(f"{kind:<30} {base * 1e9:9.0f} {cur * 1e9:9.0f} {ratio:6.2f}")
    sys.exit(0)


if __name__ == "__main__":
    main()
