"""A bounded listing of a job's output folder for the dashboard (never the data itself).

It walks with :mod:`pfcon.safetree` like every output path, so whatever a job wrote (odd
names, deep trees, links, unreadable folders, a tree changing underneath) cannot break it;
it stops at ``limit`` entries. Names are shown as clients see them in listings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pfcon import safetree
from pfcon.errors import InvalidInput
from pfcon.storebase import resolve_inside


@dataclass(frozen=True)
class OutputEntry:
    path: str
    size: int
    kind: str  # file or other (links, FIFOs, ...)


@dataclass(frozen=True)
class OutputListing:
    entries: tuple[OutputEntry, ...]
    truncated: bool
    exists: bool


def list_output(root: Path, relative: str, limit: int = 1000) -> OutputListing:
    """Files under ``root/relative`` (storeBase-relative, as the store records it)."""
    try:
        fd = safetree.open_root(resolve_inside(root, relative, "output path"))
    except (InvalidInput, OSError):
        return OutputListing((), False, False)
    entries: list[OutputEntry] = []
    try:
        for entry in safetree.walk(fd):
            if entry.kind == safetree.DIR:
                continue
            if len(entries) == limit:
                return OutputListing(tuple(entries), True, True)
            entries.append(OutputEntry(entry.path, _size(entry), entry.kind))
    except OSError:  # the tree changed while it was read: show what was seen
        pass
    finally:
        os.close(fd)
    return OutputListing(tuple(entries), False, True)


def _size(entry: safetree.Entry) -> int:
    if entry.kind != safetree.FILE:
        return 0
    try:
        return os.stat(entry.name, dir_fd=entry.dir_fd, follow_symlinks=False).st_size
    except OSError:
        return 0
