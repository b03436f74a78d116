"""Benchmark of the output zip and the output listing of a many-file tree; asserts nothing.

On one tree of ``--files`` files (default 20 000: files of 1-8 KiB in folders of 100, plus
``--large`` files of 32 MiB; about 200 MiB) under /var/tmp, measured in the same run:

1. ``zip -0 -r -q`` of the tree to /dev/null's disk twin (a file on the same disk): the
   physical reference (the goal is the output zip within 1.5x of it);
2. :func:`pfcon.storage.zipstream.stream_zip` of the tree written to a file on the same disk
   (what a download costs pfcon, without HTTP), with the peak RSS growth of this process;
3. the same zip downloaded from a real ``pfcon serve`` (gunicorn, as ``bench_api.py`` starts
   it; needs dockerd) into a file, with the service's RSS growth (skip: ``--no-http``);
4. the in-network output listing of the same tree (:func:`pfcon.storage.innetwork.output_files`).

Each figure is the median of ``--rounds`` interleaved runs (the disk and CPU are shared);
the page cache is warm for all of them alike. It removes what it made. Run::

    .venv/bin/python bench/bench_output_zip.py [--files N] [--large N] [--rounds N] [--no-http]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_api import login, service, tree_rss
from bench_storage import MiB, make_tree

from pfcon.storage.innetwork import output_files
from pfcon.storage.zipstream import stream_zip

JID = "benchzip"
CHUNK = 1024 * 1024


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def zip_reference(tree: Path, scratch: Path) -> None:
    target = scratch / "ref.zip"
    target.unlink(missing_ok=True)
    subprocess.run(["zip", "-0", "-r", "-q", str(target), "."], cwd=tree, check=True)


def pfcon_zip(tree: Path, scratch: Path) -> None:
    with open(scratch / "pfcon.zip", "wb") as out:
        for chunk in stream_zip(tree):
            out.write(chunk)


def http_zip(session, base: str, scratch: Path) -> None:
    with session.get(f"{base}jobs/{JID}/file/", stream=True, timeout=600) as reply:
        reply.raise_for_status()
        with open(scratch / "http.zip", "wb") as out:
            for chunk in reply.iter_content(CHUNK):
                out.write(chunk)


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def line(name: str, seconds: float, reference: float, size: int, note: str) -> None:
    verdict = "PASS" if seconds <= 1.5 * reference else "MISS"
    print(
        f"{name} {seconds:7.2f} s  {size / MiB / seconds:7.0f} MiB/s  {seconds / reference:4.2f}x "
        f"(target <= 1.5x: {verdict}); {note}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-http", action="store_true", help="skip the download through pfcon serve")
    args = parser.parse_args()
    if shutil.which("zip") is None:
        print("needs Info-ZIP's zip on PATH (apt-get install zip)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-zip-", dir="/var/tmp"))
    try:
        storebase = work / "storeBase"
        tree = storebase / f"key-{JID}" / "outgoing"  # where a finished job's output lies
        scratch = work / "scratch"
        scratch.mkdir()
        size = make_tree(tree, args.files, args.large)
        print(f"tree: {args.files} files, {size / MiB:.0f} MiB in {tree}")
        pfcon_zip(tree, scratch)  # warm the page cache for everyone
        with contextlib.ExitStack() as stack:
            session = base = proc = None
            if not args.no_http:
                base, proc = stack.enter_context(service(storebase, work / "pfcon.log"))
                session = login(base)
                http_zip(session, base, scratch)  # warm the workers
            before, service_before = rss_kib(), tree_rss(proc.pid) if proc else 0
            ref, ours, http, listing = [], [], [], []
            for _ in range(args.rounds):
                ref.append(timed(lambda: zip_reference(tree, scratch)))
                ours.append(timed(lambda: pfcon_zip(tree, scratch)))
                if session:
                    http.append(timed(lambda: http_zip(session, base, scratch)))
                listing.append(timed(lambda: output_files(tree)))
            growth = (rss_kib() - before) / 1024
            service_growth = (tree_rss(proc.pid) - service_before) / MiB if proc else 0
        r, o, s = (statistics.median(x) for x in (ref, ours, listing))
        print(f"{'zip -0 -r (reference)':<40} {r:7.2f} s  {size / MiB / r:7.0f} MiB/s  1.00x")
        line(f"{'pfcon output zip, in process':<40}", o, r, size, f"peak RSS growth {growth:.1f} MiB")
        if http:
            h = statistics.median(http)
            line(
                f"{'pfcon output zip, HTTP download':<40}",
                h,
                r,
                size,
                f"service RSS {service_growth:+.1f} MiB",
            )
        print(f"{'in-network output listing':<40} {s:7.2f} s  {args.files / s:7.0f} files/s  {s / r:4.2f}x")
        ref_size, our_size = ((scratch / n).stat().st_size for n in ("ref.zip", "pfcon.zip"))
        print(f"archive sizes: zip -0 {ref_size} B, pfcon {our_size} B")
    finally:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
