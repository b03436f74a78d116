"""Running jobs' status from Kubernetes watches, on the real one-node cluster (1.20).

Every API call the backend's client makes is recorded with the thread that made it, so the
tests tell the request path (the test's thread, through the Flask test client) from the
feed's: a status poll of a running job asks the API server nothing of its state (its log
tail is read at most once a second, with the Job and pod reads that go with it), the end
reaches the store through the watches, and an expired watch makes status polls ask the API
server until the feed has read every live job again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pfcon.compute.base import EngineEvent
from pfcon.compute.feed import ENDS, START, EventFeed
from pfcon.compute.kubernetes import watch
from pfcon.compute.kubernetes.backend import KubernetesBackend
from pfcon.compute.kubernetes.job import JOB_LABEL
from pfcon.errors import BackendUnavailable
from pfcon.jobs import JobService
from pfcon.store.repository import STARTED
from tests import test_status_feed as status_feed
from tests.api_helpers import login
from tests.helpers import TEST_LABEL, wait_for
from tests.test_status_feed import poll, stop_job

pytestmark = pytest.mark.integration


@dataclass
class ApiCalls:
    """Every request the backend's API client sends: (thread name, method, path)."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, backend: KubernetesBackend) -> None:
        call_api = backend.api.call_api

        def counted(method, url, *args, **kwargs):
            with self.lock:
                self.calls.append((threading.current_thread().name, method, urlsplit(url).path))
            return call_api(method, url, *args, **kwargs)

        backend.api.call_api = counted

    def by(self, thread: str) -> list[tuple[str, str]]:
        with self.lock:
            return [(method, path) for name, method, path in self.calls if name == thread]

    def clear(self) -> None:
        with self.lock:
            self.calls.clear()


@pytest.fixture(scope="module")
def module_storebase(real_cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One storeBase and its hostPath claim for the module (a claim takes up to 15 s to bind)."""
    root = tmp_path_factory.mktemp("storeBase")
    return root, real_cluster.storebase_claim(root)


@pytest.fixture
def storebase(module_storebase: tuple[Path, str]) -> Path:
    return module_storebase[0]


@pytest.fixture
def on_cluster(make_app, real_cluster, module_storebase: tuple[Path, str]) -> Iterator[tuple]:
    """An app on the real cluster (its storeBase a hostPath claim), its backend's calls recorded."""
    storebase, claim = module_storebase
    app = make_app(
        STOREBASE="",
        CONTAINER_ENV="kubernetes",
        COMPUTE_VOLUME_TYPE="kubernetes_pvc",
        VOLUME_NAME=claim,
        STOREBASE_MOUNT=str(storebase),
        JOB_NAMESPACE=real_cluster.namespace,
        KUBECONFIG=real_cluster.kubeconfig,
        JOB_LABELS=TEST_LABEL,
    )
    service: JobService = app.extensions["pfcon"]
    backend = getattr(service.backend, "wrapped", service.backend)  # under the metrics' timing proxy
    assert isinstance(service.feed, EventFeed)
    calls = ApiCalls()
    calls.install(backend)
    yield app, service, backend, calls
    service.feed.close()


def start_waiting_job(client, auth, jid: str, service: JobService) -> None:
    """The Docker feed tests' waiting job, given a pod's slower start, until its first log
    line is in the tail."""
    status_feed.start_waiting_job(client, auth, jid, service, start_timeout=120)
    wait_for(lambda: "hello from the job" in poll(client, auth, jid)["logs"], timeout=30)  # tails: 1 s


def job_reads(calls: ApiCalls, thread: str, namespace: str, jid: str) -> int:
    """How often a thread read the Job: a log tail's refresh (at most once a second) reads it
    with the logs, and so does asking the API server for the job's state (at every poll)."""
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{jid}"
    return sum(1 for _, called in calls.by(thread) if called == path)


def refreshes(service: JobService, elapsed: float) -> int:
    """The most log tail refreshes polls during ``elapsed`` seconds may cause."""
    return math.ceil(elapsed / service.tails.refresh) + 1


def test_the_watch_s_events_are_the_feed_s_vocabulary() -> None:
    assert watch.START == START and watch.END in ENDS and watch.CHANGE not in ENDS | {START}


def test_pod_and_job_changes_map_to_what_the_feed_needs() -> None:
    """A running pod vouches for the start by itself; an ended pod and a Job's final condition
    are ends; other pod changes (a pull failure) and deletions make the feed read the job;
    the Job's other changes, bookmarks and other services' objects are left out."""
    owner = {"kind": "Job", "uid": "u-1"}
    labels = {JOB_LABEL: "j"}

    def pod(phase: str, **status: object) -> dict:
        return {
            "metadata": {"labels": labels, "ownerReferences": [owner]},
            "status": {"phase": phase, **status},
        }

    running = pod(
        "Running", containerStatuses=[{"state": {"running": {"startedAt": "2026-11-28T04:00:01Z"}}}]
    )
    assert watch.pod_event("MODIFIED", running) == EngineEvent("j", START, "u-1", "2026-11-28T04:00:01Z")
    assert watch.pod_event("MODIFIED", pod("Succeeded")).action in ENDS
    assert watch.pod_event("MODIFIED", pod("Failed")).action in ENDS
    pulling = pod("Pending", containerStatuses=[{"state": {"waiting": {"reason": "ErrImagePull"}}}])
    assert watch.pod_event("MODIFIED", pulling).action == watch.CHANGE
    assert watch.pod_event("DELETED", running).action == watch.CHANGE
    assert watch.pod_event("BOOKMARK", running) is None
    assert watch.pod_event("ADDED", {"metadata": {"labels": {"app": "other"}}}) is None

    def job(*conditions: tuple[str, str]) -> dict:
        found = [{"type": kind, "status": status} for kind, status in conditions]
        return {"metadata": {"labels": labels, "uid": "u-1"}, "status": {"active": 1, "conditions": found}}

    assert watch.job_event("MODIFIED", job(("Complete", "True"))) == EngineEvent("j", watch.END, "u-1")
    assert watch.job_event("MODIFIED", job(("Failed", "True"))).action in ENDS
    assert watch.job_event("MODIFIED", job(("Failed", "False"))) is None
    assert watch.job_event("MODIFIED", job()) is None  # its pods say what changed
    assert watch.job_event("DELETED", job()).action == watch.CHANGE


def test_a_running_job_and_its_end_reach_the_store_through_the_watches_not_the_request_path(
    on_cluster, real_cluster, storebase: Path, jid: str
) -> None:
    app, service, _, calls = on_cluster
    namespace = real_cluster.namespace
    client = app.test_client()
    auth = login(client)
    start_waiting_job(client, auth, jid, service)
    me = threading.current_thread().name
    # a window is up to a few seconds long: the pod's start spans several, the polls may not
    watched = {thread for thread, _, _ in calls.calls if thread.startswith("pfcon-k8s-watch-")}
    assert watched == {"pfcon-k8s-watch-pods", "pfcon-k8s-watch-jobs"}, ("the feed did not watch", watched)

    calls.clear()
    began = time.monotonic()
    answers = [poll(client, auth, jid) for _ in range(40)]
    elapsed = time.monotonic() - began
    assert {answer["status"] for answer in answers} == {"started"}
    assert all("hello from the job" in answer["logs"] for answer in answers)
    reads = job_reads(calls, me, namespace, jid)
    assert reads <= refreshes(service, elapsed), ("a status poll asked the API server for the state", reads)
    assert not [path for _, path in calls.by("pfcon-event-feed") if path.endswith(f"/jobs/{jid}")]

    stop_job(storebase, jid)
    stopped = time.time()
    seen, polls = poll(client, auth, jid), 1
    while seen["status"] == "started" and time.time() - stopped < 60:
        seen, polls = poll(client, auth, jid), polls + 1
    seen_at = time.time()
    assert seen["status"] == "finishedSuccessfully", seen
    assert "bye" in seen["logs"]
    reads = job_reads(calls, me, namespace, jid)
    # one more read for the final tail, if a poll came between the feed's read and its record
    assert reads <= refreshes(service, time.monotonic() - began) + 1, ("the end was asked for", reads, polls)
    row = service.store.live(jid)
    assert row is not None and row.state != STARTED and row.status == "finishedSuccessfully"
    completed = real_cluster.batch.read_namespaced_job(jid, namespace).status.completion_time.timestamp()
    # completionTime is whole seconds: the end shows within a window and a second of it
    print(f"end seen {seen_at - completed:.2f} s after completionTime, {seen_at - stopped:.2f} s after stop")
    assert seen_at - completed < 3.0, (seen_at - completed, seen_at - stopped)


def test_an_expired_watch_makes_status_ask_the_api_server_until_the_feed_has_read_again(
    on_cluster, real_cluster, storebase: Path, jid: str
) -> None:
    app, service, backend, calls = on_cluster
    client = app.test_client()
    auth = login(client)
    start_waiting_job(client, auth, jid, service)
    try:
        expire_the_watch_once(client, auth, service, backend, calls, real_cluster.namespace, jid)
    finally:
        stop_job(storebase, jid)


def expire_the_watch_once(
    client, auth, service: JobService, backend: KubernetesBackend, calls: ApiCalls, namespace: str, jid: str
) -> None:
    """The next window's watches start at a resourceVersion long compacted away (410 Gone)."""
    follow = backend.watch.events
    expired: list[BackendUnavailable] = []

    def expiring(until: float) -> Iterator[EngineEvent]:
        with backend.watch._lock:
            backend.watch.versions = {watch.PODS: "1", watch.JOBS: "1"}  # long compacted away
        try:
            yield from follow(until)
        except BackendUnavailable as error:
            expired.append(error)
            raise

    backend.watch.events = lambda until: follow(until) if expired else expiring(until)
    assert wait_for(lambda: not service.feed.healthy, interval=0.02, timeout=10)
    assert expired and "410" in expired[0].message, expired
    calls.clear()
    began, asked = time.monotonic(), 0
    while not service.feed.healthy and asked < 5:
        assert poll(client, auth, jid)["status"] == "started"
        asked += 1
    reads = job_reads(calls, threading.current_thread().name, namespace, jid)
    assert asked >= 3, "the feed was distrusted too briefly to tell"
    assert reads > refreshes(service, time.monotonic() - began), "a feed that lost its watch answered"
    assert wait_for(lambda: service.feed.current(jid) is not None, timeout=10), "the feed did not recover"


def test_an_expired_resource_version_raises_rather_than_answer(make_real_backend) -> None:
    backend = make_real_backend()
    backend.watch.versions = {watch.PODS: "1", watch.JOBS: "1"}
    with pytest.raises(BackendUnavailable, match="410"):
        list(backend.events(time.time(), time.time() + 1))
    assert backend.watch.versions == {}, "an expired place was kept"
    backend.poll_all([])  # the feed's full read: the next window starts where it stands
    assert set(backend.watch.versions) == {watch.PODS, watch.JOBS}
    until = time.time() + 1
    list(backend.events(time.time(), until))  # the session's other jobs may show: no 410 now
    assert time.time() >= until - watch.EARLY, "the window ended early"
    assert set(backend.watch.versions) == {watch.PODS, watch.JOBS}
