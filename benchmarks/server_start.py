"""Embedded server start-up time: cold (initdb every time) vs warm (cached initialised cluster).

Run: ``python benchmarks/server_start.py [--runs 10] [--bin-dir DIR]``. "Ready" means
``EmbeddedServer.start()`` returned, i.e. the server accepted a psycopg connection.
Targets (docs/server.md): cold < 1 s, warm < 0.5 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tenantkit.server import EmbeddedServer

COLD_TARGET = 1.0
WARM_TARGET = 0.5


def measure(runs: int, *, cache: bool, cache_dir: Path, bin_dir: str | None) -> list[float]:
    """Start and stop ``runs`` servers; return the start-up times in seconds."""
    times = []
    for _ in range(runs):
        server = EmbeddedServer(cache=cache, cache_dir=cache_dir, bin_dir=bin_dir)
        began = time.perf_counter()
        server.start()
        times.append(time.perf_counter() - began)
        server.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--bin-dir", default=None, help="PostgreSQL bin directory")
    args = parser.parse_args()

    # A private cache so "cold" and the first warm priming are real, whatever ran before. It
    # lives in /var/tmp because, as root, the unprivileged account must be able to reach it.
    cache_dir = Path(tempfile.mkdtemp(prefix="tenantkit-bench-cache-", dir="/var/tmp"))
    cache_dir.chmod(0o755)
    try:
        cold = measure(args.runs, cache=False, cache_dir=cache_dir, bin_dir=args.bin_dir)
        prime = measure(1, cache=True, cache_dir=cache_dir, bin_dir=args.bin_dir)
        warm = measure(args.runs, cache=True, cache_dir=cache_dir, bin_dir=args.bin_dir)
        with EmbeddedServer(cache_dir=cache_dir, bin_dir=args.bin_dir) as server:
            version = server.version
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    def line(label: str, values: list[float], target: float) -> str:
        median = statistics.median(values)
        verdict = "OK" if median < target else "MISSED"
        return (
            f"{label:<28} median {median * 1000:7.1f} ms  (min {min(values) * 1000:6.1f}, "
            f"max {max(values) * 1000:6.1f})  target < {target * 1000:.0f} ms  {verdict}"
        )

    print(f"PostgreSQL {version}, {args.runs} runs each")
    print(line("cold start (initdb)", cold, COLD_TARGET))
    print(f"{'first start, filling cache':<28} {prime[0] * 1000:7.1f} ms")
    print(line("warm start (cached init)", warm, WARM_TARGET))


if __name__ == "__main__":
    main()
