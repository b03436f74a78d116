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
within 2x of ``cp -r``. It needs the Swift server of scripts/setup.d/40-swift.sh for parts 4
and 5 (skipped with a note when it does not answer) and removes everything it made. Run::

    .venv/bin/python bench/bench_storage.py [--files N] [--large N] [--huge-gib N]
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

from pfcon.settings import S3Settings, SwiftSettings
from pfcon.storage import copying
from pfcon.storage.base import InputRequest
from pfcon.storage.fslink import FslinkStorage
from pfcon.storage.innetwork import InNetworkStorage
from pfcon.storage.objectstore import ObjectStoreStorage, local_etag
from pfcon.storage.s3 import S3Storage
from pfcon.storage.s3store import S3Bucket
from pfcon.storage.swift import SwiftStorage
from pfcon.storage.swiftstore import SwiftContainer
from pfcon.storebase import StoreBase

MiB = 1024 * 1024
LARGE_SIZE = 32 * MiB
SWIFT = SwiftSettings("http://127.0.0.1:8080/auth/v1.0", "chris:chris1234", "testing", "pfcon-bench")
S3 = S3Settings("http://127.0.0.1:8080", "chris:chris1234", "testing", bucket_name="pfcon-bench-s3")


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


def store_figures(storage: ObjectStoreStorage, root: Path, files: int, size: int) -> list[Figure]:
    """Upload the tree through the output listing, list again, stage it back (swift or s3)."""
    name = storage.name
    try:
        storage.store.ping()
    except Exception as error:
        print(f"{name}: skipped, no server answers ({error}); run scripts/setup.d/40-swift.sh")
        return []
    storage.store.ensure_container()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    jid = claim_with_output(storage, root, prefix)
    listing = partial(storage.output, jid, prefix)
    figures = [
        timed(f"{name}: output listing, uploads every file", files, size, listing),
        timed(f"{name}: output listing again (uploads none)", files, size, listing),
        timed(f"{name}: staging from the store", files, size, stage(storage, prefix, f"{prefix}-out")),
    ]
    remove_objects(storage, prefix)
    return figures


def claim_with_output(storage: ObjectStoreStorage, tree: Path, prefix: str) -> str:
    """A job whose outgoing folder holds ``tree`` (hard links) and whose output dir is ``prefix``."""
    jid = f"bench-{uuid.uuid4().hex[:8]}"
    storage.storebase.claim(jid)
    copying.copy_tree(tree, storage.storebase.outgoing(jid))
    storage.remember_output(jid, Path(prefix))  # type: ignore[arg-type]
    return jid


def huge_figures(storebase: StoreBase, work: Path, gib: int) -> list[Figure]:
    """One file of ``gib`` GiB through s3: multipart upload, then ranged download, checked."""
    storage = S3Storage(storebase, S3)
    try:
        storage.store.ping()
    except Exception as error:
        print(f"s3 huge object: skipped, no server answers ({error})")
        return []
    storage.store.ensure_container()
    tree = work / "huge"
    tree.mkdir()
    size = gib * 1024**3
    with (tree / "huge.bin").open("wb") as out:  # real bytes: a sparse file would be read as zeros anyway
        chunk = os.urandom(8 * MiB)
        for _ in range(size // len(chunk)):
            out.write(chunk)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    jid = claim_with_output(storage, tree, prefix)
    figures = [timed(f"s3: {gib} GiB object, multipart upload", 1, size, lambda: storage.output(jid, prefix))]
    figures.append(timed(f"s3: {gib} GiB object, staging", 1, size, stage(storage, prefix, f"{prefix}-out")))
    (obj,) = storage.store.objects(prefix + "/")
    part = storage.store.part_size(size)
    same = obj.size == size and obj.etag == local_etag(tree / "huge.bin", part)
    print(f"s3 huge object: {obj.size} bytes in parts of {part // MiB} MiB, ETag {obj.etag}, matches: {same}")
    remove_objects(storage, prefix)
    return figures


def remove_objects(storage: ObjectStoreStorage, prefix: str) -> None:
    store = storage.store
    if isinstance(store, SwiftContainer):

        def remove(name: str) -> None:
            with store.connection("clean up") as conn:
                conn.delete_object(store.container, name)

    else:
        assert isinstance(store, S3Bucket)

        def remove(name: str) -> None:
            store.client.delete_object(Bucket=store.bucket, Key=name)

    names = [obj.name for obj in store.objects(prefix + "/")]
    copying.bounded_each(remove, names, copying.COPY_WORKERS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="runs per local figure (median)")
    parser.add_argument("--no-swift", action="store_true", help="no swift and s3 figures")
    parser.add_argument("--only", choices=("swift", "s3"), help="object-store figures of one store only")
    parser.add_argument("--huge-gib", type=int, default=0, help="also move one file this large through s3")
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
            stores = {"swift": SwiftStorage(storebase, SWIFT), "s3": S3Storage(storebase, S3)}
            for name, storage in stores.items():
                if args.only in (None, name):
                    figures += store_figures(storage, tree, files, size)
        if args.huge_gib:
            figures += huge_figures(storebase, work, args.huge_gib)
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
