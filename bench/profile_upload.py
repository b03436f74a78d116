"""Profile of one large upload (py-spy): where the service's CPU goes per uploaded byte.

Starts its own ``pfcon serve`` (as bench_api.py does), records it with ``py-spy record
--subprocesses`` while a 512 MiB stored zip (or ``--zip``) is POSTed to ``jobs/``, and prints
the functions with the most on-CPU samples, by own time and inclusive, with the load average. Needs
py-spy (``.venv/bin/pip install py-spy``) and the rights to trace the service::

    .venv/bin/python bench/profile_upload.py [--zip PATH]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import REPO, MultipartFile, build_big_zip, job_form, login, service, tree_cpu
from profile_submit import recording

PY_SPY = REPO / ".venv" / "bin" / "py-spy"
SPY_RECORD = (str(PY_SPY), "record", "--subprocesses", "--rate", "250", "--format", "raw")


def _frames(stack: str) -> list[str]:
    """``function (file)`` of each py-spy frame ``function (file:line)``, outermost first."""
    return [f"{frame.split(' (')[0]} ({frame.split(' (')[-1].split(':')[0]}" for frame in stack.split(";")]


def summarize(raw: Path, top: int = 20) -> None:
    """Own and inclusive share of each frame among the samples of the request's thread."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "handle_request" not in stack:
            continue
        frames = _frames(stack)
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    print(f"{total} samples in request threads")
    print("own time:")
    for frame, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f} %  {frame}")
    print("inclusive:")
    for frame, count in inclusive.most_common(top * 2):
        print(f"  {100 * count / total:5.1f} %  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zip", type=Path)
    args = parser.parse_args()
    if not PY_SPY.exists():
        print(f"missing {PY_SPY}: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pfcon-profile-upload-", dir="/var/tmp"))
    storebase, raw = work / "storebase", work / "profile.raw"
    storebase.mkdir()
    archive = args.zip or work / "big.zip"
    if args.zip is None:
        build_big_zip(archive)
    try:
        with service(storebase, work / "pfcon.log") as (base, proc):
            session = login(base)
            jid = f"pfcon-profile-upload-{os.getpid()}"
            body = MultipartFile(job_form(jid, ["sh"], ["-c", "true"], kind="fs"), "data_file", archive)
            with recording(SPY_RECORD, proc.pid, raw):
                cpu, start = tree_cpu(proc.pid), time.perf_counter()
                reply = session.post(
                    f"{base}jobs/", data=body, headers={"Content-Type": body.content_type}, timeout=600
                )
                wall, cpu = time.perf_counter() - start, tree_cpu(proc.pid) - cpu
            session.delete(f"{base}jobs/{jid}/", timeout=60)
        print(f"upload of {archive.stat().st_size / 2**20:.0f} MiB: HTTP {reply.status_code}")
        print(f"{wall:.2f} s wall, {cpu:.2f} CPU-s in the service; load average {os.getloadavg()[0]:.1f}")
        summarize(raw)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
