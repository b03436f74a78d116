"""Fast, bounded copies of files and trees inside storeBase (fslink staging, link files).

Staging input is the hot path of in-network storage: ChRIS hands pfcon trees of tens of
thousands of files. A hard link is one metadata write and no data, so it is tried first; a
copy-on-write clone (``FICLONE``, btrfs/XFS) next; a streamed copy (``sendfile``, in the
kernel) last. Files are handled by a small thread pool: the syscalls release the GIL, and a
bounded number in flight keeps memory flat whatever the tree size.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

COPY_WORKERS = 8
CHUNK = 8 * 1024 * 1024
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)

T = TypeVar("T")


def bounded_each(func: Callable[[T], object], items: Iterable[T], workers: int = COPY_WORKERS) -> None:
    """Run ``func`` on every item with at most ``workers`` threads and ``2*workers`` items in flight.

    The first exception stops new work and is re-raised once the running items end, so a
    failed copy never leaves threads writing behind the caller's back.
    """
    slots = threading.BoundedSemaphore(2 * workers)
    errors: list[BaseException] = []

    def done(future: Future) -> None:
        slots.release()
        if future.exception() is not None:
            errors.append(future.exception())  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pfcon-copy") as pool:
        for item in items:
            slots.acquire()
            if errors:
                slots.release()
                break
            pool.submit(func, item).add_done_callback(done)
    if errors:
        raise errors[0]


def copy_file(src: Path, dest: Path) -> None:
    """Hard link, else clone, else streamed copy; an existing ``dest`` is left alone."""
    if not _hard_link(src, dest):
        _clone_or_copy(src, dest)


def _hard_link(src: str | Path, dest: str | Path) -> bool:
    """Whether ``dest`` is now there (linked, or already present); False: copy it instead."""
    try:
        os.link(src, dest)
    except FileExistsError:
        return True
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        return False
    return True


def _clone_or_copy(src: Path, dest: Path) -> None:
    try:
        target = open(dest, "xb")  # noqa: SIM115 - closed below, with the source
    except FileExistsError:
        return
    with open(src, "rb") as source, target:
        try:
            fcntl.ioctl(target.fileno(), FICLONE, source.fileno())
            return
        except OSError:
            pass
        _stream(source.fileno(), target.fileno())


def _stream(src_fd: int, dest_fd: int) -> None:
    """Copy in the kernel with ``sendfile`` (never the whole file in our memory)."""
    offset = 0
    while True:
        try:
            sent = os.sendfile(dest_fd, src_fd, offset, CHUNK)
        except OSError as error:
            if offset == 0 and error.errno in (errno.EINVAL, errno.ENOSYS):
                with open(src_fd, "rb", closefd=False) as source, open(dest_fd, "wb", closefd=False) as dest:
                    shutil.copyfileobj(source, dest, CHUNK)
                return
            raise
        if sent == 0:
            return
        offset += sent


def scan_files(root: str) -> Iterator[os.DirEntry[str]]:
    """Regular files under ``root``, depth first, from ``scandir`` alone (no extra ``stat``).

    Symlinks and special files are neither followed nor listed: a tree in storeBase may hold
    links planted by a job, and following one could read outside storeBase.
    """
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                yield entry


def copy_tree(src: Path, dest: Path, workers: int = COPY_WORKERS) -> None:
    """Copy the regular files and folders of ``src`` into ``dest`` (merged if it exists).

    The walk makes the folders and hard-links each file itself (one cheap syscall; a thread
    hand-off would cost more); only files that must be copied byte by byte go to the pool.
    """
    source_root = os.fspath(src)
    dest_root = os.fspath(dest)
    skip = len(source_root) + 1
    made: set[str] = set()

    def to_copy() -> Iterator[tuple[Path, Path]]:
        os.makedirs(dest_root, exist_ok=True)
        for entry in scan_files(source_root):
            target = os.path.join(dest_root, entry.path[skip:])
            folder = os.path.dirname(target)
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            if not _hard_link(entry.path, target):
                yield Path(entry.path), Path(target)

    bounded_each(lambda pair: _clone_or_copy(*pair), to_copy(), workers)
