"""Watchdog of one embedded server: stops it when its owner process dies, however it dies.

A separate tiny process, started by the owner before anything else of the server exists. It
watches two things:

* the owner's process itself (a pidfd on Linux, else ``getppid()`` polling: the watchdog is
  the owner's child, so its parent id changes exactly when the owner dies, which no process
  id reuse can fake). A pipe alone is not enough: children the owner forked (a
  multiprocessing pool, ``os.fork()``) inherit its write end and keep it open after the owner
  is gone;
* a pipe on its stdin, on which the owner says ``spawn`` just before it starts a postmaster,
  ``pid N`` right after (before the server is ready), and ``done`` when it stopped the
  server itself (or detached it): the watchdog then exits without touching anything.

When the owner is gone without ``done``, the watchdog stops the postmaster it was told about,
or any postmaster named by ``postmaster.pid`` (waiting a few seconds for one that was still
being spawned when the owner died), checking that the process really runs our data directory
before signalling it (a pidfd is opened first, so a recycled process id is never
signalled), and removes the directory unless KEEP.

Usage: ``python -I -S _watchdog.py BASE_DIR KEEP OWNER_PID`` (KEEP is "1" or "0"), the owner
holding the write end of stdin. Standard library only: it runs without site-packages.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time

#: Seconds to wait for a postmaster that the owner was spawning when it died to show up.
SPAWN_GRACE = 10.0
#: Seconds a postmaster gets to stop before it is killed.
STOP_TIMEOUT = 30.0
#: Seconds between checks of the owner where no pidfd is available.
POLL_INTERVAL = 0.1


class _Owner:
    """The owner process: readable ``fd`` (a pidfd) on Linux, else ``getppid()`` polling."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd: int | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.fd = pidfd_open(pid)
            except OSError:  # an old kernel, a sandbox forbidding it, or pid already reaped
                self.fd = None

    def gone(self) -> bool:
        # Checked after opening the pidfd: if the owner was still our parent then, the pidfd
        # refers to it and not to a process that reused its id.
        return os.getppid() != self.pid


class _Pipe:
    """The owner's messages on stdin, read without blocking on writers that never close it."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.buffer = b""
        self.closed = False
        self.done = False
        self.spawning = False
        self.pids: list[int] = []

    def read(self) -> None:
        """Consume what is readable now (call only when select() says so)."""
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            text = line.decode("ascii", "replace").strip()
            if text == "done":
                self.done = True
            elif text == "spawn":
                self.spawning = True
            elif text.startswith("pid ") and text[4:].isdigit():
                self.spawning = False
                self.pids.append(int(text[4:]))

    def drain(self) -> None:
        """Read whatever is left without waiting (forked children may keep the pipe open)."""
        while not self.closed and select.select([self.fd], [], [], 0)[0]:
            self.read()


def _wait_for_owner(owner: _Owner, pipe: _Pipe) -> None:
    """Return once the owner is gone or has said ``done``."""
    while not pipe.done and not pipe.closed:
        if owner.gone():
            break
        watched = [pipe.fd] if owner.fd is None else [pipe.fd, owner.fd]
        ready = select.select(watched, [], [], POLL_INTERVAL if owner.fd is None else None)[0]
        if pipe.fd in ready:
            pipe.read()
        if owner.fd is not None and owner.fd in ready:
            break
    # "done" may sit in the pipe right behind the owner's exit.
    pipe.drain()


def _postmaster_pid_file(data: str) -> int | None:
    try:
        with open(os.path.join(data, "postmaster.pid")) as pid_file:
            first = pid_file.readline().strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _runs_in(pid: int, data: str) -> bool:
    """Is ``pid`` a postmaster of the data directory ``data`` (and not a recycled id)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().split(b"\0")
    except OSError:
        # No /proc (macOS): trust postmaster.pid, which the postmaster removes on exit.
        return _postmaster_pid_file(data) == pid
    return os.fsencode(data) in args


class _Process:
    """A process we may signal: through a pidfd where there is one, so its id cannot be
    recycled between the identity check and the signal."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd: int | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.fd = pidfd_open(pid)
            except ProcessLookupError:
                raise
            except OSError:  # no pidfd support here: plain kill() it is
                self.fd = None

    def signal(self, sig: int) -> None:
        if self.fd is not None:
            signal.pidfd_send_signal(self.fd, sig)
        else:
            os.kill(self.pid, sig)

    def alive(self) -> bool:
        if self.fd is not None:  # readable once the process has exited
            return not select.select([self.fd], [], [], 0)[0]
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _stop(pid: int, data: str, sig: int) -> bool:
    """Stop postmaster ``pid`` if it runs ``data``; True when it did (and is now gone)."""
    try:
        process = _Process(pid)
    except OSError:
        return False  # already gone
    try:
        if not process.alive() or not _runs_in(pid, data):
            return False
        process.signal(sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        while process.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if process.alive():
            process.signal(signal.SIGKILL)
        return True
    except OSError:
        return True  # it went away while we were at it
    finally:
        process.close()


def _stop_postmasters(base: str, pipe: _Pipe, sig: int) -> None:
    if not pipe.spawning and not pipe.pids:
        return  # the owner died before it started any postmaster
    data = os.path.join(base, "data")
    # Only the last one counts: an earlier one failed to bind its port and exited.
    told = None if pipe.spawning else pipe.pids[-1]
    deadline = time.monotonic() + SPAWN_GRACE
    while True:
        for pid in dict.fromkeys([told, _postmaster_pid_file(data)]):
            if pid and _stop(pid, data, sig):
                return
        if told is not None and _exited(told):
            return  # it exited by itself (failed to start)
        if time.monotonic() > deadline:
            return
        # Spawned but not running postgres yet, or not yet named in postmaster.pid.
        time.sleep(0.02)


def _exited(pid: int) -> bool:
    """Has ``pid`` exited? (A zombie not yet reaped by whoever adopted it counts.)"""
    try:
        process = _Process(pid)
    except OSError:
        return True
    try:
        return not process.alive()
    finally:
        process.close()


def main(argv: list[str]) -> int:
    """Wait for the owner to finish or die; after a death, stop its postmaster and clean up."""
    # A Ctrl-C in the terminal is for the owner, which then tells us "done".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    base, keep = argv[1], argv[2] == "1"
    # OWNER_PID is passed rather than read from getppid() here, which would already be the
    # adopting process if the owner died while we started. Without it (an owner that imported
    # an older tenantkit before an upgrade), our parent is the best guess.
    owner_pid = int(argv[3]) if len(argv) > 3 else os.getppid()
    owner = _Owner(owner_pid)
    pipe = _Pipe()
    _wait_for_owner(owner, pipe)
    if pipe.done:
        return 0
    _stop_postmasters(base, pipe, signal.SIGINT if keep else signal.SIGQUIT)
    if not keep:
        # A copy (cp) the owner started may still be writing into it for a moment.
        for _ in range(50):
            shutil.rmtree(base, ignore_errors=True)
            if not os.path.exists(base):
                break
            time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
