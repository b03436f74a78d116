"""Benchmark of in-network staging and output listing; prints figures, asserts nothing.

What it measures, on one input tree of ``--files`` files (default 20 000: many small files of
1-8 KiB and ``--large`` files of 32 MiB), all on the same disk under /var/tmp:

1. ``cp -r`` of the tree: the physical limit here (the baseline);
2. fslink staging (``FslinkStorage.stage_input``: copy the tree with link resolution), with
   hard links as on one filesystem, and with them refused (as across filesystems: every
   byte copied);
3. listing a 20 000-file output in fslink mode (a walk of ``output_dir``);
4. swift: the output listing of a job whose outgoing folder is that tree (uploads all of it),
   the same listing again (uploads nothing), and staging the tree back from Swift.

Local staging figures are the median of ``--rounds`` interleaved runs (the disk is shared).
Each figure is files/s and MiB/s, with the ratio to ``cp -r``; the target is fslink staging
within 2x of ``cp -r``. It needs the Swift server of scripts/setup.d/40-swift.sh for part 4
(skipped with a note when it does not answer) and removes everything it made. Run::

    .venv/bin/python bench/bench_storage.py [--files N] [--large N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from unittest import mock

from pfcon.settings import SwiftSettings
from pfcon.storage import copying
from pfcon.storage.base import InputRequest
from pfcon.storage.fslink import FslinkStorage
from pfcon.storage.innetwork import InNetworkStorage
from pfcon.storage.swift import SwiftStorage
from pfcon.storebase import StoreBase

MiB = 1024 * 1024
LARGE_SIZE = 32 * MiB
SWIFT = SwiftSettings("http://127.0.0.1:8080/auth/v1.0", "chris:chris1234", "testing", "pfcon-bench")


@dataclass(frozen=True)
class Figure:
    name: str
    seconds: float
    files: int
    size: int

    def line(self, baseline: Figure | None) -> str:
        ratio = f"{self.seconds / baseline.seconds:5.2f}x cp -r" if baseline else ""
        return (
            f"{self.name:<44} {self.seconds:8.2f} s {self.files / self.seconds:10.0f} files/s "
            f"{self.size / MiB / self.seconds:8.1f} MiB/s  {ratio}"
        )


def make_tree(root: Path, files: int, large: int) -> int:
    """Write the input tree: folders of 100 small files, and a few large ones; returns bytes."""
    rng = random.Random(42)
    blob = os.urandom(8 * 1024)
    total = 0
    for i in range(files - large):
        folder = root / f"d{i // 1000:03d}" / f"s{(i // 100) % 10}"
        if i % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1024, 8 * 1024)
        (folder / f"f{i:06d}.dat").write_bytes(blob[:size])
        total += size
    chunk = os.urandom(MiB)
    for i in range(large):
        with (root / f"large{i}.bin").open("wb") as out:
            for _ in range(LARGE_SIZE // MiB):
                out.write(chunk)
        total += LARGE_SIZE
    return total


def timed(name: str, files: int, size: int, action: Callable[[], object]) -> Figure:
    subprocess.run(["sync"], check=False)
    start = time.perf_counter()
    action()
    return Figure(name, time.perf_counter() - start, files, size)


def local_staging(
    tree: Path, work: Path, fslink: FslinkStorage, files: int, size: int, rounds: int
) -> tuple[Figure, Figure, Figure]:
    """cp -r, fslink with hard links, fslink with copies: interleaved rounds, median of each.

    The disk here is shared with other work, so one slow moment must not land on one side only.
    """
    names = ("cp -r (baseline)", "fslink: staging (hard links)", "fslink: staging (copies, no hard links)")
    runs: list[list[float]] = [[], [], []]
    for _ in range(rounds):
        tag = uuid.uuid4().hex[:8]
        dest = work / f"cp-{tag}"
        command = ["cp", "-r", str(tree), str(dest)]
        runs[0].append(timed(names[0], files, size, partial(subprocess.run, command, check=True)).seconds)
        runs[1].append(timed(names[1], files, size, stage(fslink, "data/in", f"data/o-{tag}")).seconds)
        with no_hard_links():
            runs[2].append(timed(names[2], files, size, stage(fslink, "data/in", f"data/c-{tag}")).seconds)
    medians = [sorted(r)[len(r) // 2] for r in runs]
    base, linked, copied = (Figure(n, m, files, size) for n, m in zip(names, medians, strict=True))
    return base, linked, copied


@contextmanager
def no_hard_links() -> Iterator[None]:
    def refuse(*_args, **_kwargs):
        raise OSError(18, "Invalid cross-device link")

    with mock.patch.object(copying.os, "link", refuse):
        yield


def stage(storage: InNetworkStorage, input_dir: str, output_dir: str) -> Callable[[], object]:
    jid = f"bench-{uuid.uuid4().hex[:8]}"

    def run() -> object:
        request = InputRequest(input_dirs=(input_dir,), output_dir=output_dir)
        dirs = storage.job_dirs(jid, request)
        storage.storebase.claim(jid)
        return storage.stage_input(jid, request, dirs)

    return run


def swift_figures(root: Path, storebase: StoreBase, files: int, size: int) -> list[Figure]:
    storage = SwiftStorage(storebase, SWIFT)
    try:
        storage.swift.ping()
    except Exception as error:
        print(f"swift: skipped, no server answers ({error}); run scripts/setup.d/40-swift.sh")
        return []
    storage.swift.ensure_container()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    jid = f"bench-{uuid.uuid4().hex[:8]}"
    storebase.claim(jid)
    copying.copy_tree(root, storebase.outgoing(jid))
    storage.remember_output(jid, Path(prefix))  # type: ignore[arg-type]
    figures = [
        timed("swift: output listing, uploads every file", files, size, lambda: storage.output(jid, prefix)),
        timed("swift: output listing again (uploads none)", files, 0, lambda: storage.output(jid, prefix)),
    ]
    figures.append(timed("swift: staging from Swift", files, size, stage(storage, prefix, f"{prefix}-out")))
    remove_objects(storage, prefix)
    return figures


def remove_objects(storage: SwiftStorage, prefix: str) -> None:
    def remove(name: str) -> None:
        with storage.swift.connection("clean up") as conn:
            conn.delete_object(storage.swift.container, name)

    names = [obj["name"] for obj in storage.swift.objects(prefix + "/")]
    copying.bounded_each(remove, names, copying.COPY_WORKERS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="runs per local figure (median)")
    parser.add_argument("--no-swift", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-storage-", dir="/var/tmp"))
    try:
        storebase = StoreBase(work / "storeBase")
        tree = storebase.root / "data/in"
        tree.mkdir(parents=True)
        storebase.ensure()
        size = make_tree(tree, args.files, args.large)
        files = args.files
        print(
            f"tree: {files} files ({files - args.large} of 1-8 KiB, {args.large} of 32 MiB), "
            f"{size / MiB:.0f} MiB, on {work}; {os.cpu_count()} CPUs"
        )
        subprocess.run(["cp", "-r", str(tree), str(work / "warm")], check=True)  # warm the page cache
        shutil.rmtree(work / "warm")
        fslink = FslinkStorage(storebase)
        base, linked, copied = local_staging(tree, work, fslink, files, size, args.rounds)
        figures = [linked, copied]
        listing_jid = "bench-listing"
        storebase.claim(listing_jid)
        fslink.remember_output(listing_jid, Path("data/in"))  # type: ignore[arg-type]
        figures.append(
            timed("fslink: output listing", files, size, lambda: fslink.output(listing_jid, "data/in"))
        )
        if not args.no_swift:
            figures += swift_figures(tree, storebase, files, size)
        print(base.line(None))
        for figure in figures:
            print(figure.line(base))
        ratio = figures[0].seconds / base.seconds
        print(f"target: fslink staging within 2x of cp -r: {'PASS' if ratio <= 2 else 'MISS'} ({ratio:.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
