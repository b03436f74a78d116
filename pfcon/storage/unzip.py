"""A zip extracted while it is uploaded, into a staging folder under storeBase.

The multipart parser hands each chunk of ``data_file`` to :meth:`StreamingUnzip.write`;
entries are read from their local headers in order and written straight to disk, so an
upload is written once, never spooled whole and never held in memory. Safety is checked as
bytes arrive (names confined to the folder, entry count, total size, compression ratio,
CRC of every entry) and once more at the end against the central directory (same entries
at the same offsets, so overlapping-entry bombs and ambiguous archives are refused, and no
symlink entries). Errors are kept and raised by :meth:`finish`, when the upload is used;
:meth:`close` removes whatever was not taken.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pfcon.errors import NO_SPACE_ERRNOS, InvalidInput, PayloadTooLarge, PfconError
from pfcon.settings import ZipLimits
from pfcon.storebase import safe_relative

LOCAL = b"PK\x03\x04"
CENTRAL = b"PK\x01\x02"
DESCRIPTOR = b"PK\x07\x08"
ENDS = (CENTRAL, b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x08")
LOCAL_FORMAT = struct.Struct("<4sHHHHHIIIHH")
CENTRAL_FORMAT = struct.Struct("<4s4B4HL2L5H2L")
STORED, DEFLATED = 0, 8
ZIP64_TAG = 0x0001
DESCRIPTOR32 = struct.Struct("<III")
DESCRIPTOR64 = struct.Struct("<IQQ")
MAX_CENTRAL_BYTES = 64 * 1024 * 1024
INFLATE_CHUNK = 1024 * 1024
RATIO_FLOOR = 1024 * 1024  # small members may compress well without being bombs
UTF8_FLAG, DESCRIPTOR_FLAG, ENCRYPTED_FLAG = 0x800, 0x8, 0x1


@dataclass
class _Entry:
    """One local entry as read from the stream."""

    name: str
    offset: int
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    zip64: bool
    written: int = 0
    consumed: int = 0
    crc_so_far: int = 0

    @property
    def descriptor(self) -> struct.Struct:
        """crc, compressed and uncompressed size after the data (8-byte sizes for zip64)."""
        return DESCRIPTOR64 if self.zip64 else DESCRIPTOR32


def _zip64_values(extra: bytes) -> tuple[int, ...]:
    """The 8-byte values of a zip64 extra field; empty when there is none (or it is cut short)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + length > len(extra):
            break
        if tag == ZIP64_TAG:
            return struct.unpack_from(f"<{length // 8}Q", extra, pos + 4)
        pos += 4 + length
    return ()


def _decode_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & UTF8_FLAG else "cp437", errors="replace")


class StreamingUnzip:
    """A write-only file that unpacks the zip written into it."""

    def __init__(self, staging: Path, limits: ZipLimits) -> None:
        self.staging = staging
        self.limits = limits
        staging.mkdir()
        self._buf = bytearray()
        self._received = 0  # bytes of the archive seen so far (== offset of _buf[0])
        self._state: Callable[[], bool] = self._local_header
        self._entry: _Entry | None = None
        self._out: int | None = None  # fd of the file being written
        self._inflater: zlib._Decompress | None = None
        self._entries: list[_Entry] = []
        self._central = bytearray()
        self._total_out = 0
        self._error: PfconError | None = None

    # -- the file interface werkzeug uses ------------------------------------------------
    def write(self, data: bytes) -> int:
        if self._error is None:
            try:
                self._buf += data
                while self._state():
                    pass
            except PfconError as error:
                self._fail(error)
            except OSError as error:
                if error.errno in NO_SPACE_ERRNOS:  # let the API answer 507
                    self._close_output()
                    raise
                self._fail(InvalidInput(f"data_file: cannot be extracted ({error.strerror})"))
        return len(data)

    def seek(self, *_args: object) -> int:
        return 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Remove whatever was extracted unless :meth:`move_to` took it."""
        self._close_output()
        shutil.rmtree(self.staging, ignore_errors=True)

    # -- results --------------------------------------------------------------------------
    def finish(self) -> int:
        """Check the end of the archive; returns the number of files, or raises the first error."""
        if self._error is None:
            try:
                if self._state != self._central_directory:
                    raise InvalidInput("data_file: not a complete zip file (truncated, or not a zip)")
                self._check_central_directory()
            except PfconError as error:
                self._fail(error)
        if self._error is not None:
            raise self._error
        return sum(1 for entry in self._entries if not entry.name.endswith("/"))

    def move_to(self, dest: Path) -> None:
        """Put the extracted tree at ``dest`` (same filesystem: a rename)."""
        os.rename(self.staging, dest)

    # -- states: each returns True when it made progress and should run again ----------
    def _local_header(self) -> bool:
        if len(self._buf) < 4:
            return False
        signature = bytes(self._buf[:4])
        if signature in ENDS:
            self._state = self._central_directory
            return True
        if signature != LOCAL:
            raise InvalidInput("data_file: not a valid zip file (no local file header where one should be)")
        if len(self._buf) < LOCAL_FORMAT.size:
            return False
        fields = LOCAL_FORMAT.unpack_from(self._buf)
        name_len, extra_len = fields[9], fields[10]
        header_len = LOCAL_FORMAT.size + name_len + extra_len
        if len(self._buf) < header_len:
            return False
        raw_name = bytes(self._buf[LOCAL_FORMAT.size : LOCAL_FORMAT.size + name_len])
        extra = bytes(self._buf[LOCAL_FORMAT.size + name_len : header_len])
        self._start_entry(fields, raw_name, extra)
        self._consume(header_len)
        return True

    def _start_entry(self, fields: tuple, raw_name: bytes, extra: bytes) -> None:
        _, _, flags, method, _, _, crc, compressed, size, _, _ = fields
        name = _decode_name(raw_name, flags)
        zip64 = _zip64_values(extra)
        if len(zip64) >= 2:  # a local header's zip64 field holds both sizes
            size, compressed = zip64[:2]
        entry = _Entry(name, self._received, flags, method, crc, compressed, size, len(zip64) >= 2)
        if len(self._entries) >= self.limits.max_entries:
            raise PayloadTooLarge(f"data_file: more than {self.limits.max_entries} entries, over the limit")
        if flags & ENCRYPTED_FLAG:
            raise InvalidInput(f"data_file: entry {name!r} is encrypted, which is not supported")
        if method not in (STORED, DEFLATED):
            raise InvalidInput(
                f"data_file: entry {name!r} uses compression method {method}; use deflate or none"
            )
        target = self.staging / safe_relative(name, "data_file entry")
        self._entries.append(entry)
        self._entry = entry
        if name.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            self._open_output(target, name)
        self._inflater = zlib.decompressobj(-15) if method == DEFLATED else None
        self._state = self._entry_data

    def _open_output(self, target: Path, name: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            raise InvalidInput(f"data_file: entry {name!r} appears twice") from None
        except (NotADirectoryError, IsADirectoryError):
            raise InvalidInput(f"data_file: entry {name!r} clashes with another entry") from None

    def _entry_data(self) -> bool:
        entry = self._entry
        assert entry is not None
        if self._inflater is not None:
            return self._inflate(entry)
        if not entry.flags & DESCRIPTOR_FLAG:
            return self._copy_stored(entry, min(len(self._buf), entry.compressed - entry.consumed))
        return self._copy_stored_until_descriptor(entry)

    def _copy_stored(self, entry: _Entry, count: int) -> bool:
        if count > 0:
            entry.consumed += count
            self._emit(entry, memoryview(self._buf)[:count])
            self._consume(count)
        if entry.consumed == entry.compressed:
            self._end_entry(entry)
            return True
        return False

    def _copy_stored_until_descriptor(self, entry: _Entry) -> bool:
        """A stored entry of unknown size (streamed zips): find the descriptor that matches."""
        start = 0
        descriptor = entry.descriptor
        while (pos := self._buf.find(DESCRIPTOR, start)) != -1:
            if len(self._buf) < pos + 4 + descriptor.size:
                break
            crc = zlib.crc32(memoryview(self._buf)[:pos], entry.crc_so_far)
            d_crc, d_comp, d_size = descriptor.unpack_from(self._buf, pos + 4)
            if d_crc == crc and d_size == d_comp == entry.written + pos:
                entry.crc, entry.compressed, entry.size = d_crc, d_comp, d_size
                entry.consumed += pos
                self._emit(entry, memoryview(self._buf)[:pos])
                self._consume(pos + 4 + descriptor.size)
                self._finish_entry(entry)
                return True
            start = pos + 1
        keep = 4 + DESCRIPTOR64.size if pos == -1 else len(self._buf) - pos
        safe = max(0, len(self._buf) - keep)
        if safe:
            entry.consumed += safe
            self._emit(entry, memoryview(self._buf)[:safe])
            self._consume(safe)
        return False

    def _inflate(self, entry: _Entry) -> bool:
        inflater = self._inflater
        if not self._buf:
            return False
        data = bytes(self._buf)
        self._consume(len(data))
        while not inflater.eof:
            out = inflater.decompress(data, INFLATE_CHUNK)  # bounded output: bombs stop early
            entry.consumed += len(data) - len(inflater.unconsumed_tail)
            data = inflater.unconsumed_tail
            self._emit(entry, out)
            if not data and len(out) < INFLATE_CHUNK:
                break
        if not inflater.eof:
            return False
        leftover = inflater.unused_data
        entry.consumed -= len(leftover)
        self._buf[:0] = leftover
        self._received -= len(leftover)
        self._end_entry(entry)
        return True

    def _end_entry(self, entry: _Entry) -> None:
        if entry.flags & DESCRIPTOR_FLAG:
            self._state = self._descriptor
        else:
            self._finish_entry(entry)

    def _descriptor(self) -> bool:
        entry = self._entry
        assert entry is not None
        has_signature = self._buf[:4] == DESCRIPTOR
        needed = (4 if has_signature else 0) + entry.descriptor.size
        if len(self._buf) < needed:
            return False
        entry.crc, entry.compressed, entry.size = entry.descriptor.unpack_from(
            self._buf, 4 if has_signature else 0
        )
        self._consume(needed)
        self._finish_entry(entry)
        return True

    def _finish_entry(self, entry: _Entry) -> None:
        self._close_output()
        if entry.crc_so_far != entry.crc or entry.written != entry.size:
            raise InvalidInput(f"data_file: entry {entry.name!r} is corrupt (size or CRC mismatch)")
        self._entry = None
        self._state = self._local_header

    def _central_directory(self) -> bool:
        if len(self._central) + len(self._buf) > MAX_CENTRAL_BYTES:
            raise PayloadTooLarge("data_file: the zip's central directory is too large")
        self._central += self._buf
        self._consume(len(self._buf))
        return False

    # -- bookkeeping ----------------------------------------------------------------------
    def _emit(self, entry: _Entry, data: bytes | memoryview) -> None:
        if not data:
            return
        entry.written += len(data)
        self._total_out += len(data)
        entry.crc_so_far = zlib.crc32(data, entry.crc_so_far)
        limits = self.limits
        if self._total_out > limits.max_unzipped_bytes:
            raise PayloadTooLarge(
                f"data_file: uncompressed content is over the limit of {limits.max_unzipped_bytes} bytes"
            )
        if entry.written > RATIO_FLOOR and entry.written > limits.max_ratio * max(entry.consumed, 1):
            raise InvalidInput(f"data_file: entry {entry.name!r} expands too much, looks like a zip bomb")
        if self._total_out > RATIO_FLOOR and self._total_out > limits.max_ratio * max(self._received, 1):
            raise InvalidInput("data_file: expands too much, looks like a zip bomb")
        if self._out is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(self._out, view) :]

    def _consume(self, count: int) -> None:
        del self._buf[:count]
        self._received += count

    def _close_output(self) -> None:
        if self._out is not None:
            os.close(self._out)
            self._out = None

    def _fail(self, error: PfconError) -> None:
        self._error = error
        self._buf = bytearray()  # (views of the old one may live on in the traceback)
        self.close()

    def _check_central_directory(self) -> None:
        """The central directory must list exactly the entries we extracted, at their offsets."""
        listed = []
        pos = 0
        data = self._central
        while data[pos : pos + 4] == CENTRAL:
            if pos + CENTRAL_FORMAT.size > len(data):
                raise InvalidInput("data_file: truncated central directory")
            fields = CENTRAL_FORMAT.unpack_from(data, pos)
            name_len, extra_len, comment_len = fields[12], fields[13], fields[14]
            start = pos + CENTRAL_FORMAT.size
            extra = bytes(data[start + name_len : start + name_len + extra_len])
            offset = _central_offset(fields, extra)
            attrs = fields[17]
            listed.append((bytes(data[start : start + name_len]), offset, fields[9], attrs))
            pos = start + name_len + extra_len + comment_len
        mismatch = InvalidInput(
            "data_file: the central directory does not match the entries (overlap or damage)"
        )
        if len(listed) != len(self._entries):
            raise mismatch
        for (raw_name, offset, crc, attrs), entry in zip(listed, self._entries, strict=True):
            name = _decode_name(raw_name, entry.flags)
            if (name, offset, crc) != (entry.name, entry.offset, entry.crc):
                raise mismatch
            if stat.S_ISLNK(attrs >> 16):
                raise InvalidInput(f"data_file: entry {name!r} is a symbolic link, which is not allowed")


def _central_offset(fields: tuple, extra: bytes) -> int:
    """The local header offset of a central record, reading zip64 extras where needed."""
    usize, csize, offset = fields[11], fields[10], fields[18]
    if offset != 0xFFFFFFFF:
        return offset
    values = _zip64_values(extra)
    index = (usize == 0xFFFFFFFF) + (csize == 0xFFFFFFFF)  # the fields it holds come in this order
    if index >= len(values):
        raise InvalidInput("data_file: a zip64 entry without its zip64 field")
    return values[index]
