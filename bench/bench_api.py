"""Benchmark of the pfcon HTTP API against a real Docker engine; prints figures, asserts nothing.

What it measures (FNNDSC pfcon 5.3 figures and our targets are printed beside each):

0. the idle RSS of the whole service (gunicorn master and workers, default settings);
1. ``POST jobs/`` latency (median, p95) for 40 small jobs POSTed from 8 threads;
2. jobs/s from the first submit until all 40 are seen finished (status polling), beside the
   engine's own parallel start rate measured in the same run (docker-py create+start of 40
   containers from 8 threads), once just before pfcon's jobs and once just after: the
   reference is the rate over both (80 starts in their summed time), so a drift of the
   engine's pace during the run weighs on both sides alike; the load average is printed;
3. status ``GET jobs/<jid>/`` per second with 8 concurrent keep-alive clients for ~5 s
   (``wrk`` if it is on PATH, else 8 client processes using ``http.client``), on finished jobs
   (which pfcon answers from its job store) and on 20 running jobs (answered from the engine's
   event feed, no engine call per poll): rate, p95 latency and the load average;
4. upload of a 512 MiB zip of random bytes (ZIP_STORED), streamed from disk: POST time and the
   service's peak RSS growth (the high-water marks of the gunicorn master and its descendants);
5. download of a 512 MiB job output as a zip: time to first byte, total time, RSS growth.

``--small`` skips 4 and 5 (and building the 512 MiB zip); ``--jobs`` runs 2 alone, ``--jobs N``
N times in one service, and prints beside each figure the whole machine's CPU per job for
the engine's reference and for pfcon's jobs, split by process (:class:`CpuSplit`).

It starts its own service (``pfcon serve`` on a free port, a fresh STOREBASE under /var/tmp),
needs a running dockerd and the image ``localhost/pfcon-busybox:1``, deletes every job it made
and removes its temporary files at the end. Run it from the repository root with::

    .venv/bin/python bench/bench_api.py
"""

from __future__ import annotations

import collections
import http.client
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
PFCON = REPO / ".venv" / "bin" / "pfcon"
IMAGE = "localhost/pfcon-busybox:1"
USER, PASSWORD = "pfcon", "pfcon1234"
MiB = 1024 * 1024
BIG_SIZE = 512 * MiB
SMALL_JOBS = 40
RUNNING_JOBS = 20
CLIENTS = 8
GET_SECONDS = 5.0
FINISHED = ("finishedSuccessfully", "finishedWithError", "undefined")


@dataclass
class Row:
    """One line of the final table."""

    name: str
    value: str
    pfcon53: str
    target: str
    ok: bool

    def show(self) -> str:
        verdict = "PASS" if self.ok else "MISS"
        return f"{self.name:<33} {self.value:>28}  {self.pfcon53:<22} {self.target:<24} {verdict}"


@dataclass
class Bench:
    """What the measurements share: the service, its token and what to clean up."""

    base: str
    pid: int
    storebase: Path
    session: requests.Session
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    jids: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def jid(self, kind: str, number: int = 0) -> str:
        jid = f"pfcon-bench-{self.run_id}-{kind}-{number}"
        self.jids.append(jid)
        return jid

    def report(self, row: Row) -> None:
        self.rows.append(row)
        print(row.show(), flush=True)


# -- the service -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pfcon serve exited with {proc.returncode}")
        with suppress(requests.RequestException):
            if requests.get(f"{base}health/", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"pfcon did not become healthy within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=35)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def service(
    storebase: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``pfcon serve`` (gunicorn; its master keeps this PID) until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "APPLICATION_MODE": "development",
        "STOREBASE": str(storebase),
        "JOB_LABELS": "pfcon.bench=yes",
        "PFCON_BIND": f"127.0.0.1:{port}",
        # the jobs here declare 1 CPU each but only sleep or copy a file: with the admission
        # queue's default capacity (the engine's 2 CPUs) 2 would run at once and the 20
        # "running" jobs never would; the queue's own figures are bench_admission.py's
        "PFCON_CAPACITY_CPUS": "64",
        **(extra_env or {}),
    }
    # ``pfcon serve`` runs ``python -m gunicorn``, which puts its working folder first on
    # sys.path: started from the repository root it would serve the working tree's pfcon
    # whatever PYTHONPATH says (an A/B against another commit's code would compare nothing)
    folder = log_path.parent / "cwd"
    folder.mkdir(exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(PFCON), "serve"], env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}/api/v1/"
    try:
        wait_healthy(base, proc)
        yield base, proc
    finally:
        stop(proc)


def login(base: str) -> requests.Session:
    session = requests.Session()
    reply = session.post(f"{base}auth-token/", json={"pfcon_user": USER, "pfcon_password": PASSWORD})
    reply.raise_for_status()
    session.headers["Authorization"] = f"Bearer {reply.json()['token']}"
    return session


# -- memory ------------------------------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, found through /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with suppress(OSError):
                todo.extend(int(child) for child in task.read_text().split())
    return found


def memory_status(pid: int, key: str = "VmRSS") -> int:
    """One memory line of /proc/<pid>/status in bytes (``VmRSS``, ``VmHWM``), 0 if gone."""
    with suppress(OSError):
        match = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
        if match:
            return int(match.group(1)) * 1024
    return 0


def tree_rss(pid: int) -> int:
    return sum(memory_status(each) for each in process_tree(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc/<pid>/stat."""
    with suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(each) for each in process_tree(pid))


def machine_busy() -> float:
    """CPU-seconds the whole machine spent busy (not idle, not waiting for I/O), /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def cpu_with_children(pid: int, own: bool = True) -> float:
    """User + system CPU of a process (unless not ``own``) and of the children it reaped."""
    with suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(value) for value in fields[11 if own else 13 : 15]) / os.sysconf("SC_CLK_TCK")
    return 0.0


class CpuSplit:
    """Whole-machine CPU over a stretch of work, split by process: dockerd, its containerd,
    the containers' shims (with the runc calls and job processes they reaped; a shim exits
    when its container's task is deleted and is reaped by PID 1, so PID 1's reaped children
    count here too), the pfcon service (gunicorn master and workers), this client, and the
    rest of the machine."""

    GROUPS = ("dockerd", "containerd", "shims+runc+jobs", "pfcon", "client", "rest")

    def __init__(self, service_pid: int | None = None) -> None:
        self.service_pid = service_pid

    def _group(self, pid: int, comm: str, service: set[int]) -> str | None:
        if pid in service:
            return "pfcon"
        if pid == os.getpid():
            return "client"
        if comm == "dockerd":
            return "dockerd"
        with suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if comm == "containerd" and b"/var/run/docker/" in cmdline:
                return "containerd"
            if comm.startswith("containerd-shim") and b"moby" in cmdline:
                return "shims+runc+jobs"
        return None

    def sample(self) -> tuple[float, dict[str, float]]:
        service = set(process_tree(self.service_pid)) if self.service_pid else set()
        groups = dict.fromkeys(self.GROUPS[:-1], 0.0)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with suppress(OSError):
                pid = int(entry.name)
                if pid == 1:
                    groups["shims+runc+jobs"] += cpu_with_children(pid, own=False)
                    continue
                group = self._group(pid, (entry / "comm").read_text().strip(), service)
                if group:
                    groups[group] += cpu_with_children(pid)
        return machine_busy(), groups

    def __enter__(self) -> CpuSplit:
        self.before = self.sample()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.after = self.sample()

    def per_job(self, jobs: int) -> str:
        """Milliseconds of CPU per job for each group (new processes count from zero)."""
        (busy0, before), (busy1, after) = self.before, self.after
        spent = {name: max(0.0, after[name] - before[name]) for name in after}
        spent["rest"] = max(0.0, busy1 - busy0 - sum(spent.values()))
        parts = ", ".join(f"{name} {spent[name] / jobs * 1000:.0f}" for name in self.GROUPS)
        return f"machine {(busy1 - busy0) / jobs * 1000:.0f} ms CPU per job ({parts})"


class Sampler:
    """Calls :meth:`take` every ``interval`` s in a thread while the block runs (and once more
    at its end)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.take()
            if self._stop.wait(self.interval):
                self.take()
                return

    def take(self) -> None:
        raise NotImplementedError


class BusyTrace(Sampler):
    """The machine's busy CPU-seconds (:func:`machine_busy`) over time, so the idle CPU of any
    stretch of a round can be told afterwards."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(interval)
        self.samples: list[tuple[float, float]] = []

    def take(self) -> None:
        self.samples.append((time.time(), machine_busy()))

    def idle(self, begin: float, end: float) -> float:
        """Idle CPU-seconds of the whole machine between two wall-clock moments (the nearest
        samples)."""
        (t0, busy0), (t1, busy1) = (min(self.samples, key=lambda s: abs(s[0] - at)) for at in (begin, end))
        return max(0.0, (t1 - t0) * (os.cpu_count() or 1) - (busy1 - busy0))


class PeakRss:
    """How much a process tree's resident memory grew at most while the block ran.

    The kernel keeps each process's high-water mark (``VmHWM``); writing ``5`` to
    /proc/<pid>/clear_refs resets it to the current RSS. So nothing samples while the block
    runs: a sampler thread in the benchmark's client took CPU and the GIL from the very
    request it timed (on two cores it slowed a 0.2 s upload measurably), and a peak shorter
    than its interval went unseen. The sum of the processes' peaks is at least the tree's
    peak (they need not coincide), so the growth reported errs on the high side.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = 0
        self.growth = 0

    def __enter__(self) -> PeakRss:
        for each in process_tree(self.pid):
            with suppress(OSError):
                Path(f"/proc/{each}/clear_refs").write_text("5")
        self.baseline = tree_rss(self.pid)
        return self

    def __exit__(self, *_exc: object) -> None:
        peak = sum(memory_status(each, "VmHWM") for each in process_tree(self.pid))
        self.growth = max(0, peak - self.baseline)


# -- jobs --------------------------------------------------------------------------------------
def small_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello pfcon\n")
        archive.writestr("sub/b.txt", "x" * 2048)
    return buffer.getvalue()


def job_form(
    jid: str, entrypoint: list[str], args: list[str] | None = None, kind: str = "ds"
) -> list[tuple[str, str]]:
    form = [("jid", jid), *(("entrypoint", part) for part in entrypoint)]
    form += [("args", arg) for arg in args or []]
    form += [
        ("auid", "bench"),
        ("number_of_workers", "1"),
        ("cpu_limit", "1000"),
        ("memory_limit", "200"),
        ("gpu_limit", "0"),
        ("image", IMAGE),
        ("type", kind),
    ]
    return form


def status(bench: Bench, jid: str) -> str:
    reply = bench.session.get(f"{bench.base}jobs/{jid}/")
    reply.raise_for_status()
    return reply.json()["compute"]["status"]


def wait_finished(
    bench: Bench, jids: list[str], timeout: float = 120.0, seen: dict[str, float] | None = None
) -> dict[str, str]:
    """Poll each pending job in turn until all are finished; ``seen`` gets the wall-clock time
    each job's finished answer came."""
    pending, done = list(jids), {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for jid in list(pending):
            state = status(bench, jid)
            if state in FINISHED:
                done[jid] = state
                pending.remove(jid)
                if seen is not None:
                    seen[jid] = time.time()
        if pending:
            time.sleep(0.05)
    if pending:
        raise RuntimeError(f"{len(pending)} jobs not finished after {timeout:.0f} s")
    return done


def delete_jobs(bench: Bench) -> None:
    failed = []
    for jid in bench.jids:
        with suppress(requests.RequestException):
            if bench.session.delete(f"{bench.base}jobs/{jid}/", timeout=30).status_code in (204, 404):
                continue
        failed.append(jid)
    print(f"deleted {len(bench.jids) - len(failed)} jobs" + (f"; failed: {failed}" if failed else ""))


def remove_leftover_containers(run_id: str) -> None:
    """Safety net: remove containers of this run that a failed DELETE may have left behind."""
    if not shutil.which("docker"):
        return
    names = f"name=pfcon-bench-{run_id}-"
    found = subprocess.run(["docker", "ps", "-aq", "--filter", names], capture_output=True, text=True)
    ids = found.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        print(f"removed {len(ids)} leftover containers")


# -- helpers for figures -----------------------------------------------------------------------
def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def fmt_mib(size: int) -> str:
    return f"{size / MiB:+.1f} MiB"


def write_random(path: Path, size: int, chunk: int = 4 * MiB) -> None:
    with open(path, "wb") as out:
        for _ in range(size // chunk):
            out.write(os.urandom(chunk))


def build_big_zip(path: Path) -> None:
    """A ZIP_STORED archive of one 512 MiB file of random bytes, written in 4 MiB chunks."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive,
        archive.open("random.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(BIG_SIZE // (4 * MiB)):
            member.write(os.urandom(4 * MiB))


class MultipartFile:
    """A multipart/form-data body (fields + one file streamed from disk) with a known length.

    requests sends an iterable that has ``__len__`` with that Content-Length, chunk by chunk.
    """

    def __init__(self, fields: list[tuple[str, str]], name: str, path: Path, chunk: int = MiB) -> None:
        self.boundary = f"pfcon-bench-{uuid.uuid4().hex}"
        self.path = path
        self.chunk = chunk
        head = b"".join(self._part(key, value) for key, value in fields)
        head += (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        self.head = head
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()

    def _part(self, key: str, value: str) -> bytes:
        disposition = f'Content-Disposition: form-data; name="{key}"'
        return f"--{self.boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self.head) + self.path.stat().st_size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with open(self.path, "rb") as source:
            while block := source.read(self.chunk):
                yield block
        yield self.tail


# -- 1 and 2: small jobs -----------------------------------------------------------------------
def engine_start_rate(
    count: int = SMALL_JOBS,
    threads: int = CLIENTS,
    cpu: CpuSplit | None = None,
    busy: BusyTrace | None = None,
) -> float:
    """The physical reference: docker-py create+start of ``count`` containers from ``threads``."""
    import docker

    client = docker.from_env(version="1.41", max_pool_size=threads)
    names = [f"pfcon-bench-engine-{uuid.uuid4().hex[:8]}-{number}" for number in range(count)]

    def create_start(name: str) -> None:
        client.containers.create(IMAGE, ["true"], name=name, labels={"pfcon.bench": "yes"}).start()

    with cpu or CpuSplit(), busy or nullcontext():
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(create_start, names))
        elapsed = time.perf_counter() - start
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda name: client.containers.get(name).remove(force=True), names))
    client.close()
    return count / elapsed


def bench_small_jobs(
    bench: Bench, round_number: int = 0, cpu_split: bool = False, tail: bool = False
) -> list[str]:
    """40 small jobs POSTed from 8 threads, until all are seen finished; beside the engine's rate
    measured just before and just after them (``tail``: then where the round's seconds went,
    :func:`print_tail`)."""
    payload = small_zip()
    jids = [bench.jid(f"small{round_number}", number) for number in range(SMALL_JOBS)]
    engine_cpu, jobs_cpu = CpuSplit(), CpuSplit(bench.pid)
    engine_busy, busy = (BusyTrace(), BusyTrace()) if tail else (None, None)
    before = engine_start_rate(cpu=engine_cpu, busy=engine_busy)
    load = os.getloadavg()[0]
    local = threading.local()
    answered: dict[str, float] = {}
    seen: dict[str, float] = {}

    def post(jid: str) -> float:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(bench.session.headers)
        start = time.perf_counter()
        reply = local.session.post(
            f"{bench.base}jobs/",
            data=job_form(jid, ["pl-copy"]),
            files={"data_file": ("data.zip", payload, "application/zip")},
        )
        if reply.status_code != 201:
            raise RuntimeError(f"POST {jid}: {reply.status_code} {reply.text[:300]}")
        answered[jid] = time.time()
        return time.perf_counter() - start

    with jobs_cpu, busy or nullcontext():
        first, first_wall = time.perf_counter(), time.time()
        with ThreadPoolExecutor(CLIENTS) as pool:
            latencies = list(pool.map(post, jids))
        posted = time.perf_counter() - first
        states = wait_finished(bench, jids, seen=seen)
        elapsed = time.perf_counter() - first
        last_wall = time.time()
    after = engine_start_rate()
    reference = 2 / (1 / before + 1 / after)  # 2 x SMALL_JOBS starts in their summed time
    failures = sum(state != "finishedSuccessfully" for state in states.values())
    median, p95 = statistics.median(latencies) * 1000, percentile(latencies, 0.95) * 1000
    bench.report(
        Row("1. POST latency median, 8 clients", f"{median:.1f} ms", "311-408 ms", "<= 60 ms", median <= 60)
    )
    bench.report(Row("1. POST latency p95, 8 clients", f"{p95:.1f} ms", "311-408 ms", "(informative)", True))
    rate = SMALL_JOBS / elapsed
    value = f"{rate:.2f}/s = {rate / reference:.2f}x engine"
    ok = rate >= 0.9 * reference
    bench.report(Row("2. jobs/s, submit to finished", value, "2.2/s", ">= 0.9x engine", ok))
    print(
        f"   [engine's own create+start from {CLIENTS} threads: {reference:.2f}/s "
        f"({before:.2f}/s before pfcon's jobs, {after:.2f}/s after); "
        f"{SMALL_JOBS} jobs in {elapsed:.1f} s, the last POST answered at {posted:.1f} s; "
        f"load average {load:.1f} on {os.cpu_count()} CPUs]"
    )
    if cpu_split:
        print(f"   [engine's reference, before: {engine_cpu.per_job(SMALL_JOBS)}]")
        print(f"   [pfcon's jobs:       {jobs_cpu.per_job(SMALL_JOBS)}]")
    if failures:
        print(f"   note: {failures} of {SMALL_JOBS} jobs did not finish successfully")
    if engine_busy and busy:
        print_tail(first_wall, last_wall, job_times(bench, jids, answered, seen), busy)
        reference_idle = engine_busy.idle(engine_busy.samples[0][0], engine_busy.samples[-1][0])
        print(f"   [idle CPU-s during the engine's reference: {reference_idle:.2f}]")
    return jids


# -- 2, --tail: where a round's seconds go -------------------------------------------------
@dataclass
class JobTimes:
    """One job's moments (wall clock, seconds since the epoch), in their order: the POST's
    answer, the container's creation and start, the start recorded in the store, the
    container's end, the end recorded, the client's finished answer; and who started it."""

    jid: str
    answered: float
    engine_created: float
    engine_start: float
    recorded_start: float
    engine_end: float
    recorded_end: float
    seen: float
    starter: str


def engine_time(value: str) -> float:
    """An engine's RFC 3339 timestamp (nanoseconds, ``Z``) as seconds since the epoch."""
    from datetime import datetime

    whole, _, fraction = value.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(whole + "+00:00").timestamp()
    return seconds + float(f"0.{fraction or 0}")


def job_times(
    bench: Bench, jids: list[str], answered: dict[str, float], seen: dict[str, float]
) -> list[JobTimes]:
    """After the clock: the store's records (read from its SQLite file) and the containers'
    ``StartedAt``/``FinishedAt`` (one inspect each) of the round's jobs."""
    import sqlite3

    import docker

    database = sqlite3.connect(f"file:{bench.storebase / '.pfcon' / 'pfcon.db'}?mode=ro", uri=True)
    with database:
        marks = ",".join("?" * len(jids))
        query = f"SELECT jid, started_at, finished_at, owner FROM jobs WHERE jid IN ({marks})"
        rows = database.execute(query, jids).fetchall()
    database.close()
    # a job that never started (a failed start) has no times to show
    recorded = {row[0]: (engine_time(row[1]), engine_time(row[2]), row[3] or "") for row in rows if row[1]}
    client = docker.from_env(version="1.41")
    times = []
    for jid in filter(recorded.__contains__, jids):
        start, end, owner = recorded[jid]
        inspected = client.api.inspect_container(jid)
        state = inspected["State"]
        created, began = engine_time(inspected["Created"]), engine_time(state["StartedAt"])
        ended = engine_time(state["FinishedAt"])
        times.append(JobTimes(jid, answered[jid], created, began, start, ended, end, seen[jid], owner))
    client.close()
    return times


def print_tail(first: float, last: float, times: list[JobTimes], busy: BusyTrace) -> None:
    """Each step's median and worst over the round's jobs, the first and last moment of each
    step, the machine's idle CPU before the first start, between and after the last, and
    the last five jobs to be seen finished, in seconds since the first POST."""
    steps = (
        ("POST answered -> container Created", "answered", "engine_created"),
        ("Created -> StartedAt", "engine_created", "engine_start"),
        ("StartedAt -> start recorded", "engine_start", "recorded_start"),
        ("container run (StartedAt -> FinishedAt)", "engine_start", "engine_end"),
        ("FinishedAt -> end recorded", "engine_end", "recorded_end"),
        ("end recorded -> seen finished", "recorded_end", "seen"),
    )
    print("   [tail: per job, median / max, ms]")
    for name, begin, end in steps:
        spans = [(getattr(each, end) - getattr(each, begin)) * 1000 for each in times]
        print(f"      {name:<42} {statistics.median(spans):7.0f} / {max(spans):7.0f}")
    fields_ = [name for name in JobTimes.__dataclass_fields__ if name not in ("jid", "starter")]
    for which, pick in (("first", min), ("last", max)):
        moments = "  ".join(f"{name} {pick(getattr(t, name) for t in times) - first:.2f}" for name in fields_)
        print(f"   [tail: {which} of each, s after the first POST: {moments}]")
    starts = sorted(each.recorded_start - first for each in times)
    starters = collections.Counter(each.starter.rpartition(":")[2] for each in times)
    print(
        f"   [starts recorded from {starts[0]:.2f} to {starts[-1]:.2f} s: "
        f"{(len(starts) - 1) / (starts[-1] - starts[0]):.2f}/s; by process (pid: jobs) {dict(starters)}]"
    )
    began, ended = min(t.engine_start for t in times), max(t.recorded_start for t in times)
    stretches = ((first, began), (began, ended), (ended, last))
    idle = ", ".join(f"{busy.idle(a, b):.2f} of {(b - a) * (os.cpu_count() or 1):.2f}" for a, b in stretches)
    print(f"   [idle CPU-s before the first start, until the last start recorded, after it: {idle}]")
    for each in sorted(times, key=lambda each: each.seen)[-5:]:
        moments = "  ".join(f"{getattr(each, name) - first:5.2f}" for name in fields_)
        print(f"      {each.jid.rsplit('-', 1)[1]:>3}: {moments}")


# -- 3: concurrent status GETs -----------------------------------------------------------------
def get_client(
    port: int, paths: list[str], token: str, barrier: Any, seconds: float, results: Any, index: int
) -> None:
    """One client process: keep-alive GETs round-robin over ``paths`` for ``seconds``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    count = errors = 0
    latencies = []
    barrier.wait()
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        sent = time.perf_counter()
        conn.request("GET", paths[(index + count + errors) % len(paths)], headers=headers)
        reply = conn.getresponse()
        reply.read()
        latencies.append(time.perf_counter() - sent)
        if reply.status == 200:
            count += 1
        else:
            errors += 1
    results.put((count, errors, time.monotonic() - start, time.process_time(), latencies))
    conn.close()


def gets_with_processes(bench: Bench, paths: list[str]) -> tuple[float, int, str]:
    rate, errors, how, _p95 = gets_with_latency(bench, paths)
    return rate, errors, how


def gets_with_latency(bench: Bench, paths: list[str]) -> tuple[float, int, str, float]:
    """8 forked client processes; the note gives their CPU time (this machine may have few cores)."""
    port = int(bench.base.split(":")[2].split("/")[0])
    token = bench.session.headers["Authorization"].split()[1]
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(CLIENTS), ctx.Queue()
    args = (port, paths, token, barrier, GET_SECONDS, results)
    procs = [ctx.Process(target=get_client, args=(*args, index)) for index in range(CLIENTS)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=GET_SECONDS + 60) for _ in procs]
    for proc in procs:
        proc.join()
    total = sum(outcome[0] for outcome in outcomes)
    errors = sum(outcome[1] for outcome in outcomes)
    seconds = max(outcome[2] for outcome in outcomes)
    client_cpu = sum(outcome[3] for outcome in outcomes)
    how = f"{CLIENTS} client processes, http.client keep-alive, clients used {client_cpu:.1f} CPU-s"
    p95 = percentile([latency for outcome in outcomes for latency in outcome[4]], 0.95)
    return total / seconds, errors, how, p95


def gets_with_wrk(bench: Bench, paths: list[str]) -> tuple[float, int, str]:
    token = bench.session.headers["Authorization"].split()[1]
    url = bench.base.rstrip("/") + paths[0].removeprefix("/api/v1")
    command = ["wrk", "-t2", f"-c{CLIENTS}", f"-d{GET_SECONDS:.0f}s", "-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, int(match.group(1)) if match else 0, f"wrk -t2 -c{CLIENTS}, one jid"


def measure_gets(bench: Bench, jids: list[str]) -> tuple[float, str]:
    paths = [f"/api/v1/jobs/{jid}/" for jid in jids]
    measure: Callable[[Bench, list[str]], tuple[float, int, str]]
    measure = gets_with_wrk if shutil.which("wrk") else gets_with_processes
    service_cpu = tree_cpu(bench.pid)
    rate, errors, how = measure(bench, paths)
    service_cpu = tree_cpu(bench.pid) - service_cpu
    cores = os.cpu_count()
    return rate, f"[{how}; service used {service_cpu:.1f} CPU-s; {cores} CPUs; {errors} non-200 replies]"


def bench_status_gets(bench: Bench, jids: list[str]) -> None:
    """Finished jobs (answered from the job store), then running ones (two engine calls each)."""
    rate, note = measure_gets(bench, jids)
    bench.report(Row("3. status GETs/s, 8 clients", f"{rate:.0f}/s", "~115/s", ">= 1150/s", rate >= 1150))
    print(f"   {note}")
    running = [bench.jid("running", number) for number in range(RUNNING_JOBS)]
    for jid in running:
        reply = bench.session.post(
            f"{bench.base}jobs/",
            data=job_form(jid, ["pl-copy"], ["--sleep", "120"]),
            files={"data_file": ("data.zip", small_zip(), "application/zip")},
        )
        reply.raise_for_status()
    deadline = time.monotonic() + 120
    while any(status(bench, jid) != "started" for jid in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    load = os.getloadavg()[0]
    service_cpu = tree_cpu(bench.pid)
    rate, errors, how, p95 = gets_with_latency(bench, [f"/api/v1/jobs/{jid}/" for jid in running])
    service_cpu = tree_cpu(bench.pid) - service_cpu
    ok = rate >= 1500 and p95 <= 0.020
    value = f"{rate:.0f}/s, p95 {p95 * 1000:.1f} ms"
    bench.report(
        Row(f"3b. ... of {RUNNING_JOBS} running jobs", value, "37/s, p95 441 ms", ">=1500/s, p95<=20ms", ok)
    )
    print(
        f"   [{how}; service used {service_cpu:.1f} CPU-s; {errors} non-200 replies; "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs]"
    )


# -- 4: big upload -----------------------------------------------------------------------------
def bench_upload(bench: Bench, big_zip: Path) -> str:
    jid = bench.jid("upload")
    body = MultipartFile(job_form(jid, ["sh"], ["-c", "true"], kind="fs"), "data_file", big_zip)
    headers = {"Content-Type": body.content_type}
    service_cpu = tree_cpu(bench.pid)
    with PeakRss(bench.pid) as rss:
        start = time.perf_counter()
        reply = bench.session.post(f"{bench.base}jobs/", data=body, headers=headers, timeout=300)
        elapsed = time.perf_counter() - start
    service_cpu = tree_cpu(bench.pid) - service_cpu
    if reply.status_code != 201:
        raise RuntimeError(f"upload POST: {reply.status_code} {reply.text[:300]}")
    nfiles = reply.json()["data"]["nfiles"]
    ok = elapsed <= 3 and rss.growth < 64 * MiB
    value = f"{elapsed:.2f} s, {fmt_mib(rss.growth)}"
    bench.report(Row("4. upload 512 MiB: time, RSS", value, "4.8-5.5 s", "<= 3 s, < 64 MiB", ok))
    print(f"   [{len(body) / MiB:.1f} MiB body, nfiles={nfiles}, service used {service_cpu:.1f} CPU-s]")
    return jid


# -- 5: big download ---------------------------------------------------------------------------
def bench_download(bench: Bench, jid: str) -> None:
    wait_finished(bench, [jid])
    write_random(bench.storebase / f"key-{jid}" / "outgoing" / "random.bin", BIG_SIZE)
    received, first_byte = 0, None
    with PeakRss(bench.pid) as rss:
        start = time.perf_counter()
        with bench.session.get(f"{bench.base}jobs/{jid}/file/", stream=True, timeout=300) as reply:
            reply.raise_for_status()
            for block in reply.iter_content(chunk_size=MiB):
                if first_byte is None and block:
                    first_byte = time.perf_counter() - start
                received += len(block)
        total = time.perf_counter() - start
    first_byte = total if first_byte is None else first_byte
    ok = first_byte < 0.2 and total <= 3 and rss.growth < 32 * MiB and received > BIG_SIZE
    value = f"{first_byte:.3f} s / {total:.2f} s, {fmt_mib(rss.growth)}"
    target = "<0.2 s / <=3 s, <32 MiB"
    bench.report(Row("5. download 512 MiB: TTFB/total", value, "14 s / 16 s, +530 MiB", target, ok))
    plausible = "plausible" if received > BIG_SIZE else "TOO SMALL"
    print(f"   [{received / MiB:.1f} MiB received ({plausible}), {received / MiB / total:.0f} MiB/s]")


# -- main --------------------------------------------------------------------------------------
def bench_idle_rss(bench: Bench) -> None:
    """The whole service (gunicorn master and workers, default settings) before any job."""
    time.sleep(2)
    rss = tree_rss(bench.pid)
    count = len(process_tree(bench.pid))
    bench.report(
        Row("0. idle RSS, whole service", fmt_mib(rss), "(105 MiB before)", "<= 150 MiB", rss <= 150 * MiB)
    )
    print(f"   [{count} processes: gunicorn master and its workers]")


def run(bench: Bench, big_zip: Path | None, jobs_rounds: int = 0, tail: bool = False) -> None:
    if jobs_rounds:
        for round_number in range(jobs_rounds):
            bench_small_jobs(bench, round_number, cpu_split=True, tail=tail)
            delete_jobs(bench)  # each round starts on an engine without the last one's containers
            bench.jids.clear()
        return
    bench_idle_rss(bench)
    jids = bench_small_jobs(bench)
    bench_status_gets(bench, jids)
    if big_zip is None:
        return
    upload_jid = bench_upload(bench, big_zip)
    bench_download(bench, upload_jid)


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'measure':<33} {'value':>28}  {'pfcon 5.3':<22} {'target':<24} verdict")
    print("-" * 117)
    for row in rows:
        print(row.show())


def jobs_only(options: list[str]) -> int:
    """``--jobs [N]``: how many rounds of the small jobs alone (0 without the option)."""
    if "--jobs" not in options:
        return 0
    after = options[options.index("--jobs") + 1 :]
    return int(after[0]) if after and after[0].isdigit() else 1


def main() -> int:
    if not PFCON.exists():
        print(f"missing {PFCON}: create the venv first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-", dir="/var/tmp"))
    storebase, big_zip = work / "storebase", work / "big.zip"
    storebase.mkdir()
    bench: Bench | None = None
    try:
        options = sys.argv[1:]
        jobs_rounds = jobs_only(options)
        small_only = "--small" in options or jobs_rounds > 0
        if not small_only:
            print(f"building {BIG_SIZE // MiB} MiB zip in {work} ...", flush=True)
            build_big_zip(big_zip)
        with service(storebase, work / "pfcon.log") as (base, proc):
            bench = Bench(base=base, pid=proc.pid, storebase=storebase, session=login(base))
            info = bench.session.get(f"{base}health/").json()
            print(f"service pid {proc.pid} at {base}: {json.dumps(info)}")
            print(f"gunicorn processes: {process_tree(proc.pid)}\n", flush=True)
            try:
                run(bench, None if small_only else big_zip, jobs_rounds, "--tail" in options)
            finally:
                delete_jobs(bench)
        print_table(bench.rows)
        return 0
    except Exception as error:
        print(f"benchmark failed: {type(error).__name__}: {error}", file=sys.stderr)
        log = work / "pfcon.log"
        if log.exists():
            print("--- last lines of the service log ---", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
        return 1
    finally:
        if bench:
            remove_leftover_containers(bench.run_id)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
