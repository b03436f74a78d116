"""Paced ``POST jobs/`` latency of two versions side by side, on SQLite and PostgreSQL.

Prints figures, asserts nothing. Four ``pfcon serve`` take turns (as in bench_store.py, whose
helpers it uses): the code of ``PFCON_BENCH_CODE`` (default ``main``) and this working tree,
each on SQLite and on a PostgreSQL database of its own; each gets ``PFCON_BENCH_JOBS``
(default 40) small jobs, one second apart (the previous job's container started before the
next submit), so one run compares the two versions' submit paths in the same minutes.
``PFCON_BENCH_PACE`` sets the pause in seconds; 0 submits back to back, each submit racing
the containers of the jobs before it. Run from the repository root::

    .venv/bin/python bench/bench_submit_paced.py
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api as api
import bench_store as store_bench

OTHER = os.environ.get("PFCON_BENCH_CODE", "main")
PACE = float(os.environ.get("PFCON_BENCH_PACE", store_bench.PACE_SECONDS))


def main() -> int:
    api.SMALL_JOBS = int(os.environ.get("PFCON_BENCH_JOBS", "40"))
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, load average {os.getloadavg()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-paced-", dir="/var/tmp"))
    try:
        with contextlib.ExitStack() as stack:
            subjects = []
            for kind in ("sqlite", "postgresql"):
                for code in (OTHER, None):
                    database = kind
                    if kind == "postgresql":  # one each: two services on one start each other's jobs
                        database = stack.enter_context(store_bench.postgresql_database())
                    name = f"{kind}-{code or 'this'}"
                    subjects.append(stack.enter_context(store_bench.serving(name, database, work, code=code)))
            store_bench.measure_submits(subjects, "paced", pause=PACE)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    for subject in subjects:
        print(f"POST jobs/ {PACE} s apart, {subject.name:<24} {subject.figures['paced']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
