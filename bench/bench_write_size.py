"""How the size of one ``write()`` sets the cost of filling the page cache, beside ``cp``.

pfcon writes an upload's files with :func:`pfcon.storage.filemaker.write_all`, which hands
the kernel at most ``WRITE_PIECE`` bytes per call. This prints, for pieces of 64 KiB to
1 MiB, the CPU seconds that writing a 512 MiB file costs (read from the page cache into a
1 MiB buffer, as the upload's reader holds it, then written into blocks allocated ahead, as
the extractor does), interleaved with ``cp`` of the same file on the same disk, with
``sync`` before each. On this project's machines (a VM whose host takes back the guest's
free memory: virtio-balloon free page reporting) writes of 512 KiB and more are now and
then 4-8 times dearer than ``cp``; the median hides that, so the slowest round is printed too.
It is not a test::

    .venv/bin/python bench/bench_write_size.py [--rounds 8] [--mib 512]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pfcon.storage import filemaker

KiB = 1024
MiB = 1024 * KiB
PIECES = (64 * KiB, 256 * KiB, 512 * KiB, MiB)
READ_BUFFER = MiB


def write_copy(source: Path, target: Path, piece: int) -> float:
    """CPU seconds of this process to copy ``source`` through pfcon's ``write_all``."""
    filemaker.WRITE_PIECE = piece
    buffer = bytearray(READ_BUFFER)
    started = time.process_time()
    fd = filemaker.create_file(str(target), target.name)
    try:
        filemaker.reserve(fd, 0, source.stat().st_size)
        with source.open("rb", buffering=0) as reader:
            while count := reader.readinto(buffer):
                filemaker.write_all(fd, memoryview(buffer)[:count])
    finally:
        os.close(fd)
    return time.process_time() - started


def cp_copy(source: Path, target: Path) -> float:
    """CPU seconds of ``cp`` (a child process) for the same copy."""
    before = os.times()
    subprocess.run(["cp", str(source), str(target)], check=True)
    after = os.times()
    return (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--mib", type=int, default=512)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pfcon-bench-write-", dir="/var/tmp"))
    try:
        source = work / "source.bin"
        with source.open("wb") as out:
            for _ in range(args.mib):
                out.write(os.urandom(MiB))
        target = work / "copy.bin"
        copies: dict[str, Callable[[Path, Path], float]] = {
            **{label(piece): functools.partial(write_copy, piece=piece) for piece in PIECES},
            "cp": cp_copy,
        }
        spent: dict[str, list[float]] = {name: [] for name in copies}
        for _ in range(args.rounds):
            for name, copy in copies.items():
                subprocess.run(["sync"], check=False)
                spent[name].append(copy(source, target))
                target.unlink()
        reference = statistics.median(spent["cp"])
        print(f"{args.mib} MiB written from the page cache, {args.rounds} interleaved rounds (CPU seconds)")
        for name, values in spent.items():
            median, worst = statistics.median(values), max(values)
            print(
                f"  {name:>18}: median {median:.3f} ({median / reference:.2f}x cp), slowest {worst:.3f} "
                f"({worst / reference:.2f}x)   [{', '.join(f'{v:.2f}' for v in values)}]"
            )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def label(piece: int) -> str:
    return f"writes of {piece // KiB} KiB"


if __name__ == "__main__":
    sys.exit(main())
