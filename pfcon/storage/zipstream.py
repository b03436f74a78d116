"""A zip of a job's output, streamed to the client while it is written.

Written here rather than with :mod:`zipfile` or a streaming-zip library because the cost of a
many-file output is per file, and what each file needs is small: one ``openat`` (no-follow,
through :mod:`pfcon.safetree`), one ``fstat``, one ``read`` for a small file, a CRC and two
``struct.pack`` calls. Output is coalesced into 1 MiB chunks; the central directory is kept
packed (46 bytes plus the name per entry) in a spooled temporary file that moves to disk past
4 MiB, so memory stays flat whatever the entry count.

Entries: regular files only, in sorted walk order. Files up to :data:`SMALL` are read whole
and written with their CRC and sizes in the local header; larger ones are streamed with a
data descriptor (Zip64 when they may reach 4 GiB), deflated at level 1 only when a sample
of them compresses well. Symlinks, special files, ``.chrislink`` files, files that cannot
be opened and entries deeper than :data:`pfcon.safetree.MAX_DEPTH` folders are left out with
a logged reason; names that are not UTF-8 are read as Latin-1 (see :mod:`pfcon.safetree`).
An I/O error in the middle of a file ends the stream without its end record, so a client sees
a broken transfer, never a complete-looking zip with a file cut short.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from pfcon.safetree import FILE, MAX_DEPTH, open_regular, open_root, walk
from pfcon.storage.links import is_link_file

CHUNK = 1024 * 1024
SMALL = 1024 * 1024
SAMPLE = 64 * 1024
CENTRAL_IN_MEMORY = 4 * 1024 * 1024
MAX_NAME = 0xFFFF
ZIP32_MAX = 0xFFFFFFFF
STORED, DEFLATED = 0, 8
DESCRIPTOR, UTF8 = 0x08, 0x800
_ALREADY_COMPRESSED = frozenset(
    [
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".zst",
        ".zip",
        ".7z",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".webp",
        ".mp4",
        ".mkv",
        ".mov",
        ".mp3",
        ".npz",
        ".mgz",
        ".h5",
    ]
)

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_DESCRIPTOR32 = struct.Struct("<IIII")
_DESCRIPTOR64 = struct.Struct("<IIQQ")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")

log = logging.getLogger(__name__)


def stream_zip(root: Path, max_depth: int = MAX_DEPTH) -> Iterator[bytes]:
    """The bytes of a zip of ``root``; the folder is opened now (``OSError`` if it cannot be)."""
    root_fd = open_root(root)
    return _stream(root_fd, max_depth)


def _stream(root_fd: int, max_depth: int) -> Iterator[bytes]:
    writer = _Writer()
    try:
        for entry in walk(root_fd, max_depth):
            if entry.kind != FILE or is_link_file(entry.parts[-1]):
                continue
            name = entry.path.encode("utf-8")
            if len(name) > MAX_NAME:
                log.warning("skipping %s...: name longer than %d bytes", entry.path[:200], MAX_NAME)
                continue
            opened = open_regular(entry.dir_fd, entry.name)
            if opened is None:
                continue
            fd, info = opened
            try:
                yield from writer.add(fd, info, name)
            finally:
                os.close(fd)
        yield from writer.finish()
    finally:
        os.close(root_fd)
        writer.close()


def _read_upto(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of the file."""
    data = os.read(fd, size)
    while 0 < len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            break
        data += more
    return data


def _dos_time(mtime: float) -> tuple[int, int]:
    t = time.localtime(mtime)
    if t.tm_year < 1980:
        return 0, (1 << 5) | 1  # 1980-01-01 00:00
    if t.tm_year > 2107:
        return (23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), (
        ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    )


def _compressible(name: bytes, head: bytes) -> bool:
    suffix = os.path.splitext(name)[1].decode("utf-8", "replace").lower()
    if suffix in _ALREADY_COMPRESSED or not head:
        return False
    sample = head[:SAMPLE]
    return len(zlib.compress(sample, 1)) < 0.9 * len(sample)


class _Writer:
    """Builds the archive; buffers output until a chunk is full."""

    def __init__(self) -> None:
        self.offset = 0
        self.count = 0
        self.buffer = bytearray()
        self.central = tempfile.SpooledTemporaryFile(max_size=CENTRAL_IN_MEMORY)  # noqa: SIM115

    def close(self) -> None:
        self.central.close()

    def _put(self, data: bytes) -> Iterator[bytes]:
        self.offset += len(data)
        if len(data) >= CHUNK:  # a chunk of a large file: passed on as it is
            yield from self._flush()
            yield data
            return
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            yield from self._flush()

    def _flush(self) -> Iterator[bytes]:
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            yield data

    def add(self, fd: int, info: os.stat_result, name: bytes) -> Iterator[bytes]:
        """One file: whole if small (sizes in the header), else streamed with a descriptor."""
        want = min(info.st_size, SMALL) + 1  # one byte more than expected: did it grow?
        head = _read_upto(fd, want)
        mode = info.st_mode & 0xFFFF
        dos_time, dos_date = _dos_time(info.st_mtime)
        offset = self.offset
        if len(head) < want:  # the whole file: sizes and CRC go in the local header
            crc = zlib.crc32(head)
            size = len(head)
            yield from self._put(
                _LOCAL.pack(0x04034B50, 20, UTF8, STORED, dos_time, dos_date, crc, size, size, len(name), 0)
                + name
            )
            yield from self._put(head)
            self._record(name, UTF8, STORED, dos_time, dos_date, crc, size, size, mode, offset)
            return
        method = DEFLATED if _compressible(name, head) else STORED
        zip64 = info.st_size >= ZIP32_MAX // 2 or offset >= ZIP32_MAX
        flags = UTF8 | DESCRIPTOR
        extra = struct.pack("<HHQQ", 1, 16, 0, 0) if zip64 else b""
        size32 = ZIP32_MAX if zip64 else 0
        yield from self._put(
            _LOCAL.pack(
                0x04034B50,
                45 if zip64 else 20,
                flags,
                method,
                dos_time,
                dos_date,
                0,
                size32,
                size32,
                len(name),
                len(extra),
            )
            + name
            + extra
        )
        crc, size, csize = yield from self._body(fd, head, method, limit=None if zip64 else ZIP32_MAX - 1)
        if zip64:
            yield from self._put(_DESCRIPTOR64.pack(0x08074B50, crc, csize, size))
        else:
            yield from self._put(_DESCRIPTOR32.pack(0x08074B50, crc, csize, size))
        self._record(name, flags, method, dos_time, dos_date, crc, csize, size, mode, offset)

    def _body(self, fd: int, head: bytes, method: int, limit: int | None) -> Iterator[bytes]:
        """Stream the rest of the file; returns (crc, size, compressed size)."""
        compressor = zlib.compressobj(1, zlib.DEFLATED, -15) if method == DEFLATED else None
        crc = size = csize = 0
        chunk = head
        while chunk:
            if limit is not None and size + len(chunk) > limit:
                log.warning("a file grew past 4 GiB while it was zipped; the rest of it is left out")
                chunk = chunk[: limit - size]
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            data = compressor.compress(chunk) if compressor else chunk
            csize += len(data)
            if data:
                yield from self._put(data)
            if limit is not None and size >= limit:
                break
            chunk = os.read(fd, CHUNK)
        if compressor:
            tail = compressor.flush()
            csize += len(tail)
            yield from self._put(tail)
        return crc, size, csize

    def _record(
        self,
        name: bytes,
        flags: int,
        method: int,
        dos_time: int,
        dos_date: int,
        crc: int,
        csize: int,
        size: int,
        mode: int,
        offset: int,
    ) -> None:
        big = [value for value in (size, csize, offset) if value >= ZIP32_MAX]
        extra = struct.pack(f"<HH{len(big)}Q", 1, 8 * len(big), *big) if big else b""
        version = 45 if big else 20
        self.central.write(
            _CENTRAL.pack(
                0x02014B50,
                (3 << 8) | version,
                version,
                flags,
                method,
                dos_time,
                dos_date,
                crc,
                min(csize, ZIP32_MAX),
                min(size, ZIP32_MAX),
                len(name),
                len(extra),
                0,
                0,
                0,
                mode << 16,
                min(offset, ZIP32_MAX),
            )
            + name
            + extra
        )
        self.count += 1

    def finish(self) -> Iterator[bytes]:
        """The central directory (read back from the spool) and the end records."""
        start = self.offset
        self.central.seek(0)
        while block := self.central.read(CHUNK):
            yield from self._put(block)
        size = self.offset - start
        count = self.count
        if count >= 0xFFFF or start >= ZIP32_MAX or size >= ZIP32_MAX:
            end64 = self.offset
            yield from self._put(
                _END64.pack(0x06064B50, 44, (3 << 8) | 45, 45, 0, 0, count, count, size, start)
            )
            yield from self._put(_LOCATOR64.pack(0x07064B50, 0, end64, 1))
        yield from self._put(
            _END.pack(
                0x06054B50,
                0,
                0,
                min(count, 0xFFFF),
                min(count, 0xFFFF),
                min(size, ZIP32_MAX),
                min(start, ZIP32_MAX),
                0,
            )
        )
        yield from self._flush()
