"""Reading the end of a log file without reading the whole file."""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 64 * 1024
MAX_BYTES = 8 * 1024 * 1024  # never read more than this from the end, however long the lines


def read_tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` ("" if it does not exist yet), read backwards."""
    if lines <= 0:
        return ""
    try:
        handle = path.open("rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return ""
    with handle:
        end = handle.seek(0, os.SEEK_END)
        position, data = end, b""
        while position > 0 and data.count(b"\n") <= lines and end - position < MAX_BYTES:
            step = min(BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept).decode("utf-8", errors="replace")
