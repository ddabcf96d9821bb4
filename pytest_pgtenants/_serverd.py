"""Helper process owning the embedded server shared by the pytest-xdist workers of one run.

Usage: ``python -m pytest_pgtenants._serverd RUN_DIR WATCH_PID [--keep]``. Starts the server,
writes ``RUN_DIR/server.json`` atomically, then waits until it receives SIGTERM/SIGINT or
``WATCH_PID`` (the xdist controller) is gone, and stops the server (unless ``--keep``: a kept
server is detached when it starts and outlives this helper).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def main(argv: list[str]) -> int:
    """Run the helper; returns the process exit status."""
    run_dir = Path(argv[0])
    watch_pid = int(argv[1])
    keep = "--keep" in argv[2:]
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from pytest_pgtenants._server import start_embedded

    handle = start_embedded(keep=keep)
    state = {
        "pid": os.getpid(),
        "conninfo": handle.conninfo,
        "version_num": handle.version_num,
        "data_dir": handle.data_dir,
    }
    tmp = run_dir / f"server.json.{os.getpid()}"
    tmp.write_text(json.dumps(state))
    # Atomic: a worker polling for the file never reads half of it.
    tmp.replace(run_dir / "server.json")
    try:
        while not stopping:
            try:
                os.kill(watch_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
    finally:
        handle.stop()  # a no-op for a kept server: detached when it started
        (run_dir / "server.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
