"""Profile of the submit path under 8 concurrent clients (py-spy); prints where the time goes.

Starts its own ``pfcon serve`` (as bench_api.py does), records it with ``py-spy record
--subprocesses`` while 80 small jobs are POSTed from 8 threads, and prints the share of the
samples inside ``JobService.submit`` spent in each of pfcon's functions and the library
calls they make, with the POST latency (median, p95) and the load average. Needs py-spy
(``.venv/bin/pip install py-spy``) and the rights to trace the service (root here)::

    .venv/bin/python bench/profile_submit.py [--jobs 80]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import CLIENTS, REPO, job_form, login, percentile, service, small_zip

PY_SPY = REPO / ".venv" / "bin" / "py-spy"
SPY_RECORD = (str(PY_SPY), "record", "--subprocesses", "--rate", "200", "--format", "raw")


def burst(base: str, headers: dict[str, str], jids: list[str]) -> list[float]:
    payload = small_zip()
    local = threading.local()

    def post(jid: str) -> float:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(headers)
        start = time.perf_counter()
        reply = local.session.post(
            f"{base}jobs/", data=job_form(jid, ["true"]), files={"data_file": ("d.zip", payload)}
        )
        if reply.status_code != 201:
            raise RuntimeError(f"POST {jid}: {reply.status_code} {reply.text[:300]}")
        return time.perf_counter() - start

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(post, jids))


@contextmanager
def recording(command: tuple[str, ...], pid: int, raw: Path) -> Iterator[None]:
    """``py-spy record`` of ``pid`` into ``raw`` while the block runs."""
    spy = subprocess.Popen(
        [*command, "-o", str(raw), "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(2)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(2)  # py-spy writes its profile on SIGINT
        spy.wait(timeout=60)


def _name(frame: str) -> str:
    """``function (file)`` of a py-spy frame ``function (file:line)``."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0]}"


def summarize(raw: Path, top: int = 25, root: str = "JobService.submit") -> None:
    """Inclusive share of each frame among the samples inside the function ``root``."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [
            frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] for frame in stack.split(";")
        ]
        if not count.isdigit() or not any(frame.startswith(f"{root} ") for frame in frames):
            continue
        total += int(count)
        below = frames[next(i for i, frame in enumerate(frames) if frame.startswith(f"{root} ")) :]
        for frame in set(below):
            inclusive[frame] += int(count)
    print(f"{total} samples inside {root}")
    for frame, count in inclusive.most_common(top):
        print(f"{100 * count / total:5.1f} %  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=80)
    args = parser.parse_args()
    if not PY_SPY.exists():
        print(f"missing {PY_SPY}: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pfcon-profile-", dir="/var/tmp"))
    storebase, raw = work / "storebase", work / "profile.raw"
    storebase.mkdir()
    try:
        with service(storebase, work / "pfcon.log") as (base, proc):
            session = login(base)
            with recording(SPY_RECORD, proc.pid, raw):
                load = os.getloadavg()[0]
                jids = [f"pfcon-profile-{os.getpid()}-{number}" for number in range(args.jobs)]
                latencies = burst(base, dict(session.headers), jids)
            for jid in jids:
                session.delete(f"{base}jobs/{jid}/", timeout=60)
        median, p95 = statistics.median(latencies) * 1000, percentile(latencies, 0.95) * 1000
        print(f"{args.jobs} POSTs from {CLIENTS} threads: median {median:.1f} ms, p95 {p95:.1f} ms")
        print(f"load average {load:.1f} on {os.cpu_count()} CPUs")
        summarize(raw)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
