"""Benchmark of pfcon 6's copy operation through the HTTP API; prints figures, asserts nothing.

pfcon 6 runs each copy, upload and delete in a container of its own; here they run in pfcon.
Against a live ``pfcon serve`` (gunicorn) with ``STORAGE_ENV=fslink`` on a fresh storeBase
under /var/tmp, it measures:

1. operation overhead: ``POST copyjobs/`` of a 3-file input, then GETs back to back until
   ``finishedSuccessfully`` (what ChRIS waits for), ``--small`` times: median and p95. The
   reference is what a container costs the engine: ``docker run --rm`` of the test image's
   ``true``, five times, median (pfcon 6's floor for the same operation).
2. a 20 000-file copy (the tree of bench_storage.py: 19 996 files of 1-8 KiB and four of
   32 MiB) from ``POST copyjobs/`` to ``finishedSuccessfully``, beside ``cp -r`` of the same
   tree on the same disk in the same run, ``--rounds`` interleaved rounds, medians.

Targets (issue 13): overhead median <= 30 ms; the 20 000-file copy within 1.5x ``cp -r``.
Every job it made is deleted through the API, and the storeBase removed. Run::

    .venv/bin/python bench/bench_operations.py [--small N] [--files N] [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import requests
from bench_api import login, service
from bench_storage import make_tree

IMAGE = "localhost/pfcon-busybox:1"


def copy_to_end(session: requests.Session, base: str, jid: str, input_dir: str, output_dir: str) -> float:
    """Seconds from the copy POST to the GET that answers finishedSuccessfully."""
    form = {"jid": jid, "input_dirs": [input_dir], "output_dir": output_dir}
    start = time.perf_counter()
    answer = session.post(f"{base}copyjobs/", data=form)
    answer.raise_for_status()
    status = answer.json()["compute"]["status"]
    while status not in ("finishedSuccessfully", "finishedWithError", "undefined"):
        status = session.get(f"{base}copyjobs/{jid}/").json()["compute"]["status"]
    elapsed = time.perf_counter() - start
    if status != "finishedSuccessfully":
        raise RuntimeError(f"copy {jid} ended {status}")
    return elapsed


def remove(session: requests.Session, base: str, jid: str) -> None:
    """The job's delete operation, then its DELETEs, as ChRIS ends a job."""
    session.post(f"{base}deletejobs/", data={"jid": jid}).raise_for_status()
    while session.get(f"{base}deletejobs/{jid}/").json()["compute"]["status"] != "finishedSuccessfully":
        time.sleep(0.01)
    for kind in ("copy", "plugin", "delete"):
        session.delete(f"{base}{kind}jobs/{jid}/").raise_for_status()


def container_start_reference(runs: int = 5) -> float | None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(["docker", "run", "--rm", IMAGE, "true"], capture_output=True, check=False)
        if done.returncode != 0:
            return None
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def overhead(session: requests.Session, base: str, storebase: Path, count: int) -> list[float]:
    small = storebase / "data/small"
    (small / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        (small / name).write_text(name)
    times = []
    for i in range(count):
        jid = f"bench-small-{i}-{uuid.uuid4().hex[:6]}"
        times.append(copy_to_end(session, base, jid, "data/small", f"data/out/{jid}"))
        remove(session, base, jid)
    return times


def large_copy(session: requests.Session, base: str, storebase: Path, files: int, rounds: int) -> None:
    tree = storebase / "data/big"
    tree.mkdir(parents=True)
    size = make_tree(tree, files, 4)
    cp_times, op_times = [], []
    for _ in range(rounds):
        dest = storebase / f"cp-{uuid.uuid4().hex[:8]}"
        subprocess.run(["sync"], check=False)
        start = time.perf_counter()
        subprocess.run(["cp", "-r", str(tree), str(dest)], check=True)
        cp_times.append(time.perf_counter() - start)
        shutil.rmtree(dest)
        jid = f"bench-big-{uuid.uuid4().hex[:8]}"
        subprocess.run(["sync"], check=False)
        op_times.append(copy_to_end(session, base, jid, "data/big", f"data/out/{jid}"))
        remove(session, base, jid)
    cp, op = statistics.median(cp_times), statistics.median(op_times)
    mib = size / 1024 / 1024
    print(f"{files}-file tree, {mib:.0f} MiB, median of {rounds} interleaved rounds:")
    print(f"  cp -r (baseline)                     {cp:7.2f} s  {files / cp:8.0f} files/s")
    line = f"{op:5.2f} s  {files / op:8.0f} files/s  {op / cp:.2f}x cp -r"
    print(f"  POST copyjobs/ -> finishedSuccessfully {line}")
    print(f"  target <= 1.5x cp -r: {'PASS' if op <= 1.5 * cp else 'MISS'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=50, help="small copies for the overhead figure")
    parser.add_argument("--files", type=int, default=20_000, help="files in the large tree")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the large copy")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-ops-", dir="/var/tmp"))
    storebase = work / "storeBase"
    storebase.mkdir()
    try:
        fslink = {"PFCON_INNETWORK": "true", "STORAGE_ENV": "fslink"}
        with service(storebase, work / "pfcon.log", fslink) as (base, _proc):
            session = login(base)
            times = sorted(overhead(session, base, storebase, args.small))
            median, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
            reference = container_start_reference()
            print(f"copy operation overhead, 3-file fslink input, {len(times)} runs:")
            figures = f"median {median * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms"
            print(f"  POST copyjobs/ -> finishedSuccessfully  {figures}")
            if reference is not None:
                print(
                    f"  docker run --rm {IMAGE} true (a container's cost) median {reference * 1000:6.0f} ms"
                )
            print(f"  target median <= 30 ms: {'PASS' if median <= 0.030 else 'MISS'}")
            large_copy(session, base, storebase, args.files, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
