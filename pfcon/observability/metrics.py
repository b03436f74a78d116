"""pfcon's Prometheus metrics, defined once, and their exposition.

Counters and histograms are the official ``prometheus_client``'s. Under gunicorn each worker
writes its values to ``PROMETHEUS_MULTIPROC_DIR`` (made fresh by :mod:`pfcon.gunicorn_config`)
and a scrape sums every worker's files, so totals are right whichever worker answers. The
gauges of state (jobs by status, queue, capacity, the store's health) are not counted in
workers: they are read from the job store when scraped (:class:`StateCollector`), so they
agree across workers and replicas and survive restarts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from pfcon.observability.multiproc import MULTIPROC_ENV

#: seconds: from a fast start (ms) to day-long jobs
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
#: seconds of one engine or storage call
CALL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SUBMITTED = Counter("pfcon_jobs_submitted_total", "Jobs accepted (201)", ["api"])
REFUSED = Counter("pfcon_jobs_refused_total", "Submissions refused, by reason", ["api", "reason"])
FINISHED = Counter(
    "pfcon_jobs_finished_total", "Jobs seen reaching a terminal status (counted once)", ["api", "status"]
)
OPERATIONS = Counter(
    "pfcon_operations_total", "Operations on jobs (start, output, delete, ...) by outcome",
    ["api", "operation", "outcome"],
)  # fmt: skip
QUEUE_WAIT = Histogram(
    "pfcon_job_queue_wait_seconds", "From acceptance to the engine's start", ["api"], buckets=DURATION_BUCKETS
)
RUN_TIME = Histogram(
    "pfcon_job_run_seconds", "From start to a terminal status", ["api", "status"], buckets=DURATION_BUCKETS
)
STAGING = Histogram(
    "pfcon_staging_seconds", "Staging a job's input", ["api", "storage"], buckets=DURATION_BUCKETS
)
DELIVERY = Histogram(
    "pfcon_output_delivery_seconds", "Delivering a job's output, to its last byte", ["api", "storage"],
    buckets=DURATION_BUCKETS,
)  # fmt: skip
BYTES_IN = Counter("pfcon_input_bytes_total", "Bytes uploaded with submissions", ["api"])
BYTES_OUT = Counter("pfcon_output_bytes_total", "Bytes of job output delivered", ["api"])
ENGINE_CALLS = Histogram(
    "pfcon_engine_call_seconds", "Calls to the container engine or scheduler", ["engine", "call"],
    buckets=CALL_BUCKETS,
)  # fmt: skip
ENGINE_ERRORS = Counter(
    "pfcon_engine_call_errors_total", "Engine calls that raised, by error", ["engine", "call", "error"]
)
STORAGE_CALLS = Histogram(
    "pfcon_storage_call_seconds", "Calls to the storage strategy", ["storage", "call"], buckets=CALL_BUCKETS
)
STORAGE_ERRORS = Counter(
    "pfcon_storage_call_errors_total", "Storage calls that raised, by error", ["storage", "call", "error"]
)


@dataclass(frozen=True)
class Capacity:
    """What a local engine can hand out and what the running jobs leave free (issue 17 feeds it)."""

    total_cpus: float
    free_cpus: float
    total_memory_bytes: int
    free_memory_bytes: int
    total_gpus: int
    free_gpus: int
    queue_length: int


@dataclass(frozen=True)
class StoreState:
    """What the job store says when scraped: live jobs by (api, status), and the capacity."""

    jobs: dict[tuple[str, str], int]
    capacity: Capacity | None


class StateCollector(Collector):
    """Gauges read from the job store at scrape time; a failing read is ``pfcon_store_up 0``."""

    def __init__(self, read: Callable[[], StoreState]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        began = time.perf_counter()
        try:
            state = self.read()
        except Exception:
            state = None
        up = GaugeMetricFamily("pfcon_store_up", "1 if the job store answered this scrape")
        up.add_metric([], 0 if state is None else 1)
        yield up
        took = GaugeMetricFamily("pfcon_store_read_seconds", "How long this scrape's store read took")
        took.add_metric([], time.perf_counter() - began)
        yield took
        if state is None:
            return
        jobs = GaugeMetricFamily("pfcon_jobs", "Live (not deleted) jobs by status", labels=["api", "status"])
        for (api, status), count in sorted(state.jobs.items()):
            jobs.add_metric([api, status], count)
        yield jobs
        if state.capacity is not None:
            yield from _capacity_gauges(state.capacity)


def _capacity_gauges(capacity: Capacity) -> Iterator[Metric]:
    for name, help_text in (
        ("queue_length", "Jobs accepted and not yet started"),
        ("total_cpus", "CPUs the local engine has"),
        ("free_cpus", "CPUs not asked for by running jobs"),
        ("total_memory_bytes", "Memory the local engine has"),
        ("free_memory_bytes", "Memory not asked for by running jobs"),
        ("total_gpus", "GPUs the local engine has"),
        ("free_gpus", "GPUs not asked for by running jobs"),
    ):
        prefix = "pfcon_" if name == "queue_length" else "pfcon_capacity_"
        gauge = GaugeMetricFamily(prefix + name, help_text)
        gauge.add_metric([], getattr(capacity, name))
        yield gauge


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition_registry(state: StateCollector | None) -> CollectorRegistry:
    """The registry a scrape reads: every worker's files under gunicorn, this process's otherwise."""
    directory = multiprocess_dir()
    if directory is None:
        registry = CollectorRegistry()
        registry.register(_ProcessCounters())
    else:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
    if state is not None:
        registry.register(state)
    return registry


class _ProcessCounters(Collector):
    """This process's counters and histograms (single-process mode: tests, the Flask server)."""

    def collect(self) -> Iterator[Metric]:
        for metric in REGISTRY.collect():
            if metric.name.startswith("pfcon_"):
                yield metric


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
