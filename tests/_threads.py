"""Run a piece of test code in several threads at once (``from _threads import in_threads``)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def in_threads(
    work: Callable[[int], None], count: int = 8, *, cleanup: Callable[[], None] | None = None
) -> None:
    """Run ``work(n)`` for n in ``range(count)``, each in its own thread, all at once; then
    ``cleanup()`` in each thread (``finally``). Re-raise what any of them raised."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)
        finally:
            if cleanup is not None:
                cleanup()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError(f"{len(errors)} thread(s) raised: {errors!r}") from errors[0]
