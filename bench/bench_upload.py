"""Benchmark of uploads (issue 16): extraction as it arrives, next to the disk's own speed.

Prints, each beside a physical reference measured in the same run on the same disk:

1. upload + extract of a 20 000-file tree (19 996 files of 1-8 KiB in 200 folders and four
   of 32 MiB: 216 MiB) zipped with deflate as python-pfconclient does, against
   ``unzip -q`` of the same zip; goal <= 0.8x;
2. upload of a 512 MiB stored zip of random bytes against ``cp`` of the same zip; goal
   <= 1.5x, with the service's RSS growth (flat: < 64 MiB).

Each figure is the median of ``--rounds`` interleaved rounds (pfcon, then the reference),
with ``sync`` before each. It starts its own ``pfcon serve`` on a free port with a fresh
STOREBASE under /var/tmp (needs a running dockerd and ``localhost/pfcon-busybox:1``),
deletes its jobs and removes its files. Run from the repository root::

    .venv/bin/python bench/bench_upload.py [--rounds 3] [--files 20000] [--only tree|big]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import (  # the folder is not a package: imported from sys.path
    MiB,
    MultipartFile,
    PeakRss,
    build_big_zip,
    job_form,
    login,
    service,
    tree_cpu,
)
from bench_storage import make_tree

LARGE_FILES = 4


def timed(action: Callable[[], object]) -> tuple[float, object]:
    """Seconds ``action`` took (after a ``sync``), and what it returned."""
    subprocess.run(["sync"], check=False)
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def own_cpu(who: int) -> float:
    """CPU seconds (user + system) of this process (the client) or its finished children (unzip, cp)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds used meanwhile by the service (its process tree), by our children and by
    this process, the HTTP client, which shares the machine's cores with the service.

    On a shared machine wall time follows the load; CPU time much less, so both are shown.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> CpuMeter:
        self.service, self.children = tree_cpu(self.pid), own_cpu(resource.RUSAGE_CHILDREN)
        self.client = own_cpu(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.service = tree_cpu(self.pid) - self.service
        self.children = own_cpu(resource.RUSAGE_CHILDREN) - self.children
        self.client = own_cpu(resource.RUSAGE_SELF) - self.client


def zip_tree(tree: Path, target: Path) -> int:
    """Deflate every file, as python-pfconclient zips a job's input; returns the file count."""
    count = 0
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(tree).as_posix())
                count += 1
    return count


class Uploader:
    def __init__(self, base: str, run: str) -> None:
        self.base = base
        self.session = login(base)
        self.run = run
        self.count = 0

    def upload(self, archive: Path) -> dict:
        self.count += 1
        jid = f"pfcon-bench-{self.run}-up-{self.count}"
        body = MultipartFile(job_form(jid, ["sh"], ["-c", "true"], kind="fs"), "data_file", archive)
        reply = self.session.post(
            f"{self.base}jobs/", data=body, headers={"Content-Type": body.content_type}, timeout=600
        )
        if reply.status_code != 201:
            raise RuntimeError(f"upload: {reply.status_code} {reply.text[:300]}")
        self.last = jid
        return reply.json()

    def delete_last(self) -> None:
        self.session.delete(f"{self.base}jobs/{self.last}/", timeout=60)


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def compare_cpu(ours: list[float], reference: list[float], ref_name: str, client: list[float]) -> None:
    mine, ref = statistics.median(ours), statistics.median(reference)
    print(
        f"   CPU seconds: pfcon service {mine:.2f}, {ref_name} {ref:.2f} (ratio {mine / ref:.2f}x)"
        f"   [pfcon {_seconds(ours)}; reference {_seconds(reference)}]",
        flush=True,
    )
    print(f"   CPU seconds of the sending client (this process, same cores): {statistics.median(client):.2f}")
    print(f"   load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")


def compare(name: str, ours: list[float], reference: list[float], ref_name: str, goal: float) -> None:
    mine, ref = statistics.median(ours), statistics.median(reference)
    verdict = "PASS" if mine <= goal * ref else "MISS"
    print(
        f"{name:<44} {mine:6.2f} s   {ref_name} {ref:6.2f} s   ratio {mine / ref:4.2f}x "
        f"(goal <= {goal}x)  {verdict}   [pfcon {_seconds(ours)}; reference {_seconds(reference)}]",
        flush=True,
    )


def many_files(up: Uploader, pid: int, work: Path, files: int, rounds: int) -> None:
    tree, archive = work / "tree", work / "tree.zip"
    tree.mkdir()
    size = make_tree(tree, files, LARGE_FILES)
    count = zip_tree(tree, archive)
    shutil.rmtree(tree)
    print(
        f"tree: {count} files, {size / MiB:.0f} MiB; zip {archive.stat().st_size / MiB:.0f} MiB (deflate)",
        flush=True,
    )
    ours, reference, our_cpu, ref_cpu, client_cpu = [], [], [], [], []
    dest = work / "unzipped"
    unzip = ["unzip", "-q", str(archive), "-d", str(dest)]
    for _ in range(rounds):
        with CpuMeter(pid) as cpu:
            seconds, answer = timed(lambda: up.upload(archive))
        our_cpu.append(cpu.service)
        client_cpu.append(cpu.client)
        assert answer["data"]["nfiles"] == count, answer
        ours.append(seconds)
        up.delete_last()
        with CpuMeter(pid) as cpu:
            reference.append(timed(lambda: subprocess.run(unzip, check=True))[0])
        ref_cpu.append(cpu.children)
        shutil.rmtree(dest)
    compare(f"1. upload + extract, {count} files", ours, reference, "unzip -q", 0.8)
    compare_cpu(our_cpu, ref_cpu, "unzip -q", client_cpu)
    archive.unlink()


def big_upload(up: Uploader, pid: int, work: Path, rounds: int) -> None:
    archive = work / "big.zip"
    build_big_zip(archive)
    ours, reference, growth, our_cpu, ref_cpu, client_cpu = [], [], [], [], [], []
    copy = work / "copy.zip"
    for _ in range(rounds):
        with PeakRss(pid) as rss, CpuMeter(pid) as cpu:
            ours.append(timed(lambda: up.upload(archive))[0])
        growth.append(rss.growth)
        our_cpu.append(cpu.service)
        client_cpu.append(cpu.client)
        up.delete_last()
        with CpuMeter(pid) as cpu:
            reference.append(timed(lambda: subprocess.run(["cp", str(archive), str(copy)], check=True))[0])
        ref_cpu.append(cpu.children)
        copy.unlink()
    compare("2. upload 512 MiB (stored)", ours, reference, "cp      ", 1.5)
    compare_cpu(our_cpu, ref_cpu, "cp", client_cpu)
    worst = max(growth)
    verdict = "PASS" if worst < 64 * MiB else "MISS"
    print(f"   service RSS growth: {worst / MiB:+.1f} MiB at most (flat: < 64 MiB) {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--only", choices=("tree", "big"), help="run one of the two figures")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-upload-", dir="/var/tmp"))
    try:
        storebase = work / "storebase"
        storebase.mkdir()
        with service(storebase, work / "pfcon.log") as (base, proc):
            up = Uploader(base, work.name[-8:].replace("_", "x").lower())
            print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
            if args.only != "big":
                many_files(up, proc.pid, work, args.files, args.rounds)
            if args.only != "tree":
                big_upload(up, proc.pid, work, args.rounds)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
