"""Which container names the engine holds, as of a recent listing, to keep submits off the engine.

A jid is a container name, and a name some other container holds (another service's job on
a shared engine, a container of the operator's) must not be taken for this job: the submit
answers 409 at once. Asking the engine for the name on every submit put one engine round trip
on the request path, and while dockerd is busy starting the previous jobs' containers that
call alone cost a sequential submit 40 ms of its 60 (``bench/bench_store.py``). Instead the
process keeps the names of a recent listing of every container, refreshed off the request
path at most every :data:`REFRESH_SECONDS` while submits come in:

* a name the snapshot does not hold is free as far as the engine said a moment ago: no call.
  A container created under that name since is caught by the job's create, which fails the
  job with the engine's words ("a container of that name is not pfcon's") — the same race a
  check-then-create always had, over a window of seconds instead of milliseconds;
* a name it holds is asked of the engine, as before (a job deleted meanwhile freed it);
* with no snapshot younger than :data:`TRUST_SECONDS` (idle, or the listing failed) every
  submit asks the engine, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

#: a snapshot older than this is refreshed (in the background) by the next submit
REFRESH_SECONDS = 1.0
#: a snapshot older than this is not used at all
TRUST_SECONDS = 10.0


class NameSnapshot:
    """The engine's container names as of a recent listing (see the module docstring)."""

    def __init__(
        self,
        list_names: Callable[[], Iterable[str]],
        refresh_seconds: float = REFRESH_SECONDS,
        trust_seconds: float = TRUST_SECONDS,
    ) -> None:
        self._list_names = list_names
        self.refresh_seconds = refresh_seconds
        self.trust_seconds = trust_seconds
        self._names: frozenset[str] = frozenset()
        self._listed_at = float("-inf")
        self._refreshing = False
        self._lock = threading.Lock()

    def free(self, name: str) -> bool:
        """True if the last recent listing had no container of this name; False means "ask
        the engine" (held, or no recent listing). Starts a refresh when the listing is old."""
        with self._lock:
            age = time.monotonic() - self._listed_at
            names = self._names
            if age >= self.refresh_seconds and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="pfcon-names", daemon=True).start()
        return age < self.trust_seconds and name not in names

    def _refresh(self) -> None:
        began = time.monotonic()
        names: frozenset[str] | None = None
        try:
            names = frozenset(self._list_names())
        except Exception as error:  # the engine is away: submits ask it themselves (and fail there)
            log.debug("listing the engine's container names failed: %s", error)
        with self._lock:
            self._refreshing = False
            if names is not None:
                self._names, self._listed_at = names, began
