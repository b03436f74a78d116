"""The queue's decisions across processes, on SQLite and a real PostgreSQL: eight schedulers
sharing one store never hand out more than the capacity, and each job is admitted once."""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from pfcon.admission import devices
from pfcon.admission.policy import Amount
from pfcon.admission.queue import AdmissionQueue, Estimates, amount_of
from pfcon.compute.feed import records_end_of
from pfcon.settings import AdmissionSettings
from pfcon.store import JobRow, JobStore
from pfcon.store.model import process_owner
from pfcon.store.repository import ADMITTED_MESSAGE, FINISHED_ERROR, FINISHED_OK, NewJob, utc_now
from pfcon.store.tables import jobs
from tests.test_store import SPEC, _open

CAPACITY = AdmissionSettings(queue=True, cpus=4, memory_mib=4096, gpus=0)


def _no_engine() -> None:
    raise AssertionError("the capacity is set: the engine is not asked")


def _schedule_all(
    stores: list[JobStore],
    settings: AdmissionSettings,
    count: int,
    started: Callable[[JobRow], None],
    look: Callable[[], None],
    one_by_one: bool = False,
) -> None:
    """One scheduler per store picks, starts and ends jobs until ``count`` were started (each
    told to ``started``), while ``look`` reads the store again and again in a thread. A
    scheduler ends what it started after a short sleep, or (``one_by_one``) each job after
    its own, so the next pick finds some of their share held and some free."""
    lock, seen, done = threading.Lock(), set(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            look()

    def scheduler(index: int) -> None:
        queue = AdmissionQueue(settings, stores[index], _no_engine)
        owner = f"scheduler:{index}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with lock:
                if len(seen) == count:
                    return
            rows, never = queue.pick(owner)
            assert not never
            for row in rows:
                assert stores[index].mark_started(row.id, owner=owner)
                with lock:
                    seen.add(row.id)
                    started(row)
            if not one_by_one:
                time.sleep(random.uniform(0, 0.01))
            for row in rows:  # the job ran; its end frees its share
                if one_by_one:
                    time.sleep(random.uniform(0, 0.01))
                assert stores[index].mark_finished(row.id, FINISHED_OK, "exited", exit_code=0)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(len(stores)) as pool:
        list(pool.map(scheduler, range(len(stores))))
    done.set()
    watcher.join()


def test_eight_schedulers_never_hand_out_more_than_the_capacity(database_url: str) -> None:
    stores = [_open(database_url) for _ in range(8)]
    sizes = [
        random.Random(n).choice([(500, 256), (1000, 512), (2000, 1024), (1500, 2048)]) for n in range(60)
    ]
    ids = set()
    for n, (cpu, memory) in enumerate(sizes):
        row = stores[0].accept(
            NewJob(jid=f"q-{n}", auid=f"user{n % 3}", cpu_millicores=cpu, memory_mib=memory)
        )
        assert stores[0].queue(row.id, {**SPEC, "jid": f"q-{n}"})
        ids.add(row.id)
    admitted: Counter[int] = Counter()
    peak = [Amount()]

    def look() -> None:
        holding, _ = stores[0].admission_view()
        used = sum((amount_of(row) for row in holding), Amount())
        peak[0] = Amount(*(max(a, b) for a, b in zip(peak[0].values(), used.values(), strict=True)))

    def started(row: JobRow) -> None:
        admitted[row.id] += 1

    _schedule_all(stores, CAPACITY, len(ids), started, look)
    events = {job_id: [e.message for e in stores[0].events(job_id)] for job_id in ids}
    for opened in stores:
        opened.close()
    assert set(admitted) == ids and set(admitted.values()) == {1}
    assert peak[0].fits_in(Amount(4000, 4096, 0)), peak[0]
    assert all(messages.count(ADMITTED_MESSAGE) == 1 for messages in events.values())


def test_schedulers_never_give_one_gpu_to_two_jobs_and_the_record_keeps_it(database_url: str) -> None:
    """Four schedulers, three GPUs named by the engine's IDs, 24 jobs of 1 or 2 GPUs: at every
    moment the jobs holding resources name disjoint GPUs, as many as they asked, and a job's
    record names its GPUs for the start (and for a restarted service's next decision)."""
    stores = [_open(database_url) for _ in range(4)]
    settings = AdmissionSettings(
        True, cpus=64, memory_mib=65536, gpus=3, gpu_devices=("GPU-a", "GPU-b", "GPU-c")
    )
    asked = {}
    for n in range(24):
        gpus = random.Random(n).choice([1, 1, 2])
        row = stores[0].accept(NewJob(jid=f"g-{n}", cpu_millicores=100, memory_mib=64, gpus=gpus))
        assert stores[0].queue(row.id, {**SPEC, "jid": f"g-{n}", "resources": {"gpus": gpus}})
        asked[row.id] = gpus
    clashes: list[list[tuple[str, ...]]] = []
    given: dict[int, tuple[str, ...]] = {}

    def look() -> None:
        holding, _ = stores[0].admission_view()
        held = [devices.devices_of(row.spec) for row in holding]
        names = [name for names in held for name in names]
        if len(names) != len(set(names)) or not set(names) <= {"GPU-a", "GPU-b", "GPU-c"}:
            clashes.append(held)

    def started(row: JobRow) -> None:
        given[row.id] = devices.devices_of(row.spec)

    _schedule_all(stores, settings, len(asked), started, look, one_by_one=True)
    recorded = {job_id: devices.devices_of(stores[0].get(job_id).spec) for job_id in asked}
    for opened in stores:
        opened.close()
    assert not clashes, clashes[:3]
    assert recorded == given and set(given) == set(asked)
    assert all(len(set(names)) == asked[job_id] for job_id, names in given.items())


def test_run_time_estimates_come_from_the_newest_successful_runs(database_url: str) -> None:
    """The longest of the last five successful runs of the same image and command, plus 10 %;
    failures, other commands and other images do not count; none without such a run."""
    store = _open(database_url)

    def ran(n: int, cmd: str, seconds: float, status: str = FINISHED_OK, image: str = "img") -> None:
        row = store.accept(NewJob(jid=f"r-{n}", image=image, cmd=cmd, cpu_millicores=100, memory_mib=64))
        assert store.queue(row.id, {**SPEC, "jid": f"r-{n}"})
        assert store.claim_job(row.id, "test") and store.mark_started(row.id, owner="test")
        assert store.mark_finished(row.id, status, "ended", exit_code=0, owner="test")
        with store.engine.begin() as conn:  # the run took ``seconds``: move its start back
            this = jobs.c.id == row.id
            finished = conn.execute(sa.select(jobs.c.finished_at).where(this)).scalar_one()
            conn.execute(sa.update(jobs).where(this).values(started_at=finished - timedelta(seconds=seconds)))

    for n, seconds in enumerate([100, 4, 5, 3, 6, 2]):  # the 100 s run is the sixth newest
        ran(n, "work --fast", seconds)
    ran(10, "work --fast", 50, status=FINISHED_ERROR)
    ran(11, "work --slow", 30)
    ran(12, "work --fast", 40, image="other")
    assert sorted(store.run_times("img", "work --fast")) == pytest.approx([2, 3, 4, 5, 6])
    queued = [
        store.accept(NewJob(jid=f"w-{n}", image="img", cmd=cmd, cpu_millicores=100, memory_mib=64))
        for n, cmd in enumerate(["work --fast", "work --new"])
    ]
    known = Estimates(store).lookup([], queued)
    assert known[("img", "work --fast")] == pytest.approx(6 * 1.1)
    assert known[("img", "work --new")] is None
    store.close()


def test_has_waiting_sees_only_due_unclaimed_queued_jobs(database_url: str) -> None:
    """The scheduler's cheap look before a pass: accepted, claimed, pausing and started jobs
    do not count; a queued one does, and a pausing one again once its retry time came."""
    store = _open(database_url)
    assert not store.has_waiting()
    staged = store.accept(NewJob(jid="w-staging"))
    assert not store.has_waiting()  # accepted, its input still being staged
    assert store.queue(staged.id, {**SPEC, "jid": "w-staging"})
    assert store.has_waiting()
    assert store.has_waiting(kind="copy") is False
    assert store.claim_job(staged.id, "scheduler:a") is not None
    assert not store.has_waiting()  # claimed: being started
    now = utc_now()
    assert store.wait_for_engine(staged.id, "engine silent", now + timedelta(hours=1), now)
    assert not store.has_waiting()  # pausing until its retry time
    with store.engine.begin() as conn:
        due = now - timedelta(seconds=1)
        conn.execute(sa.update(jobs).where(jobs.c.id == staged.id).values(retry_at=due))
    assert store.has_waiting()
    assert store.claim_job(staged.id, "scheduler:a") is not None
    assert store.mark_started(staged.id, owner="scheduler:a")
    assert not store.has_waiting()


def test_the_end_of_a_job_is_recorded_by_the_feed_of_the_process_that_started_it(database_url: str) -> None:
    """Every process's feed sees every end; only the starter's (or any, once it is gone)
    reads the final log tail and writes it."""
    store = _open(database_url)
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone, alive = f"{socket.gethostname()}:{dead.pid}", f"{socket.gethostname()}:1"
    owners = [process_owner(), gone, "another-host:1", alive]
    rows = {owner: store.accept(NewJob(jid=f"end-{n}"), owner=owner) for n, owner in enumerate(owners)}
    assert {owner: records_end_of(row) for owner, row in rows.items()} == {
        process_owner(): True,
        gone: True,  # any process records it
        "another-host:1": False,  # a replica elsewhere: its own feed, settle or a poll records it
        alive: False,
    }
