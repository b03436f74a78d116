"""The job store on SQLite and on a real PostgreSQL: lifecycle, exactly-once claims, deletion,
history, pruning, migrations under concurrency, and the import of old ``job.json`` records."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from pfcon.errors import InvalidInput, JobExists, StoreUnavailable
from pfcon.store import database, legacy, migrate
from pfcon.store.repository import (
    DELETED,
    FINISHED,
    FINISHED_ERROR,
    FINISHED_OK,
    QUEUED,
    STARTED,
    HistoryQuery,
    JobStore,
    NewJob,
    utc_now,
)

SPEC = {"jid": "j", "image": "busybox", "command": ["true"]}


def _open(url: str) -> JobStore:
    engine = database.create(url)
    migrate.upgrade(engine)
    return JobStore(engine, url)


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    opened = _open(database_url)
    yield opened
    opened.close()


def _queued(store: JobStore, jid: str, **extra) -> int:
    row = store.accept(NewJob(jid=jid, image="img", auid="alice", **extra))
    assert store.queue(row.id, {**SPEC, "jid": jid})
    return row.id


def test_a_job_goes_through_its_lifecycle_with_one_event_per_change(store: JobStore) -> None:
    job_id = _queued(store, "j1")
    [claimed] = store.claim("me:1", 10)
    assert claimed.id == job_id and claimed.claimed and claimed.spec["jid"] == "j1"
    assert store.mark_started(job_id, owner="me:1")
    assert store.mark_finished(job_id, FINISHED_OK, "exited", exit_code=0, logs="x" * 200_000)
    assert not store.mark_finished(job_id, FINISHED_ERROR, "again")  # recorded once
    row = store.live("j1")
    assert row is not None and row.state == FINISHED and row.status == FINISHED_OK and row.exit_code == 0
    assert not row.claimed and len(row.logs.encode()) <= 64 * 1024  # a capped tail, not the log
    assert row.run_seconds is not None and row.run_seconds >= 0 and row.wait_seconds >= 0
    assert store.tombstone("j1").id == job_id
    assert store.live("j1") is None and store.latest("j1").state == DELETED
    assert store.latest("j1").logs is None  # no logs kept in history
    states = [event.state for event in store.events(job_id)]
    assert states == ["accepted", "queued", "started", "finished", "deleted"]


def test_an_accept_commits_by_itself_and_later_writes_stay_synchronous(store: JobStore) -> None:
    """On PostgreSQL the accept's commit does not wait for the disk (the queue's does, and
    covers it): the setting must end with the accept's own transaction, never stay on the
    pooled connection for the ``queue`` that makes the 201 durable."""
    row = store.accept(NewJob(jid="j-async", image="img", auid="alice"))
    assert store.get(row.id).jid == "j-async"  # committed: another statement reads it
    if store.sqlite:
        return
    with store.engine.connect() as conn:  # the pool's one connection, the accept's
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        assert conn.exec_driver_sql("SELECT count(*) FROM jobs WHERE jid = 'j-async'").scalar() == 1
    assert store.queue(row.id, {**SPEC, "jid": "j-async"})
    assert [event.state for event in store.events(row.id)] == ["accepted", "queued"]


def test_one_live_row_per_jid_and_the_jid_is_free_again_after_delete(store: JobStore) -> None:
    first = _queued(store, "dup")
    with pytest.raises(JobExists):
        store.accept(NewJob(jid="dup"))
    store.accept(NewJob(jid="dup", kind="copy", api="pfcon6"))  # an operation of the same jid
    store.tombstone("dup")
    second = _queued(store, "dup")
    assert second != first and store.live("dup").id == second
    assert [row.id for row in store.history(HistoryQuery(jid="dup", kind="plugin")).items] == [second, first]


def test_a_new_attempt_replaces_the_live_row_in_one_write(store: JobStore) -> None:
    """An operation run again (its process died) gets a new row; a reader polling meanwhile
    finds the old attempt or the new one, never neither (CI once saw a 404 between the two)."""
    first = store.accept(NewJob(jid="op", kind="copy", api="pfcon6"))
    seen: list[int | None] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            row = store.live("op", "copy")
            seen.append(None if row is None else row.id)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(30):
            latest = store.accept(NewJob(jid="op", kind="copy", api="pfcon6"), replace_live=True)
    finally:
        done.set()
        reader.join()
    assert None not in seen and len(seen) > 30
    assert store.live("op", "copy").id == latest.id
    assert store.latest("op", "copy").id == latest.id
    assert [event.state for event in store.events(first.id)] == ["accepted", "deleted"]


def test_claims_are_exactly_once_across_many_claimers(database_url: str) -> None:
    """Eight claimers, each with its own engine and pool (as separate processes would be)."""
    stores = [_open(database_url) for _ in range(8)]
    ids = {_queued(stores[0], f"many-{n}") for n in range(100)}
    claims: Counter[int] = Counter()
    lock = threading.Lock()

    def claimer(index: int) -> None:
        while True:
            rows = stores[index].claim(f"claimer:{index}", 3)
            if (not rows and not stores[index].queued()) or len(claims) >= len(ids):
                return
            for row in rows:
                assert stores[index].mark_started(row.id, owner=f"claimer:{index}")
                with lock:
                    claims[row.id] += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(claimer, range(8)))
    for opened in stores:
        opened.close()
    assert set(claims) == ids and set(claims.values()) == {1}


def test_a_start_waiting_for_the_engine_is_due_again_at_its_time(store: JobStore) -> None:
    job_id = _queued(store, "wait")
    assert len(store.claim("me:1", 1)) == 1
    since = utc_now()
    assert store.wait_for_engine(job_id, "waiting for the engine", since + timedelta(seconds=60), since)
    assert store.claim("me:1", 1) == []  # not before its time
    assert store.live("wait").message == "waiting for the engine" and not store.live("wait").claimed
    assert store.claim_job(job_id, "me:2").waiting_since == since  # an admission policy may take it


def test_claims_of_dead_or_stale_holders_go_back_to_the_queue(store: JobStore) -> None:
    _queued(store, "a")
    _queued(store, "b")
    store.claim("gone:1", 1)
    store.claim("alive:2", 1)
    assert store.release_stale(timedelta(minutes=5), is_dead=lambda owner: owner == "gone:1") == 1
    assert [row.jid for row in store.claim("me:3", 5)] == ["a"]
    assert store.release_stale(timedelta(0), is_dead=lambda owner: False) == 2  # lease over


def test_a_delete_during_a_start_wins_and_the_start_is_told(store: JobStore) -> None:
    job_id = _queued(store, "race")
    store.claim("me:1", 1)
    row = store.tombstone("race")
    assert row.claimed and row.state == QUEUED
    assert not store.mark_started(job_id, owner="me:1")
    store.unclaim(job_id)
    assert store.get(job_id).state == DELETED and not store.get(job_id).claimed


def test_a_failed_delete_is_undone(store: JobStore) -> None:
    job_id = _queued(store, "undo")
    store.claim("me:1", 1)
    store.mark_started(job_id, owner="me:1")
    row = store.tombstone("undo")
    store.restore(row, "the engine does not answer")
    assert store.live("undo").state == STARTED
    assert store.events(job_id)[-1].message == "deletion failed: the engine does not answer"


def test_staging_interrupted_by_a_dead_process_ends_with_the_reason(store: JobStore) -> None:
    store.accept(NewJob(jid="cut"), owner="host:1")
    assert store.fail_interrupted(is_dead=lambda owner: owner == "host:1") == 1
    row = store.live("cut")
    assert row.status == FINISHED_ERROR and "stopped while staging" in row.message


def test_history_is_newest_first_filtered_and_paged(store: JobStore) -> None:
    for n in range(7):
        job_id = _queued(store, f"h{n}")
        if n % 2:
            store.mark_finished(job_id, FINISHED_ERROR, "failed to start")
    pages, cursor = [], None
    while True:
        page = store.history(HistoryQuery(limit=3, cursor=cursor))
        pages.append([row.jid for row in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [["h6", "h5", "h4"], ["h3", "h2", "h1"], ["h0"]]
    failed = store.history(HistoryQuery(status=FINISHED_ERROR))
    assert [row.jid for row in failed.items] == ["h5", "h3", "h1"]
    assert store.history(HistoryQuery(auid="bob")).items == []
    assert store.history(HistoryQuery(until=utc_now() - timedelta(hours=1))).items == []
    assert store.counts() == {"notStarted": 4, FINISHED_ERROR: 3}
    with pytest.raises(InvalidInput):
        store.history(HistoryQuery(cursor="not-a-cursor"))


def test_prune_drops_only_deleted_jobs_past_the_window(store: JobStore) -> None:
    kept = _queued(store, "live")
    gone = _queued(store, "old")
    store.tombstone("old")
    assert store.prune(utc_now() - timedelta(days=1)) == 0
    assert store.prune(utc_now() + timedelta(seconds=1)) == 1
    assert store.get(gone) is None and store.events(gone) == [] and store.get(kept) is not None


def migrate_from_four_starters_at_once(url: str) -> None:
    """Four starters, each with its own engine, bring ``url`` to head together; each says head."""
    engines = [database.create(url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(migrate.upgrade, engines)) == [migrate.head()] * 4
        assert migrate.current(engines[0]) == migrate.head()
    finally:
        for engine in engines:
            engine.dispose()


def test_migrations_from_many_starters_at_once_run_once(database_url: str) -> None:
    migrate_from_four_starters_at_once(database_url)


def test_a_new_sqlite_database_migrated_by_four_starters_at_once_is_never_locked(tmp_path: Path) -> None:
    """Each starter's first connection switches a new database to WAL; before the lock file was
    taken ahead of it, one round in about ten failed with ``database is locked`` (so twenty)."""
    for round_number in range(20):
        migrate_from_four_starters_at_once(f"sqlite:///{tmp_path}/round{round_number}/pfcon.db")


def test_old_job_records_are_imported_once(store: JobStore, tmp_path: Path) -> None:
    root = tmp_path / "storeBase"
    records = {
        "old-accepted": {"state": "accepted", "spec": {**SPEC, "jid": "old-accepted"}},
        "old-running": {"state": "submitted", "spec": {**SPEC, "jid": "old-running"}},
        "old-failed": {"state": "failed", "message": "failed to start: no such image"},
    }
    for jid, record in records.items():
        (root / f"key-{jid}").mkdir(parents=True)
        base = {"jid": jid, "image": "busybox", "cmd": "true", "accepted_at": "2026-11-01T10:00:00Z"}
        (root / f"key-{jid}/job.json").write_text(json.dumps({**base, "message": "", **record}))
    (root / "key-old-junk").mkdir()
    (root / "key-old-junk/job.json").write_text("{not json")
    assert legacy.import_records(store, root) == 4
    assert legacy.import_records(store, root) == 0  # once
    assert (
        store.live("old-accepted").state == QUEUED
        and store.live("old-accepted").spec["jid"] == "old-accepted"
    )
    assert store.live("old-running").state == STARTED
    failed = store.live("old-failed")
    assert failed.status == FINISHED_ERROR and failed.message == "failed to start: no such image"
    assert failed.accepted_at.isoformat() == "2026-11-01T10:00:00+00:00"
    assert "unreadable" in store.live("old-junk").message
    assert (root / "key-old-failed/job.json.imported").exists()


def test_a_database_that_does_not_answer_is_store_unavailable(tmp_path: Path) -> None:
    url = "postgresql+psycopg://pfcon:pfcon@127.0.0.1:1/nowhere"
    store = JobStore(database.create(url), url)
    with pytest.raises(StoreUnavailable, match=r"postgresql database at 127\.0\.0\.1:1/nowhere"):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.accept(NewJob(jid="x"))
