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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pfcon.errors import InvalidInput
from pfcon.safetree import DIR, FILE, MAX_DEPTH, Entry, open_dir, open_regular, open_root, walk

if TYPE_CHECKING:
    from pfcon.storage.base import Progress

COPY_WORKERS = 8
CHUNK = 8 * 1024 * 1024
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)

T = TypeVar("T")
_END = object()


def bounded_each(func: Callable[[T], object], items: Iterable[T], workers: int = COPY_WORKERS) -> None:
    """Run ``func`` on every item with at most ``workers`` threads and ``2*workers`` items in flight.

    The first exception stops new work and is re-raised once the running items end, so a
    failed copy never leaves threads writing behind the caller's back. No item is taken from
    ``items`` once an error is known, and every item taken is run (an item may own a resource,
    such as an open file, that ``func`` releases).
    """
    slots = threading.BoundedSemaphore(2 * workers)
    errors: list[BaseException] = []

    def done(future: Future) -> None:
        slots.release()
        if future.exception() is not None:
            errors.append(future.exception())  # type: ignore[arg-type]

    pending = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pfcon-copy") as pool:
        while True:
            slots.acquire()
            item = next(pending, _END) if not errors else _END
            if item is _END:
                slots.release()
                break
            pool.submit(func, item).add_done_callback(done)
    if errors:
        raise errors[0]


def copy_file(src: Path, dest: Path) -> None:
    """Hard link, else clone, else streamed copy; an existing ``dest`` is left alone."""
    if not _hard_link(src, dest):
        _clone_or_copy(src, dest)


def _hard_link(
    src: str | Path,
    dest: str | Path,
    src_dir: int | None = None,
    dest_dir: int | None = None,
    exist_ok: bool = True,
) -> bool:
    """Whether ``dest`` is now there (linked, or already present); False: copy it instead.

    ``linkat`` without ``AT_SYMLINK_FOLLOW``: a symlink at ``src`` is never followed. With
    ``exist_ok=False`` a ``dest`` already there is :class:`FileExistsError`.
    """
    try:
        os.link(src, dest, src_dir_fd=src_dir, dst_dir_fd=dest_dir, follow_symlinks=False)
    except FileExistsError:
        if not exist_ok:
            raise
        return True
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        return False
    return True


def _clone_or_copy(src: str | Path, dest: str | Path, exist_ok: bool = True) -> None:
    source = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        target = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except BaseException as error:
        os.close(source)
        if isinstance(error, FileExistsError) and exist_ok:
            return
        raise
    _clone_or_copy_fds(source, target)


def _clone_or_copy_fds(src_fd: int, dest_fd: int) -> None:
    """Clone, else stream, ``src_fd`` into ``dest_fd``; both are closed."""
    try:
        try:
            fcntl.ioctl(dest_fd, FICLONE, src_fd)
            return
        except OSError:
            pass
        _stream(src_fd, dest_fd)
    finally:
        os.close(src_fd)
        os.close(dest_fd)


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


@dataclass(frozen=True)
class FoundFile:
    """A regular file met by :func:`scan_files`."""

    path: str  # root joined with the on-disk names (for reading a link file)
    name: str


def scan_files(root: str) -> Iterator[FoundFile]:
    """Regular files under ``root``, any depth, walked fd-relative (:mod:`pfcon.safetree`).

    Symlinks and special files are neither followed nor listed: a tree in storeBase may hold
    links planted by a job, and following one could read outside storeBase. A missing root
    has no files.
    """
    try:
        fd = open_root(root)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        for entry in walk(fd, max_depth=None):
            if entry.kind == FILE:
                yield FoundFile(os.path.join(root, *entry.names), entry.name)
    finally:
        os.close(fd)


def copy_new_files(pairs: Iterable[tuple[str, str]], workers: int = COPY_WORKERS) -> None:
    """Copy each ``(source, dest)`` file, making destination folders; never over an existing one.

    A destination already there is :class:`FileExistsError` (the link resolver's "name
    taken"). Sources are opened without following a symlink at their last component. The
    loop makes the folders and hard-links each file itself; only byte copies go to the pool.
    """
    made: set[str] = set()

    def to_copy() -> Iterator[tuple[str, str]]:
        for source, target in pairs:
            folder = os.path.dirname(target)
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            if not _hard_link(source, target, exist_ok=False):
                yield source, target

    bounded_each(lambda pair: _clone_or_copy(*pair, exist_ok=False), to_copy(), workers)


def copy_tree(src: Path, dest: Path, workers: int = COPY_WORKERS, progress: Progress | None = None) -> None:
    """Copy the regular files and folders of ``src`` into ``dest`` (merged if it exists).

    Both sides are walked and written fd-relative without following links
    (:mod:`pfcon.safetree`), so a folder swapped for a symlink while it is copied leads
    nowhere. A source deeper than :data:`~pfcon.safetree.MAX_DEPTH` folders is refused
    (:class:`InvalidInput`) rather than staged in part. The walk makes the folders and
    hard-links each file itself (one cheap syscall; a thread hand-off would cost more); only
    files that must be copied byte by byte go to the pool. ``progress`` counts each file as
    it is reached, with its size (pfcon 6's copy operation reports it while it runs).
    """
    os.makedirs(dest, exist_ok=True)
    src_fd = open_root(src)
    stack = [open_root(dest)]  # stack[k]: the destination folder at depth k

    def refuse(entry: Entry) -> None:
        raise InvalidInput(f"input: {src.name}/{entry.path[:200]}... is deeper than {MAX_DEPTH} folders")

    def to_copy() -> Iterator[tuple[int, int]]:
        for entry in walk(src_fd, MAX_DEPTH, too_deep=refuse):
            depth = len(entry.parts)
            for fd in stack[depth:]:
                os.close(fd)
            del stack[depth:]
            parent = stack[-1]
            if entry.kind == DIR:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(entry.name, dir_fd=parent)
                stack.append(open_dir(entry.name, dir_fd=parent))
                continue
            if entry.kind != FILE:
                continue
            if progress is not None:
                progress.add(os.stat(entry.name, dir_fd=entry.dir_fd, follow_symlinks=False).st_size)
            if not _hard_link(entry.name, entry.name, entry.dir_fd, parent):
                pair = _open_pair(entry, parent)
                if pair is not None:
                    yield pair

    try:
        bounded_each(lambda pair: _clone_or_copy_fds(*pair), to_copy(), workers)
    finally:
        os.close(src_fd)
        for fd in stack:
            os.close(fd)


def _open_pair(entry: Entry, dest_dir: int) -> tuple[int, int] | None:
    """(source, new destination) descriptors for a byte copy; None if either side is not to be."""
    opened = open_regular(entry.dir_fd, entry.name)
    if opened is None:
        return None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return opened[0], os.open(entry.name, flags, 0o666, dir_fd=dest_dir)
    except FileExistsError:
        os.close(opened[0])
        return None
    except BaseException:
        os.close(opened[0])
        raise
