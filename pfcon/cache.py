"""A small, thread-safe cache with a bounded age.

A finished container does not change, so its status and logs are answered from memory for
a few seconds instead of two engine round trips each poll; the bounded age is how late a
job removed behind pfcon's back may be noticed. Callers guard it with the on-disk job
record, so a job deleted through any worker process is never answered from here.

The job service keeps running jobs' records here for a second
(:meth:`pfcon.jobs.JobService._started_row`), guarded by the status feed instead.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class ExpiringCache(Generic[V]):
    def __init__(self, max_age: float, max_entries: int = 10_000) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if time.monotonic() - item[0] > self.max_age:
                del self._items[key]
                return None
            return item[1]

    def put(self, key: str, value: V) -> None:
        if self.max_age <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
