"""Profile of a running job's status poll under 8 concurrent clients (py-spy); prints where the CPU goes.

Starts its own ``pfcon serve`` (as bench_api.py does) and 20 jobs that sleep, records the
service with ``py-spy record --subprocesses`` while 8 keep-alive client processes poll
``GET jobs/<jid>/`` of those jobs (bench_api.py's clients), and prints the share of the
samples inside a request (``--root``, gunicorn's per-request handler by default) spent in
each frame below it, with the poll rate, p95 and the load average. Needs py-spy
(``.venv/bin/pip install py-spy``) and the rights to trace the service (root here)::

    .venv/bin/python bench/profile_status.py [--seconds 10] [--root FUNCTION] [--keep RAW]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api
from bench_api import RUNNING_JOBS, Bench, job_form, login, service, small_zip, status
from profile_submit import PY_SPY, SPY_RECORD, recording, summarize


def start_sleepers(bench: Bench) -> list[str]:
    """``RUNNING_JOBS`` jobs that sleep 120 s, once all are seen started."""
    jids = [bench.jid("running", number) for number in range(RUNNING_JOBS)]
    payload = {"data_file": ("d.zip", small_zip())}
    for jid in jids:
        form = job_form(jid, ["pl-copy"], ["--sleep", "120"])
        reply = bench.session.post(f"{bench.base}jobs/", data=form, files=payload)
        reply.raise_for_status()
    deadline = time.monotonic() + 120
    while any(status(bench, jid) != "started" for jid in jids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return jids


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--root", default="ThreadWorker.handle")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="copy py-spy's raw profile here")
    parser.add_argument("--no-spy", action="store_true", help="only the rate and CPU per poll, untraced")
    args = parser.parse_args()
    if not PY_SPY.exists():
        print(f"missing {PY_SPY}: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    bench_api.GET_SECONDS = args.seconds
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-profile-", dir="/var/tmp"))
    storebase, raw = work / "storebase", work / "profile.raw"
    storebase.mkdir()
    bench: Bench | None = None
    try:
        with service(storebase, work / "pfcon.log") as (base, proc):
            bench = Bench(base=base, pid=proc.pid, storebase=storebase, session=login(base))
            try:
                paths = [f"/api/v1/jobs/{jid}/" for jid in start_sleepers(bench)]
                spying = nullcontext() if args.no_spy else recording((*SPY_RECORD, "--gil"), proc.pid, raw)
                with spying:
                    load = os.getloadavg()[0]
                    cpu = bench_api.tree_cpu(proc.pid)
                    rate, errors, how, p95 = bench_api.gets_with_latency(bench, paths)
                    cpu = bench_api.tree_cpu(proc.pid) - cpu
            finally:
                bench_api.delete_jobs(bench)
        polls = rate * args.seconds
        print(f"{rate:.0f} polls/s, p95 {p95 * 1000:.1f} ms, {errors} non-200 [{how}]")
        print(f"service CPU {cpu:.1f} s for ~{polls:.0f} polls: {1000 * cpu / max(polls, 1):.2f} ms per poll")
        print(
            f"load average {load:.1f} on {os.cpu_count()} CPUs"
            + ("" if args.no_spy else " (py-spy adds CPU)")
        )
        if args.no_spy:
            return 0
        summarize(raw, args.top, args.root)
        if args.keep:
            shutil.copy(raw, args.keep)
        return 0
    finally:
        if bench:
            bench_api.remove_leftover_containers(bench.run_id)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
