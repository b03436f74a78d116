"""Small extracted files created on two threads while the upload goes on.

Creating a small file is mostly kernel work (an inode, a directory entry, its pages): about
90 % of the CPU of extracting a tree of 20 000 small files, for us as for ``unzip``. The
extractor checks each entry as before (name, sizes, CRC) in the request's thread and hands
each complete small file here; two threads create them, so two files are made at once on
two cores. A folder's files all go to the same thread (folders are dealt out in turn as
they first appear): two threads creating files in one folder mostly wait on its lock
and measured slower than one. Memory stays bounded: files travel in batches of at most
``BATCH_BYTES`` and ``BATCH_FILES``, and at most ``DEPTH`` batches wait per thread (the
request's thread waits when they are full).
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading

from pfcon.errors import InvalidInput

THREADS = 2
BATCH_BYTES = 1024 * 1024
BATCH_FILES = 256
DEPTH = 2
#: the most one ``write()`` hands the kernel. Here 512 MiB written in pieces of 512 KiB or
#: 1 MiB now and then cost 4-8x the CPU of ``cp`` (the kernel's copy into the page cache's
#: large folios stalls; likely first touches of memory the VM's host had taken back: its
#: virtio-balloon reports free pages), in pieces of 256 KiB steadily 0.8x
#: (bench/bench_write_size.py; docs/uploads.md)
WRITE_PIECE = 256 * 1024
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW

#: a file to create: its path, its entry's name (for messages) and its data in chunks
Job = tuple[str, str, list[bytes]]


def create_file(target: str, name: str) -> int:
    """Open a new file for writing; a name taken already is the archive's fault (400)."""
    try:
        return os.open(target, NEW_FILE, 0o644)
    except FileExistsError:
        raise InvalidInput(f"data_file: entry {name!r} appears twice") from None
    except (NotADirectoryError, IsADirectoryError):
        raise InvalidInput(f"data_file: entry {name!r} clashes with another entry") from None


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data``, in pieces of at most :data:`WRITE_PIECE`."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:WRITE_PIECE]) :]


_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
KEEP_SIZE = 0x01  # FALLOC_FL_KEEP_SIZE: allocate blocks, leave the file's size as it is


def reserve(fd: int, offset: int, length: int) -> bool:
    """Allocate the blocks of ``fd[offset:offset + length]`` before they are written.

    Writing a large file into blocks allocated in one call cost ext4 here a quarter less
    CPU than allocating them write by write (0.096 against 0.129 CPU-s per 512 MiB). The
    file's size is kept, so a file cut short never looks longer than what was written.
    Returns False when the filesystem cannot (or the disk is full): the writes then decide,
    as without it. The raw ``fallocate`` call, as ``os.posix_fallocate`` would fall back
    to writing a byte into every block where the filesystem lacks it (NFS before 4.2).
    """
    return _LIBC.fallocate(fd, KEEP_SIZE, offset, length) == 0


def make_file(target: str, name: str, chunks: list[bytes]) -> None:
    fd = create_file(target, name)
    try:
        for chunk in chunks:
            write_all(fd, chunk)
    finally:
        os.close(fd)


class FileMaker:
    """Creates small files on :data:`THREADS` threads, started at the first batch.

    Errors (a name taken, no space left) are kept and raised in the caller's thread by
    :meth:`raise_error` and :meth:`finish`; after one, the threads skip what is left.
    """

    def __init__(self) -> None:
        self._queues: list[queue.Queue[list[Job] | None]] = []
        self._threads: list[threading.Thread] = []
        self._slots: dict[str, int] = {}  # folder -> the thread that creates its files
        self._batch: list[Job] = []
        self._folder = ""
        self._bytes = 0
        self._error: BaseException | None = None
        self._stopped = False

    def add(self, target: str, name: str, chunks: list[bytes], size: int) -> None:
        folder = target.rpartition("/")[0]
        if self._batch and (
            folder != self._folder or self._bytes >= BATCH_BYTES or len(self._batch) >= BATCH_FILES
        ):
            self._send()
        self._batch.append((target, name, chunks))
        self._folder = folder
        self._bytes += size

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        """Wait until every file added is created; raises the first error."""
        if self._batch:
            self._send()
        self._stop()
        self.raise_error()

    def abort(self) -> None:
        """Stop creating files and wait for the threads (before the folder is removed)."""
        self._stopped = True
        self._batch = []
        self._stop()

    def _send(self) -> None:
        if not self._threads:
            self._start()
        slot = self._slots.setdefault(self._folder, len(self._slots) % THREADS)
        self._queues[slot].put(self._batch)
        self._batch, self._bytes = [], 0

    def _start(self) -> None:
        for _ in range(THREADS):
            jobs: queue.Queue[list[Job] | None] = queue.Queue(DEPTH)
            thread = threading.Thread(target=self._run, args=(jobs,), name="pfcon-unzip", daemon=True)
            self._queues.append(jobs)
            self._threads.append(thread)
            thread.start()

    def _stop(self) -> None:
        for jobs in self._queues:
            jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._queues, self._threads = [], []

    def _run(self, jobs: queue.Queue[list[Job] | None]) -> None:
        while (batch := jobs.get()) is not None:
            for target, name, chunks in batch:
                if self._stopped or self._error is not None:
                    break
                try:
                    make_file(target, name, chunks)
                except BaseException as error:  # kept for the request's thread
                    self._error = self._error or error
