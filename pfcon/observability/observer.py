"""The one place the job service and the starter report what happens, as Prometheus metrics.

The job store records each job's life; the service calls a hook here when the store accepts
a change (a start, a finish), so a job polled through two worker processes at once is counted
once: the store's conditional update decides, the hook only counts what it decided.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

from werkzeug.exceptions import HTTPException

from pfcon.errors import PfconError
from pfcon.observability import metrics
from pfcon.storage.base import ListingOutput, ZipOutput
from pfcon.store import JobRow
from pfcon.store.repository import FINISHED_ERROR, utc_now

CLASSIC = "classic"  # pfcon 5.3's /api/v1/jobs/ API
PFCON6 = "pfcon6"  # pfcon 6's copyjobs/, pluginjobs/, uploadjobs/ and deletejobs/


def reason_of(error: BaseException) -> str:
    """A refusal's reason label: the domain error's name in snake case, or the HTTP code."""
    if isinstance(error, HTTPException):
        return f"http_{error.code}"
    name = type(error).__name__ if isinstance(error, PfconError) else "internal_error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Observer:
    def __init__(self, storage_name: str) -> None:
        self.storage_name = storage_name

    @contextlib.contextmanager
    def submission(self, api: str, body_bytes: int) -> Iterator[None]:
        """Around a whole submit request: counts it accepted (and its body's bytes), or refused
        with its reason. The body is counted as a whole: a zip storage unpacks the upload as it
        arrives, so its bytes are never on disk to be measured."""
        try:
            yield
        except Exception as error:
            metrics.REFUSED.labels(api, reason_of(error)).inc()
            raise
        metrics.SUBMITTED.labels(api).inc()
        metrics.BYTES_IN.labels(api).inc(body_bytes)

    def accepted(self, api: str, staging_seconds: float) -> None:
        metrics.STAGING.labels(api, self.storage_name).observe(staging_seconds)

    def started(self, row: JobRow) -> None:
        """The store recorded ``row``'s start (once)."""
        metrics.OPERATIONS.labels(row.api, "start", "ok").inc()
        metrics.QUEUE_WAIT.labels(row.api).observe(max(0.0, (utc_now() - row.accepted_at).total_seconds()))

    def start_failed(self, row: JobRow) -> None:
        """The store recorded that ``row`` could not be started (once)."""
        metrics.OPERATIONS.labels(row.api, "start", "failed").inc()
        self.finished(row, FINISHED_ERROR)

    def finished(self, row: JobRow, status: str) -> None:
        """The store recorded ``row``'s terminal status (once); ``row`` is as it was before."""
        metrics.FINISHED.labels(row.api, status).inc()
        if row.started_at is not None:
            metrics.RUN_TIME.labels(row.api, status).observe((utc_now() - row.started_at).total_seconds())

    def delivering(self, api: str, output: ZipOutput | ListingOutput) -> ZipOutput | ListingOutput:
        """A zip whose bytes, and time to its last byte, are counted as the client reads it."""
        if isinstance(output, ListingOutput):
            return output
        return ZipOutput(output.filename, self._counted(api, output.chunks))

    def _counted(self, api: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        began = time.perf_counter()
        for chunk in chunks:
            metrics.BYTES_OUT.labels(api).inc(len(chunk))
            yield chunk
        metrics.DELIVERY.labels(api, self.storage_name).observe(time.perf_counter() - began)

    @contextlib.contextmanager
    def operation(self, api: str, name: str) -> Iterator[None]:
        """Around a request on a job (output, delete): counted ``ok`` or by the error's reason."""
        try:
            yield
        except Exception as error:
            metrics.OPERATIONS.labels(api, name, reason_of(error)).inc()
            raise
        metrics.OPERATIONS.labels(api, name, "ok").inc()
