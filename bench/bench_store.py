"""Benchmark of the job store: SQLite and PostgreSQL side by side; prints figures, asserts nothing.

It runs three ``pfcon serve`` (gunicorn, 2 workers each) on a real dockerd side by side: pfcon
as it was before the store (``PFCON_BENCH_BASELINE``, served from the same venv), and this
pfcon on SQLite and on PostgreSQL. The services take turns, so a busy machine slows all three
alike (a figure of one service alone means little when the load average is high). It measures

1. ``POST jobs/`` latency (median, p95) of 40 small jobs per service, one after another,
   back to back and then paced (a second after each, its container started by then);
   reference: the median of ``POST auth-token/`` (the HTTP floor: no store, no staging);
2. status ``GET jobs/<jid>/`` per second, 8 clients, on finished jobs, in three rounds that
   alternate between the services (the store answers from its record: no engine call; before
   it, a 3-second cache guarded by a read of ``job.json``);
3. ``GET history/`` with 10 000 more records (written straight into the store): the first
   page (50 items) and a filtered page (``status`` + ``auid``), 200 requests each, p50/p95;
   reference: the same query through the repository in this process (no HTTP).

``PFCON_BENCH_CODE=<commit>`` serves the SQLite and PostgreSQL services from that commit
instead of the working tree, to alternate runs of two versions in one period.
PostgreSQL is the server scripts/setup.d/45-postgresql.sh runs (override with
``PFCON_BENCH_DATABASE_URL``, a role that may create databases); the benchmark creates a
database of its own and drops it at the end. Run from the repository root::

    .venv/bin/python bench/bench_store.py
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
#: the last commit before the store, measured in the same run for comparison
BASELINE = os.environ.get("PFCON_BENCH_BASELINE", "963df8f")
#: serve the store's services from this commit instead of the working tree (e.g. ``main``, to
#: alternate runs of two versions in one period)
CODE = os.environ.get("PFCON_BENCH_CODE")
#: pause after each paced submit: its job's container has started before the next submit
PACE_SECONDS = 1.0


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


@dataclass
class Subject:
    """One service under test and what was measured of it."""

    name: str
    url: str | None  # its database; None: not the store (the baseline)
    bench: api.Bench
    jids: list[str] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)


@contextmanager
def serving(
    name: str, url: str | None, work: Path, baseline: bool = False, code: str | None = CODE
) -> Iterator[Subject]:
    """``pfcon serve`` on a storeBase of its own: the baseline's code, or ``code`` (a commit;
    None: this working tree) with ``url``."""
    storebase = work / f"storebase-{name}"
    storebase.mkdir()
    if url and "sqlite" not in url:
        os.environ["PFCON_DATABASE_URL"] = url
    with contextlib.ExitStack() as stack:
        if baseline or code:
            stack.enter_context(code_of(BASELINE if baseline else code, work / name))
        base, proc = stack.enter_context(api.service(storebase, work / f"pfcon-{name}.log"))
        os.environ.pop("PFCON_DATABASE_URL", None)
        os.environ.pop("PYTHONPATH", None)
        bench = api.Bench(base=base, pid=proc.pid, storebase=storebase, session=api.login(base))
        if url and "sqlite" in url:
            url = f"sqlite:///{storebase / '.pfcon' / 'pfcon.db'}"
        try:
            yield Subject(name, url, bench)
        finally:
            api.delete_jobs(bench)
            api.remove_leftover_containers(bench.run_id)


def measure_submits(subjects: list[Subject], key: str, pause: float = 0.0) -> None:
    """40 small jobs to each service, the services taking turns (who goes first rotates),
    ``pause`` seconds after each submit.

    Back to back (no pause) every submit races the containers of the jobs before it, which
    start in the background: on 2 cores dockerd and runc starting 120 containers take the CPU
    the next request needs. Paced (the previous job's container started before the next
    submit), the figure is the submit path's own.
    """
    payload = api.small_zip()
    jids: dict[str, list[str]] = {subject.name: [] for subject in subjects}
    latencies: dict[str, list[float]] = {subject.name: [] for subject in subjects}
    for number in range(api.SMALL_JOBS):
        turn = number % len(subjects)
        for subject in subjects[turn:] + subjects[:turn]:
            jid = subject.bench.jid(f"{subject.name}-{key.replace(' ', '-')}", number)
            jids[subject.name].append(jid)
            form = api.job_form(jid, ["pl-copy"])
            files = {"data_file": ("data.zip", payload, "application/zip")}
            start = time.perf_counter()
            subject.bench.session.post(
                f"{subject.bench.base}jobs/", data=form, files=files
            ).raise_for_status()
            latencies[subject.name].append((time.perf_counter() - start) * 1000)
            time.sleep(pause)
    for subject in subjects:
        api.wait_finished(subject.bench, jids[subject.name])
        subject.jids.extend(jids[subject.name])
        floor = timed(lambda s=subject: api.login(s.bench.base), 40)
        submits = latencies[subject.name]
        subject.figures[key] = (
            f"{statistics.median(submits):.1f} / {api.percentile(submits, 0.95):.1f} ms"
            f" (auth-token {statistics.median(floor):.1f})"
        )


def measure_status(subjects: list[Subject], rounds: int = 3) -> None:
    """Status GETs of finished jobs, 8 clients; rounds alternate between the services."""
    for _ in range(rounds):
        for subject in subjects:
            subject.rates.append(api.measure_gets(subject.bench, subject.jids)[0])
    for subject in subjects:
        rates = " ".join(f"{rate:.0f}" for rate in subject.rates)
        subject.figures["status"] = f"{statistics.median(subject.rates):.0f}/s (rounds: {rates})"


def measure_history(subject: Subject) -> None:
    """``GET history/`` over HTTP and the same query in this process, 10 000 more rows stored."""
    url, bench = subject.url, subject.bench
    seed_history(url, HISTORY_ROWS)
    store = JobStore(database.create(url), url)
    pages = {
        "first page": ("", HistoryQuery(limit=50)),
        "filtered page": (
            "?status=finishedWithError&auid=user-7",
            HistoryQuery(status="finishedWithError", auid="user-7", limit=50),
        ),
    }
    try:
        for name, (query, direct) in pages.items():
            answer = bench.session.get(f"{bench.base}history/{query}").json()
            assert len(answer["results"]) == 50, answer
            http = timed(
                lambda q=query: bench.session.get(f"{bench.base}history/{q}").raise_for_status(), SAMPLES
            )
            reference = timed(lambda d=direct: store.history(d), SAMPLES)
            p95, direct_p95 = api.percentile(http, 0.95), api.percentile(reference, 0.95)
            subject.figures[name] = f"{statistics.median(http):.1f} / {p95:.1f} ms (store {direct_p95:.1f})"
    finally:
        store.close()


@contextmanager
def code_of(commit: str, work: Path) -> Iterator[None]:
    """Serve pfcon as it was at ``commit`` (the same venv; its package first on the path)."""
    folder = work / f"pfcon-{commit}"
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(api.REPO), "archive", commit, "pfcon"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    os.environ["PYTHONPATH"] = str(folder)
    try:
        yield
    finally:
        os.environ.pop("PYTHONPATH", None)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-store-", dir="/var/tmp"))
    try:
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(postgresql_database())
            subjects = [
                stack.enter_context(serving("before", None, work, baseline=True)),
                stack.enter_context(serving("sqlite", "sqlite", work)),
                stack.enter_context(serving("postgresql", url, work)),
            ]
            measure_submits(subjects, "submit")
            measure_submits(subjects, "paced submit", pause=PACE_SECONDS)
            measure_status(subjects)
            for subject in subjects[1:]:
                measure_history(subject)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if CODE:
        print(f"\nthe store's services ran the code of {CODE}")
    print(f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    columns = (f"before the store ({BASELINE})", "SQLite", "PostgreSQL")
    print(f"{'measure':<42} {columns[0]:<36} {columns[1]:<36} {columns[2]:<36} target")
    rows = [
        ("POST jobs/ back to back: median / p95", "submit", "median <= 15 ms"),
        (f"POST jobs/ {PACE_SECONDS} s apart: median / p95", "paced submit", "median <= 15 ms"),
        ("status GETs/s, 8 clients, finished jobs", "status", ">= before the store"),
        (f"history/ first page of {HISTORY_ROWS}: p50 / p95", "first page", "p95 <= 50 ms"),
        ("history/ filtered page: p50 / p95", "filtered page", "p95 <= 50 ms"),
    ]
    for label, key, target in rows:
        cells = [subject.figures.get(key, "-") for subject in subjects]
        print(f"{label:<42} {cells[0]:<36} {cells[1]:<36} {cells[2]:<36} {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
