"""The metrics' state gauges, and ``/metrics`` on a separate bind.

``PFCON_METRICS=HOST:PORT`` makes the gunicorn master serve ``/metrics`` on that address
(prometheus_client's own little server, no credentials) with every worker's values summed;
the API's port then has no ``/metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pfcon.admission.queue import QueueStats
from pfcon.observability.capacity import HostCapacity, state_reader
from pfcon.observability.metrics import StateCollector, exposition_registry
from pfcon.store import JobStore

log = logging.getLogger(__name__)


def state_collector(
    store: JobStore, host: HostCapacity, queue: Callable[[], QueueStats | None] | None = None
) -> StateCollector:
    return StateCollector(state_reader(store, host, queue))


def serve_metrics_if_bound() -> None:
    from pfcon.settings import load_settings

    settings = load_settings()
    if settings.observability.metrics != "bind" or not settings.observability.metrics_bind:
        return
    from prometheus_client import start_http_server

    from pfcon.compute import build_backend
    from pfcon.store import open_store

    host, _, port = settings.observability.metrics_bind.rpartition(":")
    backend, _volumes = build_backend(settings)
    collector = state_collector(open_store(settings), HostCapacity(backend))
    start_http_server(int(port), addr=host.strip("[]"), registry=exposition_registry(collector))
    log.info("metrics served at http://%s/metrics", settings.observability.metrics_bind)
