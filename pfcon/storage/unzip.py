"""A zip extracted while it is uploaded, into a staging folder under storeBase.

The multipart parser hands each chunk of ``data_file`` to :meth:`StreamingUnzip.write`;
entries are read from their local headers in order and written straight to disk, so an
upload is written once, never spooled whole and never held in memory. Safety is checked as
bytes arrive (names confined to the folder and bounded in length and depth, entry count,
total size, compression ratio, CRC of every entry) and on the central directory, which is
read record by record as it streams past and must list exactly the entries extracted, at
their offsets, with no symlinks (so ambiguous archives are refused) and is capped by the
entry count. Every byte is looked at a bounded number of times: stored entries of unknown
size are scanned for their data descriptor with one running CRC, never re-hashed per
candidate. Small files are kept whole until checked and then created by two threads
(:mod:`pfcon.storage.filemaker`), so the kernel's work of creating files uses both cores.
Errors are kept and raised by :meth:`finish`, when the upload is used; :meth:`close` stops
those threads and removes whatever was not taken.

Why our own parser and not a library such as ``stream-unzip`` (PyPI, well kept; it reads
zip64 and data descriptors, including Java's 8-byte ones): it cannot stream a *stored*
entry whose size is only in its data descriptor (``NotStreamUnzippable``), which is what
Python's ``zipfile`` writes to an unseekable stream, hence what our own output download
(:mod:`pfcon.storage.zipstream`) and ``zip`` writing to a pipe produce; a round trip of a
job's output into the next job must work. It also does not read the central directory
(we would still parse it, from a buffer we would have to keep ourselves, for symlinks and
for the ambiguity check), cannot be told to refuse bzip2, deflate64 (pure Python, slow)
or encryption before it starts decoding, and pulls chunks from an iterator while werkzeug
pushes them, which needs a thread per upload. With it we would keep the descriptor scan,
the central-directory reader and the caps, and add the glue: more code of ours, not less.
What is ours stays small and is fuzzed (``tests/test_unzip_fuzz.py``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from isal.isal_zlib import crc32

from pfcon.errors import NO_SPACE_ERRNOS, InvalidInput, PayloadTooLarge, PfconError
from pfcon.safetree import remove_tree
from pfcon.settings import ZipLimits
from pfcon.storage.filemaker import FileMaker, create_file, reserve, write_all
from pfcon.storage.staging import hold_staging
from pfcon.storebase import safe_relative_text

LOCAL = b"PK\x03\x04"
CENTRAL = b"PK\x01\x02"
DESCRIPTOR = b"PK\x07\x08"
END_SIGNATURES = (b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")
LOCAL_FORMAT = struct.Struct("<4sHHHHHIIIHH")
CENTRAL_FORMAT = struct.Struct("<4s4B4HL2L5H2L")
STORED, DEFLATED = 0, 8
ZIP64_TAG = 0x0001
DESCRIPTOR32 = struct.Struct("<III")
DESCRIPTOR64 = struct.Struct("<IQQ")
#: descriptor forms, longest first (what follows a descriptor decides between them)
DESCRIPTOR_FORMS = ((True, DESCRIPTOR64), (False, DESCRIPTOR64), (True, DESCRIPTOR32), (False, DESCRIPTOR32))
DESCRIPTOR_WINDOW = 4 + DESCRIPTOR64.size + 4  # longest descriptor and the signature after it
INFLATE_CHUNK = 1024 * 1024  # output of one inflate step
INFLATE_FEED = 256 * 1024  # input of one inflate step
RATIO_FLOOR = 1024 * 1024  # small members may compress well without being bombs
SMALL_FILE = 256 * 1024  # files up to this size are kept whole and created on other threads
RESERVE_STEP = 32 * 1024 * 1024  # blocks of a large file allocated ahead of its data, at most
MAX_NAME_BYTES = 4096  # PATH_MAX
MAX_NAME_DEPTH = 128  # folders in an entry name; real input trees are a few dozen deep at most
MAX_RECORD_EXTRAS = 4096  # extra field + comment of one central record
MAX_END_BYTES = 64 * 1024 + 128  # zip64 end record, locator and end record with its comment
MAX_CENTRAL_BYTES = 64 * 1024 * 1024  # absolute cap, whatever the entry count
UTF8_FLAG, DESCRIPTOR_FLAG, ENCRYPTED_FLAG = 0x800, 0x8, 0x1
NEED_MORE = -1


@dataclass(slots=True)
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
    if raw.isascii():  # most names; cp437's Python codec is slow, and both agree on ASCII
        return raw.decode("ascii")
    return raw.decode("utf-8" if flags & UTF8_FLAG else "cp437", errors="replace")


def match_descriptor(
    buf: bytearray, at: int, crc: int, compressed: int, size: int, zip64: bool, signed_only: bool
) -> int | None:
    """Length of the data descriptor at ``buf[at:]`` that matches the entry, ``None`` if none does.

    A descriptor may or may not start with its signature and holds 4- or 8-byte sizes; the
    8-byte form is used by zip64 entries, also by those (Java's ``ZipOutputStream``, 4 GiB and
    more) whose local header did not say so. As in Info-ZIP's unzip, the longest form whose
    CRC and sizes match and that is followed by a header signature wins. Returns
    :data:`NEED_MORE` until enough bytes are there to decide.
    """
    if len(buf) - at < DESCRIPTOR_WINDOW:
        return NEED_MORE
    for signed, form in DESCRIPTOR_FORMS:
        if (signed_only and not signed) or (zip64 and form is DESCRIPTOR32):
            continue
        start = at + (4 if signed else 0)
        if signed and buf[at : at + 4] != DESCRIPTOR:
            continue
        end = start + form.size
        if form.unpack_from(buf, start) == (crc, compressed, size) and buf[end : end + 4] in (LOCAL, CENTRAL):
            return end - at
    return None


class StreamingUnzip:
    """A write-only file that unpacks the zip written into it."""

    def __init__(self, staging: Path, limits: ZipLimits) -> None:
        self.staging = staging
        self.limits = limits
        staging.mkdir()
        self._lock = hold_staging(staging)  # tells the sweeper this upload is alive
        self._root = str(staging)
        self._dirs: set[str] = {self._root}
        self._files: set[str] = set()  # every file's path: a folder of the same name clashes
        self._maker = FileMaker()
        self._target = ""  # path of the current entry's file
        self._pending: list[bytes] | None = None  # its data while it is small: not yet created
        self._buf = bytearray()
        self._received = 0  # bytes of the archive seen so far (== offset of _buf[0])
        self._state: Callable[[], bool] = self._local_header
        self._entry: _Entry | None = None
        self._out: int | None = None  # fd of the file being written
        self._reserved: int | None = 0  # its bytes allocated ahead; None once the disk said no
        self._inflater: zlib._Decompress | None = None
        self._entries: list[_Entry] = []
        self._listed = 0  # central records checked so far
        self._central_bytes = 0
        self._end_bytes = 0
        self._total_out = 0
        self._error: PfconError | None = None

    # -- the file interface werkzeug uses ------------------------------------------------
    def write(self, data: bytes) -> int:
        if self._error is None:
            with self._guarded():
                self._maker.raise_error()
                self._buf += self._stored_in_place(data)
                while self._state():
                    pass
        return len(data)

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """Keep the first error for :meth:`finish`; a full disk is raised at once (the API's 507)."""
        try:
            yield
        except PfconError as error:
            self._fail(error)
        except zlib.error:
            name = self._entry.name if self._entry else "?"
            self._fail(InvalidInput(f"data_file: entry {name!r} has corrupt compressed data"))
        except OSError as error:
            if error.errno in NO_SPACE_ERRNOS:
                self._close_output()
                raise
            self._fail(InvalidInput(f"data_file: cannot be extracted ({error.strerror})"))

    def _stored_in_place(self, data: bytes | memoryview) -> bytes | memoryview:
        """Write what ``data`` holds of a stored entry of known size from ``data`` itself, not
        from a copy in our buffer; the rest is returned. Most of a large upload goes this way."""
        entry = self._entry
        if self._buf or entry is None or self._state != self._entry_data:
            return data
        if self._inflater is not None or entry.flags & DESCRIPTOR_FLAG:
            return data
        count = min(len(data), entry.compressed - entry.consumed)
        if count <= 0:
            return data
        view = memoryview(data)
        entry.consumed += count
        self._received += count
        self._emit(entry, view[:count])
        return view[count:]

    def data_ahead(self) -> int:
        """How many of the bytes after those written are the current entry's data by the size
        in its local header (0 when unknown): the multipart reader hands them on unsearched.

        A header that lies is caught as any corrupt entry is: the bytes it claims, whatever
        they are (the boundary and the parts after it, if the body has them), must match its
        CRC and be followed by the rest of a valid zip, and the body must still end with its
        closing boundary after them.
        """
        entry = self._entry
        if self._error is not None or entry is None or self._state != self._entry_data:
            return 0
        if entry.flags & DESCRIPTOR_FLAG:
            return 0
        return max(0, entry.compressed - entry.consumed - len(self._buf))

    def seek(self, *_args: object) -> int:
        return 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Remove whatever was extracted unless :meth:`move_to` took it."""
        self._close_output()
        self._maker.abort()
        with contextlib.suppress(OSError):  # gone already; or left to the sweeper (staging.py)
            remove_tree(self.staging)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # -- results --------------------------------------------------------------------------
    def finish(self) -> int:
        """Check the end of the archive; returns the number of files, or raises the first error."""
        if self._error is None:
            with self._guarded():
                self._maker.finish()
                complete = self._state == self._end_records and self._listed == len(self._entries)
                if not complete:
                    raise InvalidInput("data_file: not a complete zip file (truncated, or not a zip)")
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
        if signature == CENTRAL or signature in END_SIGNATURES:
            self._state = self._central_record
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
        relative = self._checked_name(name, raw_name)
        self._entries.append(entry)
        self._entry = entry
        target = f"{self._root}/{relative}"  # relative is normalised: no leading "/", no ".."
        if name.endswith("/"):
            self._make_dirs(target, name)
        else:
            self._start_file(target, name)
        self._inflater = zlib.decompressobj(-15) if method == DEFLATED else None
        self._state = self._entry_data

    @staticmethod
    def _checked_name(name: str, raw_name: bytes) -> str:
        if len(raw_name) > MAX_NAME_BYTES:
            raise InvalidInput(f"data_file: an entry name is over {MAX_NAME_BYTES} bytes")
        relative = safe_relative_text(name, "data_file entry")
        if relative.count("/") >= MAX_NAME_DEPTH:
            raise InvalidInput(f"data_file: entry {name[:200]!r}... is over {MAX_NAME_DEPTH} folders deep")
        return relative

    def _make_dirs(self, path: str, name: str) -> None:
        if path in self._dirs:
            return
        folder = path
        while folder not in self._dirs:  # a file of that name may not be created yet: ask our list
            if folder in self._files:
                raise InvalidInput(f"data_file: entry {name!r} clashes with another entry")
            folder = folder.rpartition("/")[0]
        try:
            os.makedirs(path, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidInput(f"data_file: entry {name!r} clashes with another entry") from None
        self._dirs.add(path)

    def _start_file(self, target: str, name: str) -> None:
        """Its folders now; the file itself when its data outgrows :data:`SMALL_FILE`, or by
        the file maker's threads once it is complete and checked."""
        self._make_dirs(target.rpartition("/")[0], name)
        if target in self._files or target in self._dirs:
            raise InvalidInput(f"data_file: entry {name!r} appears twice")
        self._files.add(target)
        self._target, self._pending = target, []

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
        """A stored entry of unknown size (streamed zips): find the descriptor that matches.

        One running CRC over the data before each candidate signature: each byte is hashed
        once however many false signatures the data holds.
        """
        buf = self._buf
        view = memoryview(buf)
        crc, hashed, start, length = entry.crc_so_far, 0, 0, None
        while (pos := buf.find(DESCRIPTOR, start)) != -1:
            crc = crc32(view[hashed:pos], crc)
            hashed = pos
            size = entry.written + pos
            length = match_descriptor(buf, pos, crc, size, size, entry.zip64, signed_only=True)
            if length is not None:
                break
            start = pos + 1
        else:  # no candidate: keep what could be the start of a signature
            pos = max(0, len(buf) - 3)
            crc = crc32(view[hashed:pos], crc)
        entry.consumed += pos
        self._emit(entry, view[:pos], crc)
        view.release()
        if length is None or length == NEED_MORE:
            self._consume(pos)
            return False
        self._consume(pos)
        self._take_descriptor(entry, length)
        return True

    def _inflate(self, entry: _Entry) -> bool:
        """Inflate from the front of the buffer, in bounded feeds read in place (no copies of
        the buffer per entry: a megabyte chunk holding hundreds of small entries)."""
        inflater = self._inflater
        known = not entry.flags & DESCRIPTOR_FLAG
        while self._buf and not inflater.eof:
            limit = min(INFLATE_FEED, entry.compressed - entry.consumed) if known else INFLATE_FEED
            if limit <= 0:
                raise InvalidInput(
                    f"data_file: entry {entry.name!r} is corrupt (longer than its header says)"
                )
            with memoryview(self._buf) as whole, whole[:limit] as feed:
                out = inflater.decompress(feed, INFLATE_CHUNK)  # bounded output: bombs stop early
                used = len(feed) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
            entry.consumed += used
            self._consume(used)
            self._emit(entry, out)
            if not used and not out:
                break
        if not inflater.eof:
            return False
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
        length = match_descriptor(
            self._buf, 0, entry.crc_so_far, entry.consumed, entry.written, entry.zip64, signed_only=False
        )
        if length == NEED_MORE:
            return False
        if length is None:
            raise InvalidInput(f"data_file: entry {entry.name!r} is corrupt (no data descriptor matches it)")
        self._take_descriptor(entry, length)
        return True

    def _take_descriptor(self, entry: _Entry, length: int) -> None:
        """The descriptor matched what was read: it gives the entry's CRC and sizes."""
        entry.crc, entry.compressed, entry.size = entry.crc_so_far, entry.consumed, entry.written
        self._consume(length)
        self._finish_entry(entry)

    def _finish_entry(self, entry: _Entry) -> None:
        pending, self._pending = self._pending, None
        self._close_output()
        if (entry.crc_so_far, entry.written, entry.consumed) != (entry.crc, entry.size, entry.compressed):
            raise InvalidInput(f"data_file: entry {entry.name!r} is corrupt (size or CRC mismatch)")
        if pending is not None:  # a small file, checked: created by the file maker
            self._maker.add(self._target, entry.name, pending, entry.written)
        self._entry = None
        self._state = self._local_header

    # -- the central directory, one record at a time ---------------------------------------
    def _central_record(self) -> bool:
        buf = self._buf
        if len(buf) < 4:
            return False
        if buf[:4] != CENTRAL:
            self._state = self._end_records
            return True
        if len(buf) < CENTRAL_FORMAT.size:
            return False
        fields = CENTRAL_FORMAT.unpack_from(buf)
        name_len, extra_len, comment_len = fields[12], fields[13], fields[14]
        if extra_len + comment_len > MAX_RECORD_EXTRAS:
            raise PayloadTooLarge("data_file: a central directory record is too large")
        length = CENTRAL_FORMAT.size + name_len + extra_len + comment_len
        if len(buf) < length:
            return False
        self._central_bytes += length
        if self._central_bytes > MAX_CENTRAL_BYTES:
            raise PayloadTooLarge(f"data_file: the zip's central directory is over {MAX_CENTRAL_BYTES} bytes")
        start = CENTRAL_FORMAT.size
        raw_name = bytes(buf[start : start + name_len])
        extra = bytes(buf[start + name_len : start + name_len + extra_len])
        self._check_record(fields, raw_name, extra)
        self._consume(length)
        return True

    def _check_record(self, fields: tuple, raw_name: bytes, extra: bytes) -> None:
        """The next central record must describe the next extracted entry, and not as a symlink."""
        if self._listed >= len(self._entries):
            raise _mismatch()
        entry = self._entries[self._listed]
        self._listed += 1
        name = _decode_name(raw_name, entry.flags)
        if (name, _central_offset(fields, extra), fields[9]) != (entry.name, entry.offset, entry.crc):
            raise _mismatch()
        if stat.S_ISLNK(fields[17] >> 16):
            raise InvalidInput(f"data_file: entry {name!r} is a symbolic link, which is not allowed")

    def _end_records(self) -> bool:
        """What follows the records (zip64 end, locator, end with its comment): bounded, skipped."""
        if self._end_bytes == 0 and len(self._buf) >= 4 and bytes(self._buf[:4]) not in END_SIGNATURES:
            raise InvalidInput("data_file: not a valid zip file (no end of central directory)")
        self._end_bytes += len(self._buf)
        if self._end_bytes > MAX_END_BYTES:
            raise InvalidInput("data_file: unexpected data after the zip's central directory")
        self._consume(len(self._buf))
        return False

    # -- bookkeeping ----------------------------------------------------------------------
    def _emit(self, entry: _Entry, data: bytes | memoryview, crc: int | None = None) -> None:
        """Write ``data`` of ``entry``; ``crc`` is the entry's CRC with it, if already computed."""
        if not data:
            return
        entry.written += len(data)
        self._total_out += len(data)
        entry.crc_so_far = crc32(data, entry.crc_so_far) if crc is None else crc
        limits = self.limits
        if self._total_out > limits.max_unzipped_bytes:
            raise PayloadTooLarge(
                f"data_file: uncompressed content is over the limit of {limits.max_unzipped_bytes} bytes"
            )
        if entry.written > RATIO_FLOOR and entry.written > limits.max_ratio * max(entry.consumed, 1):
            raise InvalidInput(f"data_file: entry {entry.name!r} expands too much, looks like a zip bomb")
        if self._total_out > RATIO_FLOOR and self._total_out > limits.max_ratio * max(self._received, 1):
            raise InvalidInput("data_file: expands too much, looks like a zip bomb")
        self._store(entry, data)

    def _store(self, entry: _Entry, data: bytes | memoryview) -> None:
        """Keep a small file's data (copied: a view is only valid until the next write), or
        write it into the file, created by this thread once it is no longer small."""
        if self._pending is not None:
            if entry.written <= SMALL_FILE:
                self._pending.append(bytes(data))
                return
            self._out = create_file(self._target, entry.name)
            self._reserved = 0
            for chunk in self._pending:
                write_all(self._out, chunk)
            self._pending = None
        if self._out is not None:
            self._reserve_ahead(entry)
            write_all(self._out, data)

    def _reserve_ahead(self, entry: _Entry) -> None:
        """Allocate the file's blocks up to its size in the header, a step ahead of its data.

        Never past the size its header claims and never more than :data:`RESERVE_STEP` ahead
        of the bytes written, so a header that lies about its size costs at most one step of
        disk it did not send (and the size limits still count only what arrives).
        """
        reserved = self._reserved
        if reserved is None or entry.written <= reserved or reserved >= entry.size:
            return
        end = min(entry.size, max(entry.written, reserved + RESERVE_STEP))
        self._reserved = end if reserve(self._out, reserved, end - reserved) else None

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


def _mismatch() -> InvalidInput:
    return InvalidInput("data_file: the central directory does not match the entries (overlap or damage)")


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
