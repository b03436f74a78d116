"""Safe extraction of an uploaded zip.

Checks the central directory before writing anything (entry count, declared sizes,
compression ratio, overlapping entries, names) and counts bytes again while writing, since
headers can lie. Every name is confined to the destination; symlink entries are refused.
"""

from __future__ import annotations

import itertools
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import IO

from pfcon.errors import InvalidInput, PayloadTooLarge
from pfcon.settings import ZipLimits
from pfcon.storebase import safe_relative

CHUNK = 1024 * 1024
_RATIO_FLOOR = 1024 * 1024  # small members may compress well without being bombs


def _open(upload: IO[bytes]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidInput(f"data_file: not a valid zip file ({exc})") from None


def _archive_size(upload: IO[bytes]) -> int:
    upload.seek(0, os.SEEK_END)
    return upload.tell()


def check_archive(archive: zipfile.ZipFile, archive_size: int, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """Refuse bombs and unsafe names before anything is written; returns the members."""
    members = archive.infolist()
    if len(members) > limits.max_entries:
        raise PayloadTooLarge(f"data_file: {len(members)} entries, over the limit of {limits.max_entries}")
    total = sum(m.file_size for m in members)
    if total > limits.max_unzipped_bytes:
        raise PayloadTooLarge(
            f"data_file: uncompressed size {total} bytes is over the limit of {limits.max_unzipped_bytes}"
        )
    if total > _RATIO_FLOOR and total > limits.max_ratio * max(archive_size, 1):
        raise InvalidInput(f"data_file: expands {total // max(archive_size, 1)}x, looks like a zip bomb")
    for member in members:
        if member.file_size > _RATIO_FLOOR and member.file_size > limits.max_ratio * max(
            member.compress_size, 1
        ):
            raise InvalidInput(
                f"data_file: entry {member.filename!r} expands too much, looks like a zip bomb"
            )
        if stat.S_ISLNK(member.external_attr >> 16):
            raise InvalidInput(
                f"data_file: entry {member.filename!r} is a symbolic link, which is not allowed"
            )
        safe_relative(member.filename, "data_file entry")
    _check_no_overlap(members)
    return members


def _check_no_overlap(members: list[zipfile.ZipInfo]) -> None:
    """Entries whose data overlap another's are the trick of non-recursive zip bombs."""
    ordered = sorted(members, key=lambda m: m.header_offset)
    for current, following in itertools.pairwise(ordered):
        if current.header_offset + current.compress_size > following.header_offset:
            raise InvalidInput("data_file: zip entries overlap, looks like a zip bomb")


def extract(upload: IO[bytes], dest: Path, limits: ZipLimits) -> int:
    """Extract ``upload`` into ``dest`` (which must exist); returns the number of files."""
    with _open(upload) as archive:
        members = check_archive(archive, _archive_size(upload), limits)
        budget = limits.max_unzipped_bytes
        files = 0
        for member in members:
            target = dest / safe_relative(member.filename, "data_file entry")
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            budget -= _extract_member(archive, member, target, budget)
            files += 1
        return files


def _extract_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError:
        raise InvalidInput(f"data_file: entry {member.filename!r} appears twice") from None
    except (NotADirectoryError, IsADirectoryError):
        raise InvalidInput(f"data_file: entry {member.filename!r} clashes with another entry") from None
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, archive.open(member) as src:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > budget:
                    raise PayloadTooLarge("data_file: uncompressed content is over the configured limit")
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error) as exc:
        raise InvalidInput(f"data_file: entry {member.filename!r} cannot be read ({exc})") from None
    return written
