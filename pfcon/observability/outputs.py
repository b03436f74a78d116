"""A bounded listing of a job's output folder for the dashboard (never the data itself).

Whatever a job wrote (odd names, deep trees, links, unreadable folders) must not break it: the
walk never follows links, skips what it cannot open, stops at ``limit`` entries, and names are
shown as text even when they are not UTF-8.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pfcon.errors import InvalidInput
from pfcon.storebase import resolve_inside


@dataclass(frozen=True)
class OutputEntry:
    path: str
    size: int
    kind: str  # file, link or other


@dataclass(frozen=True)
class OutputListing:
    entries: tuple[OutputEntry, ...]
    truncated: bool
    exists: bool


def _text(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def list_output(root: Path, relative: str, limit: int = 1000) -> OutputListing:
    """Files under ``root/relative`` (storeBase-relative, as the store records it)."""
    try:
        folder = resolve_inside(root, relative, "output path")
    except InvalidInput:
        return OutputListing((), False, False)
    if not folder.is_dir():
        return OutputListing((), False, False)
    entries: list[OutputEntry] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as found:
                children = sorted(found, key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in children:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                pending.append(Path(entry.path))
                continue
            if len(entries) == limit:
                return OutputListing(tuple(entries), True, True)
            kind = "file" if stat.S_ISREG(info.st_mode) else "link" if stat.S_ISLNK(info.st_mode) else "other"
            path = _text(os.path.relpath(entry.path, folder))
            entries.append(OutputEntry(path, info.st_size if kind == "file" else 0, kind))
    return OutputListing(tuple(sorted(entries, key=lambda e: e.path)), False, True)
