"""Idle footprint of the whole service with default settings (issue 16: <= 150 MiB RSS).

Starts its own ``pfcon serve`` (as bench_api.py does: gunicorn master and its default
workers, docker engine, zipfile storage, SQLite store), waits for it to settle, and prints
each process's RSS and PSS (``/proc/<pid>/smaps_rollup``: PSS shares the pages the workers
have in common among them) and the totals, with the load average. ``--requests N`` then
runs one small job and N status polls of it, and prints the footprint again. ``--pfcon``
serves with another install, e.g. a venv without the test extras, as the image has (the
test extras bring ``cryptography``, which PyJWT then loads: about 9 MiB in each worker)::

    python3 -m venv /var/tmp/pfcon-prod && /var/tmp/pfcon-prod/bin/pip install -e .
    .venv/bin/python bench/bench_idle.py [--requests 50] [--pfcon /var/tmp/pfcon-prod/bin/pfcon]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api
from bench_api import MiB, job_form, login, process_tree, service, small_zip

GOAL = 150 * MiB


def rollup(pid: int) -> dict[str, int]:
    """Rss and Pss of one process in bytes, from /proc/<pid>/smaps_rollup."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) * 1024 for key in ("Rss", "Pss")}


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:60]


def use(base: str, polls: int) -> None:
    session = login(base)
    jid = f"pfcon-bench-idle-{os.getpid()}"
    reply = session.post(
        f"{base}jobs/", data=job_form(jid, ["true"]), files={"data_file": ("d.zip", small_zip())}
    )
    reply.raise_for_status()
    for _ in range(polls):
        session.get(f"{base}jobs/{jid}/").raise_for_status()
    time.sleep(2)
    session.delete(f"{base}jobs/{jid}/")


def report(master: int) -> int:
    totals = {"Rss": 0, "Pss": 0}
    for pid in process_tree(master):
        figures = rollup(pid)
        role = "master" if pid == master else "child"
        rss, pss = figures["Rss"] / MiB, figures["Pss"] / MiB
        print(f"  {pid:>7} {role:<6} RSS {rss:6.1f} MiB  PSS {pss:6.1f} MiB  {command(pid)}")
        for key in totals:
            totals[key] += figures[key]
    verdict = "PASS" if totals["Rss"] <= GOAL else "MISS"
    print(
        f"whole service: RSS {totals['Rss'] / MiB:.1f} MiB (goal <= {GOAL // MiB} MiB) {verdict}, "
        f"PSS {totals['Pss'] / MiB:.1f} MiB; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    return totals["Rss"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=0, help="status polls before the second figure")
    parser.add_argument(
        "--pfcon",
        type=Path,
        help="the pfcon command to serve with, e.g. of a venv with no test extras (as the image has)",
    )
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after start")
    args = parser.parse_args()
    if args.pfcon:
        bench_api.PFCON = args.pfcon
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-idle-", dir="/var/tmp"))
    try:
        storebase = work / "storebase"
        storebase.mkdir()
        with service(storebase, work / "pfcon.log") as (base, proc):
            time.sleep(args.settle)
            print("idle after start:")
            rss = report(proc.pid)
            if args.requests:
                use(base, args.requests)
                print(f"idle after one job and {args.requests} status polls:")
                report(proc.pid)
        return 0 if rss <= GOAL else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
