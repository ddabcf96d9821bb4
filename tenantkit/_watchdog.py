"""Watchdog of one embedded server: cleans up when its owner dies abruptly.

The watchdog runs as a separate tiny process holding the read end of a pipe. The parent
writes "pid N" once the postmaster runs and "done" when it stopped it itself. EOF without
"done" means the parent died abruptly (SIGKILL, crash): the watchdog then stops the
postmaster (checking postmaster.pid so a recycled pid is never signalled) and removes the
directory, so nothing outlives its owner.

Usage: ``python -I -S _watchdog.py BASE_DIR KEEP`` (KEEP is "1" or "0"), the owner holding
the write end of stdin. Standard library only: it runs without site-packages.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time


def _is_ours(base: str, pid: int) -> bool:
    """Is ``pid`` still the postmaster of ``base`` (and not a recycled process id)?"""
    try:
        with open(os.path.join(base, "data", "postmaster.pid")) as pid_file:
            return pid_file.readline().strip() == str(pid)
    except OSError:
        return False


def _stop(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # raises once the postmaster is gone
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """Wait for the owner's messages; clean up when its end of the pipe closes without "done"."""
    # A Ctrl-C in the terminal is for the owner, which then tells us "done".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    base, keep = argv[1], argv[2] == "1"
    pid = 0
    for line in sys.stdin:
        line = line.strip()
        if line == "done":
            return 0
        if line.startswith("pid "):
            pid = int(line[4:])
    if pid and _is_ours(base, pid):
        _stop(pid, signal.SIGINT if keep else signal.SIGQUIT)
    if not keep:
        for _ in range(50):
            shutil.rmtree(base, ignore_errors=True)
            if not os.path.exists(base):
                break
            time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
