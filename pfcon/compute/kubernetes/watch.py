"""pfcon's pods and Jobs followed through the API server's watches, one window at a time.

The status feed (:class:`pfcon.compute.feed.EventFeed`) reads an engine's changes in short
windows. Here a window is two watches read side by side, each resuming at the
resourceVersion where the last window (or the feed's last full read,
:meth:`JobWatch.resume_from`) left off, so nothing that happens between windows is missed:

* pods carry the start (a running pod), an image pull failure and a pod's end;
* Jobs carry what only the Job says: its final condition (the Job controller marks a Job
  Complete or Failed a moment after its last pod ended) and its deletion.

A watch that fails (410 Gone once its resourceVersion has expired, a dropped connection, an
API error) or ends before its window raises :class:`~pfcon.errors.BackendUnavailable`, and
the place is forgotten: the feed distrusts what it knows, status polls ask the API server,
and the feed reads every live job again before it watches from a fresh list.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch

from pfcon.compute.base import EngineEvent
from pfcon.compute.kubernetes.job import JOB_LABEL
from pfcon.errors import BackendUnavailable

#: the status feed's names (:mod:`pfcon.compute.feed`) for a start (the event vouches for it),
#: an end (the recording feed reads and records it) and a change (the feed reads the job)
START, END, CHANGE = "start", "die", "change"
#: a Job condition that ends the job (``STATE_TABLE``'s final Job states)
FINAL_CONDITIONS = frozenset({"Complete", "SuccessCriteriaMet", "Failed", "FailureTarget", "Suspended"})
#: beyond its window, how long a watch may stay silent before it counts as hung
READ_SLACK = 10.0
#: a watch that ends this much before its window ended early (the server closed it)
EARLY = 0.05
PODS, JOBS = "pods", "jobs"


@dataclass(frozen=True)
class _Closed:
    """A watch's end: where the next window resumes, or why it failed."""

    kind: str
    version: str | None
    error: BackendUnavailable | None = None


class JobWatch:
    """Watches of pfcon's pods and Jobs in one namespace, resumed window after window."""

    def __init__(self, core: k8s.CoreV1Api, batch: k8s.BatchV1Api, namespace: str) -> None:
        self.namespace = namespace
        self.lists: Mapping[str, Callable[..., Any]] = {
            PODS: core.list_namespaced_pod,
            JOBS: batch.list_namespaced_job,
        }
        self.versions: dict[str, str] = {}
        self._lock = threading.Lock()

    def resume_from(self, versions: Mapping[str, str | None]) -> None:
        """Where to start when no window holds a place: the resourceVersions of the lists a
        full read of the live jobs just made (so no change between that read and the first
        window is missed). A window in progress keeps its own place."""
        with self._lock:
            for kind, version in versions.items():
                if version:
                    self.versions.setdefault(kind, version)

    def events(self, until: float) -> Iterator[EngineEvent]:
        """The changes of pfcon's pods and Jobs until ``until`` (Unix time)."""
        with self._lock:
            start = dict(self.versions)
        seconds = max(1, math.ceil(until - time.time() - EARLY))
        queue: SimpleQueue[EngineEvent | _Closed] = SimpleQueue()
        followers = {kind: watch.Watch() for kind in self.lists}
        for kind, follower in followers.items():
            threading.Thread(
                target=self._read,
                args=(follower, kind, start.get(kind), seconds, until, queue),
                name=f"pfcon-k8s-watch-{kind}",
                daemon=True,
            ).start()
        reached: dict[str, str] = {}
        try:
            while len(reached) < len(self.lists):
                try:
                    item = queue.get(timeout=seconds + 2 * READ_SLACK)
                except Empty:
                    raise BackendUnavailable("kubernetes' watches did not end with their window") from None
                if isinstance(item, _Closed):
                    if item.error is not None:
                        raise item.error
                    reached[item.kind] = item.version or start.get(item.kind) or ""
                else:
                    yield item
        except BaseException:  # a failed watch, or the feed gave up mid-window: start afresh
            with self._lock:
                self.versions.clear()
            for follower in followers.values():
                follower.stop()  # the other watch ends now, not with its window
            raise
        with self._lock:
            self.versions.update({kind: version for kind, version in reached.items() if version})

    def _read(
        self,
        follower: watch.Watch,
        kind: str,
        version: str | None,
        seconds: int,
        until: float,
        queue: SimpleQueue,
    ) -> None:
        """One watch for one window, run in a thread of its own; always ends with a _Closed."""
        options: dict[str, Any] = {
            "label_selector": JOB_LABEL,
            "timeout_seconds": seconds,
            "allow_watch_bookmarks": True,
            "_request_timeout": (5.0, seconds + READ_SLACK),
        }
        try:
            version = options["resource_version"] = version or self._current_version(kind)
            for change in follower.stream(self.lists[kind], self.namespace, **options):
                event = (pod_event if kind == PODS else job_event)(change["type"], change["raw_object"])
                if event is not None:
                    queue.put(event)
            if time.time() < until - EARLY:
                raise BackendUnavailable(f"kubernetes ended the watch of {kind} before its window")
            queue.put(_Closed(kind, follower.resource_version or version))
        except BackendUnavailable as error:
            queue.put(_Closed(kind, None, error))
        except Exception as exc:  # every fault of a watch means: distrust
            queue.put(_Closed(kind, None, BackendUnavailable(_fault(kind, exc))))

    def _current_version(self, kind: str) -> str:
        """Where the watch starts when nothing said where: now (one item listed)."""
        listed = self.lists[kind](
            self.namespace, label_selector=JOB_LABEL, limit=1, _request_timeout=(5.0, 30.0)
        )
        return listed.metadata.resource_version


def pod_event(kind: str, pod: Mapping[str, Any]) -> EngineEvent | None:
    """A pod's change: running is a start, Succeeded/Failed an end, the rest a change."""
    jid = _jid(pod)
    if jid is None or kind == "BOOKMARK":
        return None
    status = pod.get("status") or {}
    phase = status.get("phase")
    if kind != "DELETED" and phase == "Running":
        return EngineEvent(jid, START, _owner_uid(pod), _started_at(status))
    if phase in ("Succeeded", "Failed"):
        return EngineEvent(jid, END, _owner_uid(pod))
    return EngineEvent(jid, CHANGE, _owner_uid(pod))


def job_event(kind: str, job: Mapping[str, Any]) -> EngineEvent | None:
    """A Job's final condition is an end and its deletion a change; the rest its pods say."""
    jid = _jid(job)
    if jid is None or kind == "BOOKMARK":
        return None
    uid = (job.get("metadata") or {}).get("uid")
    if kind == "DELETED":
        return EngineEvent(jid, CHANGE, uid)
    conditions = (job.get("status") or {}).get("conditions") or []
    if any(c.get("status") == "True" and c.get("type") in FINAL_CONDITIONS for c in conditions):
        return EngineEvent(jid, END, uid)
    return None


def _jid(obj: Mapping[str, Any]) -> str | None:
    jid = ((obj.get("metadata") or {}).get("labels") or {}).get(JOB_LABEL)
    return jid if isinstance(jid, str) and jid else None


def _owner_uid(pod: Mapping[str, Any]) -> str | None:
    """The uid of the pod's Job (what the store keeps as the job's engine id)."""
    for owner in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == "Job":
            return owner.get("uid")
    return None


def _started_at(status: Mapping[str, Any]) -> str:
    """When the pod's (first) container started running, as the API server wrote it."""
    for container in status.get("containerStatuses") or []:
        running = (container.get("state") or {}).get("running") or {}
        if running.get("startedAt"):
            return str(running["startedAt"])
    return str(status.get("startTime") or "")


def _fault(kind: str, exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status == 410:
        return f"kubernetes' watch of {kind} expired (410 Gone): it is read again from a fresh list"
    if status:
        return f"kubernetes refused the watch of {kind} (HTTP {status}): {getattr(exc, 'reason', '')}"
    return f"kubernetes' watch of {kind} failed ({type(exc).__name__}: {exc})"
