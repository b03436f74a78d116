"""Fast, bounded copies of files and trees inside storeBase (fslink staging, link files).

Staging input is the hot path of in-network storage: ChRIS hands pfcon trees of tens of
thousands of files. A hard link is one metadata write and no data, so it is tried first; a
copy-on-write clone (``FICLONE``, btrfs/XFS) next; a streamed copy (``sendfile``, in the
kernel) last. Files are handled by a small thread pool: the syscalls release the GIL, and a
bounded number in flight keeps memory flat whatever the tree size.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import threading
from collections.abc import Callable, Iterable
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
    try:
        os.link(src, dest)
        return
    except FileExistsError:
        return
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
    _clone_or_copy(src, dest)


def _clone_or_copy(src: Path, dest: Path) -> None:
    with open(src, "rb") as source, open(dest, "xb") as target:
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


def tree_files(src: Path, dest: Path) -> Iterable[tuple[Path, Path]]:
    """Create the folders of ``src`` under ``dest`` and yield (source, destination) file pairs.

    Symlinks and special files are neither followed nor copied: a tree in storeBase may hold
    links planted by a job, and following one could read outside storeBase.
    """
    for dirpath, dirs, files in os.walk(src, followlinks=False):
        here = dest / os.path.relpath(dirpath, src)
        here.mkdir(parents=True, exist_ok=True)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
        for name in files:
            path = Path(dirpath, name)
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    yield path, here / name


def copy_tree(src: Path, dest: Path, workers: int = COPY_WORKERS) -> None:
    """Copy the regular files and folders of ``src`` into ``dest`` (merged if it exists)."""
    bounded_each(lambda pair: copy_file(*pair), tree_files(src, dest), workers)
