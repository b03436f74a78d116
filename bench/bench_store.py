"""Benchmark of the job store: SQLite and PostgreSQL side by side; prints figures, asserts nothing.

For each database it starts ``pfcon serve`` (gunicorn, 2 workers) on a real dockerd and measures

1. ``POST jobs/`` latency (median, p95) of 40 small jobs one after another; reference: the
   median of ``POST auth-token/`` on the same service (the HTTP floor, no store, no staging);
2. status ``GET jobs/<jid>/`` per second, 8 clients, on finished jobs (answered from the
   store: no engine call);
3. ``GET history/`` with 10 000 more records (written straight into the store): the first
   page (50 items) and a filtered page (``status`` + ``auid``), 200 requests each, p50/p95;
   reference: the same query through the repository in this process (no HTTP).

PostgreSQL is the server scripts/setup.d/45-postgresql.sh runs (override with
``PFCON_BENCH_DATABASE_URL``, a role that may create databases); the benchmark creates a
database of its own and drops it at the end. Run from the repository root::

    .venv/bin/python bench/bench_store.py
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api as api

from pfcon.store import database
from pfcon.store.repository import HistoryQuery, JobStore
from pfcon.store.tables import jobs

PG_ADMIN = os.environ.get(
    "PFCON_BENCH_DATABASE_URL", "postgresql+psycopg://pfcon:pfcon@127.0.0.1:5432/pfcon_test"
)
HISTORY_ROWS = 10_000
SAMPLES = 200
TARGETS = {"submit": 15.0, "history": 50.0, "status": 2170.0}


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def postgresql_database() -> Iterator[str]:
    name = f"pfcon_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(PG_ADMIN), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(call: Callable[[], object], count: int) -> list[float]:
    """Milliseconds of ``count`` calls, one after another."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def seed_history(url: str, count: int) -> None:
    """``count`` finished and deleted jobs of 20 users and 5 images, over the last 30 days."""
    rng = random.Random(12)
    now = datetime.now(UTC)
    rows = []
    for n in range(count):
        accepted = now - timedelta(seconds=(count - n) * 250)
        started = accepted + timedelta(seconds=rng.uniform(0.2, 30))
        finished = started + timedelta(seconds=rng.uniform(1, 600))
        failed = rng.random() < 0.1
        rows.append(
            {
                "jid": f"history-{n}",
                "kind": "plugin",
                "api": "classic",
                "state": "deleted",
                "status": "finishedWithError" if failed else "finishedSuccessfully",
                "message": "exited with code 1" if failed else "exited",
                "image": f"ghcr.io/fnndsc/pl-tool{n % 5}:1.0",
                "cmd": "tool /share/incoming /share/outgoing",
                "auid": f"user-{n % 20}",
                "exit_code": 1 if failed else 0,
                "accepted_at": accepted,
                "queued_at": accepted,
                "started_at": started,
                "finished_at": finished,
                "deleted_at": finished + timedelta(minutes=5),
                "updated_at": finished,
            }
        )
    engine = database.create(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(jobs), rows)
    engine.dispose()


def measure(kind: str, url: str | None, work: Path) -> dict[str, str]:
    storebase = work / f"storebase-{kind}"
    storebase.mkdir()
    if url:
        os.environ["PFCON_DATABASE_URL"] = url
    else:
        os.environ.pop("PFCON_DATABASE_URL", None)
        url = f"sqlite:///{storebase / '.pfcon' / 'pfcon.db'}"
    figures: dict[str, str] = {}
    with api.service(storebase, work / f"pfcon-{kind}.log") as (base, proc):
        bench = api.Bench(base=base, pid=proc.pid, storebase=storebase, session=api.login(base))
        try:
            floor = timed(lambda: api.login(base), 40)
            payload = api.small_zip()
            jids = [bench.jid(kind, n) for n in range(api.SMALL_JOBS)]
            submits = []
            for jid in jids:
                form = api.job_form(jid, ["pl-copy"])
                files = {"data_file": ("data.zip", payload, "application/zip")}
                start = time.perf_counter()
                bench.session.post(f"{base}jobs/", data=form, files=files).raise_for_status()
                submits.append((time.perf_counter() - start) * 1000)
            api.wait_finished(bench, jids)
            figures["submit"] = (
                f"{statistics.median(submits):.1f} / {api.percentile(submits, 0.95):.1f} ms"
                f" (auth-token {statistics.median(floor):.1f})"
            )
            rate, _note = api.measure_gets(bench, jids)
            figures["status"] = f"{rate:.0f}/s"
            figures["_status"] = rate
            figures["_submit"] = statistics.median(submits)
            seed_history(url, HISTORY_ROWS)
            store = JobStore(database.create(url), url)
            pages = {
                "first page": ("", HistoryQuery(limit=50)),
                "filtered page": (
                    "?status=finishedWithError&auid=user-7",
                    HistoryQuery(status="finishedWithError", auid="user-7", limit=50),
                ),
            }
            for name, (query, direct) in pages.items():
                answer = bench.session.get(f"{base}history/{query}").json()
                assert len(answer["results"]) == 50, answer
                http = timed(
                    lambda q=query: bench.session.get(f"{base}history/{q}").raise_for_status(), SAMPLES
                )
                reference = timed(lambda d=direct: store.history(d), SAMPLES)
                p95 = api.percentile(http, 0.95)
                direct_p95 = api.percentile(reference, 0.95)
                figures[name] = f"{statistics.median(http):.1f} / {p95:.1f} ms (store {direct_p95:.1f})"
                figures[f"_{name}"] = p95
            store.close()
        finally:
            api.delete_jobs(bench)
            api.remove_leftover_containers(bench.run_id)
    return figures


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-store-", dir="/var/tmp"))
    results: dict[str, dict[str, str]] = {}
    try:
        results["sqlite"] = measure("sqlite", None, work)
        with postgresql_database() as url:
            results["postgresql"] = measure("postgresql", url, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{'measure':<44} {'SQLite':<34} {'PostgreSQL':<34} target")
    rows = [
        ("POST jobs/ median / p95 (floor)", "submit", f"median <= {TARGETS['submit']:.0f} ms"),
        (
            "status GETs/s, 8 clients, finished jobs",
            "status",
            f">= {TARGETS['status']:.0f}/s (before the store)",
        ),
        (
            f"history/ first page, {HISTORY_ROWS} rows: p50 / p95",
            "first page",
            f"p95 <= {TARGETS['history']:.0f} ms",
        ),
        ("history/ filtered page: p50 / p95", "filtered page", f"p95 <= {TARGETS['history']:.0f} ms"),
    ]
    for label, key, target in rows:
        print(f"{label:<44} {results['sqlite'][key]:<34} {results['postgresql'][key]:<34} {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
