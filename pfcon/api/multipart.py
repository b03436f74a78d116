"""A streaming multipart/form-data reader over one reused buffer.

werkzeug's ``MultipartDecoder`` copies each chunk of a file part four times (into its buffer,
two slices and a ``bytes``) and finds the boundary with a regular expression after a
``find``; under a 512 MiB upload that was most of the service's CPU besides the CRC and the
write. Here the body is read with ``readinto`` into one buffer, the boundary is found with
the C library's ``memmem`` and file data is handed on as ``memoryview`` slices of that
buffer, valid until the next event. It accepts what werkzeug accepts: CRLF, LF or CR line
breaks around a boundary, blanks after it, a preamble and an epilogue. Bytes the consumer
declares opaque (the rest of a zip entry of known size) are handed on without a search.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from werkzeug.datastructures import Headers
from werkzeug.http import parse_options_header

Readinto = Callable[[memoryview], int]

CHUNK = 1024 * 1024  # one read
HEADER_LIMIT = 16 * 1024  # the headers of one part
_AFTER_BOUNDARY = re.compile(rb"(--)|[ \t]*(\r\n|\n|\r)")
_BLANK_LINE = re.compile(rb"\r\n\r\n|\r\r|\n\n")
_FOLDED = re.compile(rb"(?:\r\n|\n|\r)[ \t]")  # a header continued on the next line
_LOOKAHEAD = 64  # bytes after a boundary enough to tell a next part from the end

_memmem = ctypes.CDLL(None).memmem
_memmem.restype = ctypes.c_void_p
_memmem.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t)


@dataclass(frozen=True)
class Part:
    """The start of a part: its form name, its file name (None for a plain field) and headers."""

    name: str
    filename: str | None
    headers: Headers


class _Buffer:
    """Unread body bytes ``data[start:end]`` in a buffer of fixed size."""

    def __init__(self, readinto: Readinto, size: int) -> None:
        self.readinto = readinto
        self.data = bytearray(size)
        self.view = memoryview(self.data)
        self._array = (ctypes.c_char * size).from_buffer(self.data)  # (the buffer never resizes)
        self.address = ctypes.addressof(self._array)
        self.start = self.end = 0
        self.eof = False

    def find(self, marker: bytes, start: int) -> int:
        """Where ``marker`` first is in ``data[start:end]``, or -1.

        The C library's ``memmem`` (glibc: a skip table over pairs of bytes) took 0.025 s per
        512 MiB of random data here against ``bytearray.find``'s 0.045-0.054 s, which was 16 %
        of the service's samples in a large upload.
        """
        if self.end - start < len(marker):
            return -1
        found = _memmem(self.address + start, self.end - start, marker, len(marker))
        return -1 if found is None else found - self.address

    def fill(self) -> bool:
        """Move what is unread to the front and read more after it; False at the end of the body."""
        if self.eof:
            return False
        if self.start:
            left = self.end - self.start
            self.data[:left] = bytes(self.view[self.start : self.end])  # small: a header or a tail
            self.start, self.end = 0, left
        if self.end == len(self.data):
            raise ValueError("multipart: part headers are too long")
        count = self.readinto(self.view[self.end :])
        if count == 0:
            self.eof = True
            return False
        self.end += count
        return True


class MultipartReader:
    """The parts of a multipart body, each a :class:`Part` followed by its data in views.

    A view is only valid until the next item is asked for. Raises ValueError on a malformed or
    truncated body. After a view of data, :meth:`pass_through` may say that the next bytes of
    the part are opaque: they are handed on as they are, without looking for the boundary in
    them. RFC 2046 (5.1.1) requires that the boundary not occur in a part, so a sink that
    knows the length of what comes (a zip entry's size in its header) can spare the search.
    If the length is a lie, the sink gets the boundary and what follows it as data, which its
    own checks (a zip entry's CRC, a zip's structure, the end of the body) refuse; a body built
    so that they pass is read as the zip the client built (docs/uploads.md, sixth session).
    """

    def __init__(self, readinto: Readinto, boundary: bytes, chunk: int = CHUNK) -> None:
        self._buf = _Buffer(readinto, max(chunk, 2 * HEADER_LIMIT))
        self._marker = b"--" + boundary
        self._opaque = 0  # bytes of the current part to hand on without a search

    def pass_through(self, count: int) -> None:
        """The next ``count`` bytes of the current part are data whatever they hold.

        Said after the part's last view it is dropped: the boundary came before those bytes,
        in bytes already searched, and the part ends there.
        """
        self._opaque = max(count, 0)

    def __iter__(self) -> Iterator[Part | memoryview]:
        _skip_preamble(self._buf, self._marker)
        while _next_part(self._buf):
            self._opaque = 0
            yield _headers(self._buf)
            yield from self._data()

    def _data(self) -> Iterator[memoryview]:
        """The part's data up to the next boundary (line break + marker), which is consumed."""
        buf, marker = self._buf, self._marker
        search = buf.start
        while True:
            if self._opaque:
                if buf.start == buf.end and not buf.fill():
                    raise ValueError("multipart: the body ends inside a part")
                count = min(self._opaque, buf.end - buf.start)
                self._opaque -= count
                buf.start += count
                yield buf.view[buf.start - count : buf.start]
                search = buf.start
                continue
            found = buf.find(marker, search)
            if found < 0:
                keep = len(marker) + 2  # a line break and a boundary may begin in the last bytes
                safe = max(buf.start, buf.end - keep)
                if safe > buf.start:
                    buf.start, start = safe, buf.start
                    yield buf.view[start:safe]
                    if self._opaque:
                        continue
                if not buf.fill():
                    raise ValueError("multipart: the body ends inside a part")
                search = buf.start
                continue
            end = _line_break_before(buf.data, found, buf.start)
            if end is None:  # the marker's bytes inside the data, not after a line break
                search = found + 1
                continue
            if end > buf.start:
                yield buf.view[buf.start : end]
            buf.start = found + len(marker)
            return


def _skip_preamble(buf: _Buffer, marker: bytes) -> None:
    while (found := buf.find(marker, buf.start)) < 0:
        buf.start = max(buf.start, buf.end - len(marker) + 1)
        if not buf.fill():
            raise ValueError("multipart: no boundary in the body")
    buf.start = found + len(marker)


def _next_part(buf: _Buffer) -> bool:
    """Step over what follows a boundary: True if a part follows, False at the closing one."""
    while buf.end - buf.start < _LOOKAHEAD and buf.fill():
        pass
    match = _AFTER_BOUNDARY.match(buf.data, buf.start, buf.end)
    if match is None:
        raise ValueError("multipart: malformed boundary line")
    if match.group(1):
        return False
    buf.start = match.end()
    return True


def _headers(buf: _Buffer) -> Part:
    while (blank := _BLANK_LINE.search(buf.data, buf.start, buf.end)) is None:
        if buf.end - buf.start > HEADER_LIMIT or not buf.fill():
            raise ValueError("multipart: part headers too long or cut short")
    raw = _FOLDED.sub(b" ", bytes(buf.view[buf.start : blank.start()]))
    buf.start = blank.end()
    headers = Headers()
    for line in raw.splitlines():
        key, _, value = line.decode("utf-8", "replace").partition(":")
        if value:
            headers.add(key.strip(), value.strip())
    disposition, options = parse_options_header(headers.get("content-disposition", ""))
    if disposition != "form-data" or "name" not in options:
        raise ValueError("multipart: a part without a form-data name")
    return Part(options["name"], options.get("filename"), headers)


def _line_break_before(data: bytearray, index: int, floor: int) -> int | None:
    """Where the data ends if a line break ends at ``index`` (not before ``floor``), else None."""
    if index - 1 < floor or data[index - 1] not in b"\r\n":
        return None
    if data[index - 1] == 0x0A and index - 2 >= floor and data[index - 2] == 0x0D:
        return index - 2
    return index - 1
