"""The end of a job's log file, read with a bounded cost, for every backend that reads log files.

A job controls what its log holds (one 400 MB line, say) and, where its folder is mounted
into the job (Cromwell's call folders), what the log file *is*: a symlink to a file pfcon
may read, or a FIFO that would block the reading thread forever. So a tail

- opens the file without following a symlink and without blocking (``O_NOFOLLOW |
  O_NONBLOCK``) and reads it only if it is a regular file;
- reads at most :data:`MAX_TAIL_BYTES` from the end, backwards in blocks, and stops as soon
  as it holds the lines asked for: memory per poll is bounded whatever the lines' length.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

BLOCK = 64 * 1024
MAX_TAIL_BYTES = 1024 * 1024
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_tail(path: Path, lines: int, max_bytes: int = MAX_TAIL_BYTES) -> str:
    """The last ``lines`` lines of ``path``, from its last ``max_bytes`` bytes at most.

    ``""`` when the file is not there yet, or is not a regular file (a symlink, FIFO, device
    or folder). A line longer than the bytes read comes back cut at its start.
    """
    if lines <= 0:
        return ""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENXIO, errno.EISDIR):
            return ""
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        data = _read_back(fd, info.st_size, lines, max_bytes)
    finally:
        os.close(fd)
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept).decode("utf-8", errors="replace")


def _read_back(fd: int, end: int, lines: int, max_bytes: int) -> bytes:
    """Blocks from ``end`` backwards until ``lines`` full lines or ``max_bytes`` are read."""
    chunks: list[bytes] = []
    position, newlines = end, 0
    floor = max(0, end - max_bytes)
    while position > floor and newlines <= lines:
        step = min(BLOCK, position - floor)
        position -= step
        chunk = os.pread(fd, step, position)
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
    return b"".join(reversed(chunks))
