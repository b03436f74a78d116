"""Every engine and storage call timed, and its errors counted, by wrapping each once at start-up.

The job service and the starter keep calling ``backend.submit(...)`` or ``storage.output(...)``
as before; the wrapper is the only place that knows about metrics.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from prometheus_client import Counter, Histogram

from pfcon.observability import metrics


class Timed:
    """A transparent proxy that times each public method call of ``target``."""

    def __init__(self, target: Any, label: str, seconds: Histogram, errors: Counter) -> None:
        self._target = target
        self._label = label
        self._seconds = seconds
        self._errors = errors

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_") or not callable(value):
            return value

        @functools.wraps(value)
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return value(*args, **kwargs)
            except Exception as error:
                self._errors.labels(self._label, name, type(error).__name__).inc()
                raise
            finally:
                self._seconds.labels(self._label, name).observe(time.perf_counter() - began)

        return timed

    @property
    def wrapped(self) -> Any:
        return self._target


def timed_engine(backend: Any) -> Any:
    return Timed(backend, backend.name, metrics.ENGINE_CALLS, metrics.ENGINE_ERRORS)


def timed_storage(storage: Any) -> Any:
    return Timed(storage, storage.name, metrics.STORAGE_CALLS, metrics.STORAGE_ERRORS)
