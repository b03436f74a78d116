"""The threads a pfcon app runs beside its requests, and how they stop.

Each app starts a scheduler and its start pool, an engine status feed, pfcon 6's operation
pool and progress reporter, a capacity reader and an upload sweeper. Closing must be bounded:
a worker that exits, or a test that ends, while the engine does not answer must not hang on
a thread that waits for it, so every join here has a timeout and says what it left behind.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

log = logging.getLogger(__name__)

#: how long closing waits for one thread (or one pool's work in flight) to end
JOIN_SECONDS = 30.0


def join(thread: threading.Thread | None, timeout: float = JOIN_SECONDS) -> None:
    """Wait for ``thread`` to end, at most ``timeout`` seconds; a thread still alive is logged."""
    if thread is None or not thread.is_alive() or thread is threading.current_thread():
        return  # never started, already ended, or closing from inside the thread itself
    thread.join(timeout)
    if thread.is_alive():
        log.warning("thread %s did not stop within %g s; left running", thread.name, timeout)


class TrackedPool(ThreadPoolExecutor):
    """A thread pool whose :meth:`close` waits a bounded time for the work in flight."""

    def __init__(self, workers: int, name: str) -> None:
        super().__init__(max_workers=workers, thread_name_prefix=name)
        self.name = name
        self._pending: set[Future[Any]] = set()
        self._pending_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def close(self, timeout: float = JOIN_SECONDS, cancel_queued: bool = False) -> None:
        """Take no more work, wait up to ``timeout`` for what runs, then join the idle workers."""
        self.shutdown(wait=False, cancel_futures=cancel_queued)
        with self._pending_lock:
            pending = set(self._pending)
        _, left = wait(pending, timeout)
        if left:
            log.warning("%s: %d task(s) still running after %g s, left so", self.name, len(left), timeout)
            return
        self.shutdown(wait=True)  # every worker is idle: each ends at once


class Closer:
    """Closes what an app started, once, the last added first (what uses a part stops before
    it); at interpreter exit too, if nobody did before.

    A step that fails is logged and the others still run: a store that does not answer
    must not leave the feed polling a stopped engine.
    """

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self._lock = threading.Lock()
        atexit.register(self.close)

    def add(self, name: str, step: Callable[[], object]) -> None:
        with self._lock:
            self._steps.append((name, step))

    def close(self) -> None:
        with self._lock:
            steps, self._steps = self._steps, []
        atexit.unregister(self.close)  # a closed app is not kept alive until the process ends
        for name, step in reversed(steps):
            try:
                step()
            except Exception:
                log.exception("closing %s failed", name)
        if steps:
            log.info("closed: %s", ", ".join(name for name, _ in reversed(steps)))
