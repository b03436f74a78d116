"""pfcon.api.multipart against werkzeug's own multipart parser, on the same bodies.

The reader replaced werkzeug's ``MultipartDecoder`` for speed; it must read what werkzeug
read, wherever the reads split the body, and refuse what werkzeug refused.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.formparser import parse_form_data
from werkzeug.test import EnvironBuilder

from pfcon.api.multipart import CHUNK, HEADER_LIMIT, MultipartReader, Part, _Buffer
from pfcon.api.uploads import SMALL_BODY, BodyRules, parse_multipart
from pfcon.errors import InvalidInput
from pfcon.settings import ZipLimits
from pfcon.storage.unzip import StreamingUnzip
from tests.helpers import declare_entry_size, make_zip

BOUNDARY = b"pfcon-test-7f3a"


def reader(body: bytes, step: int):
    """A readinto over ``body`` that returns at most ``step`` bytes a call."""
    stream = io.BytesIO(body)

    def readinto(view: memoryview) -> int:
        return stream.readinto(view[:step])

    return readinto


def parse(body: bytes, step: int, chunk: int = 64 * 1024) -> list[tuple[str, str | None, bytes]]:
    parts: list[tuple[str, str | None, bytes]] = []
    for item in MultipartReader(reader(body, step), BOUNDARY, chunk=chunk):
        if isinstance(item, Part):
            parts.append((item.name, item.filename, b""))
        else:
            name, filename, data = parts[-1]
            parts[-1] = (name, filename, data + bytes(item))
    return parts


def werkzeug_parts(body: bytes) -> list[tuple[str, str | None, bytes]]:
    environ = EnvironBuilder(
        method="POST",
        input_stream=io.BytesIO(body),
        content_length=len(body),
        content_type=f"multipart/form-data; boundary={BOUNDARY.decode()}",
    ).get_environ()
    _, form, files = parse_form_data(environ, silent=False)
    found = [(name, None, value) for name, value in form.items(multi=True)]
    found += [(name, upload.filename, upload.read()) for name, upload in files.items(multi=True)]
    return found


def encode(parts: list[tuple[str, str | None, bytes]], newline: bytes = b"\r\n") -> bytes:
    out = b"preamble that is ignored" + newline
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--" + BOUNDARY + newline
        out += b"Content-Disposition: " + disposition.encode() + newline
        if filename:
            out += b"Content-Type: application/zip" + newline
        out += newline + data + newline
    return out + b"--" + BOUNDARY + b"--" + newline + b"epilogue"


# data that looks like a boundary, or a piece of one, after line breaks of every kind
TRICKY = st.lists(
    st.sampled_from([b"\r\n", b"\n", b"\r", b"--", BOUNDARY[:5], b"--" + BOUNDARY[:-1], b"x" * 40, b"\x00"]),
    max_size=30,
).map(b"".join)
PARTS = st.lists(
    st.tuples(
        st.sampled_from(["jid", "cmd_args", "data_file", "other"]),
        st.sampled_from([None, "d.zip"]),
        TRICKY | st.binary(max_size=3000),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(PARTS, st.integers(min_value=1, max_value=5000), st.sampled_from([0, 64 * 1024]))
def test_reads_what_werkzeug_reads_however_the_reads_split_the_body(parts, step, chunk) -> None:
    """``chunk`` 0: the smallest buffer, as a small body of known length gets."""
    body = encode(parts)
    ours = parse(body, step, chunk)
    assert ours == parts
    as_werkzeug = [(n, f, d if f else d.decode("utf-8", "replace")) for n, f, d in ours]
    assert sorted(as_werkzeug, key=repr) == sorted(werkzeug_parts(body), key=repr)


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
def test_line_breaks_werkzeug_accepts(newline: bytes) -> None:
    parts = [("jid", None, b"abc"), ("data_file", "d.zip", b"PK\x03\x04" + b"y" * 100_000)]
    body = encode(parts, newline)
    assert parse(body, 7) == parts
    assert werkzeug_parts(body) == [("jid", None, "abc"), parts[1]]


def test_a_large_file_part_comes_in_views_of_one_buffer() -> None:
    data = bytes(range(256)) * 40_000  # 10 MiB
    body = encode([("data_file", "d.zip", data)])
    items = iter(MultipartReader(reader(body, 1 << 20), BOUNDARY, chunk=1 << 20))
    assert isinstance(next(items), Part)
    received, buffers = [], set()
    for view in items:  # a view is valid until the next item: copied as it comes
        assert isinstance(view, memoryview)
        received.append(bytes(view))
        buffers.add(id(view.obj))
    assert len(received) > 5
    assert len(buffers) == 1  # always the same buffer, never a copy per chunk
    assert b"".join(received) == data


def test_a_folded_header_and_a_quoted_file_name() -> None:
    body = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data;\r\n name="data_file"; '
        b'filename="a b.zip"\r\n\r\nPK\r\n--' + BOUNDARY + b"--\r\n"
    )
    assert parse(body, 3) == [("data_file", "a b.zip", b"PK")]


@pytest.mark.parametrize(
    "body",
    [
        b"",  # empty
        b"no boundary at all" * 10,
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue cut short',
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="a"\r\n',  # headers cut
        b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n--" + BOUNDARY + b"--",  # no name
        b"--" + BOUNDARY + b"garbage after the boundary\r\n",
        b"--" + BOUNDARY + b"\r\nX-Long: " + b"h" * HEADER_LIMIT + b"\r\n\r\nx\r\n--" + BOUNDARY + b"--",
    ],
    ids=[
        "empty",
        "no-boundary",
        "cut-in-data",
        "cut-in-headers",
        "no-name",
        "bad-boundary-line",
        "long-headers",
    ],
)
def test_malformed_bodies_are_value_errors(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse(body, 5)


def test_an_empty_form_is_no_part() -> None:
    assert parse(b"--" + BOUNDARY + b"--\r\n", 1) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | TRICKY, st.integers(min_value=0, max_value=220), st.data())
def test_the_buffers_search_finds_what_bytearray_find_finds_inside_its_bounds(haystack, start, data) -> None:
    """memmem sees only ``data[start:end]``: a marker cut by either bound is not there."""
    buf = _Buffer(reader(b"", 1), 256)
    haystack = haystack[:256]
    buf.data[: len(haystack)] = haystack
    buf.end = data.draw(st.integers(min_value=0, max_value=len(haystack)))
    marker = data.draw(st.sampled_from([b"--" + BOUNDARY, b"--" + BOUNDARY[:3], b"\r\n", b"x"]))
    assert buf.find(marker, start) == buf.data.find(marker, start, buf.end)


# -- zip entries passed through unsearched (the reader with the upload's own sink) -------------
def _stored_zip(files: dict[str, bytes]) -> bytes:
    """A stored zip with sizes in each local header (no data descriptors), as ``zip`` writes."""
    return make_zip(files, zipfile.ZIP_STORED)


def _upload(body: bytes, step: int, staging: Path) -> tuple[int | Exception, list]:
    """The number of files extracted from ``body``'s data_file, or the error; and the sinks."""
    rules = BodyRules(SMALL_BODY, {"data_file": lambda: StreamingUnzip(staging, ZipLimits())})
    opened: list = []
    try:
        _, files = parse_multipart(reader(body, step), BOUNDARY, rules, opened)
        return files["data_file"].stream.finish(), opened
    except (ValueError, InvalidInput) as error:
        return error, opened


def _delimiter(closing: bool = False) -> bytes:
    return b"\r\n--" + BOUNDARY + (b"--" if closing else b"")


@pytest.mark.parametrize("step", [1 << 20, 65_536, 4_099, 333])
def test_every_byte_of_a_many_member_zip_arrives_unsearched(tmp_path: Path, step: int) -> None:
    files = {f"d{i % 7}/f{i}.bin": os.urandom(i * 997 % 300_000) for i in range(60)}
    files["tricky.txt"] = (b"\r\n--" + BOUNDARY[:-1] + b"x") * 5000  # near-boundaries, in a member
    files["empty-folder/"] = b""
    body = encode(
        [("jid", None, b"j1"), ("data_file", "d.zip", _stored_zip(files)), ("after", None, b"tail")]
    )
    staging = tmp_path / "staging"
    count, opened = _upload(body, step, staging)
    assert count == 60 + 1, count
    opened[0].move_to(tmp_path / "in")
    opened[0].close()
    for name, data in files.items():
        if not name.endswith("/"):
            assert (tmp_path / "in" / name).read_bytes() == data, name


def _reads_offered(body: bytes, content_length: int | None, staging: Path) -> list[int]:
    """The size of each read the upload's parser offers, with the entries it extracted checked."""
    offered: list[int] = []
    read = reader(body, 1 << 30)

    def readinto(view: memoryview) -> int:
        offered.append(len(view))
        return read(view)

    rules = BodyRules(SMALL_BODY, {"data_file": lambda: StreamingUnzip(staging, ZipLimits())})
    opened: list = []
    _, files = parse_multipart(readinto, BOUNDARY, rules, opened, content_length)
    assert files["data_file"].stream.finish() == 2
    for sink in opened:
        sink.close()
    return offered


@pytest.mark.parametrize("kib", [1, 40, 3000])
def test_the_buffer_is_no_larger_than_a_body_of_known_length_needs(tmp_path: Path, kib: int) -> None:
    """A small submit once got a fresh 1 MiB buffer; a body of known length gets what it needs
    (at least room for two parts' headers), one of unknown length the full CHUNK."""
    files = {"a.txt": b"x" * 100, "b.bin": os.urandom(kib * 1024)}
    body = encode([("jid", None, b"j1"), ("data_file", "d.zip", _stored_zip(files))])
    known = _reads_offered(body, len(body), tmp_path / "known")
    assert max(known) == min(CHUNK, max(len(body), 2 * HEADER_LIMIT)), known
    assert max(_reads_offered(body, None, tmp_path / "unknown")) == CHUNK


def test_the_bulk_of_a_stored_entry_is_not_searched(tmp_path: Path, monkeypatch) -> None:
    searched = []
    find = _Buffer.find

    def counted(self: _Buffer, marker: bytes, start: int) -> int:
        searched.append(self.end - start)
        return find(self, marker, start)

    monkeypatch.setattr(_Buffer, "find", counted)
    data = os.urandom(4 << 20)
    body = encode([("data_file", "d.zip", _stored_zip({"a.bin": data}))])
    count, opened = _upload(body, 65_536, tmp_path / "staging")
    assert count == 1
    assert sum(searched) < 3 * 65_536  # the first read (the entry's header) and the zip's end
    opened[0].move_to(tmp_path / "in")
    opened[0].close()
    assert (tmp_path / "in/a.bin").read_bytes() == data


def test_deflated_entries_of_known_size_pass_unsearched_too(tmp_path: Path) -> None:
    files = {f"f{i}.txt": (f"line {i}\r\n--" + BOUNDARY.decode()[:-2]).encode() * 3000 for i in range(5)}
    body = encode([("data_file", "d.zip", make_zip(files))])
    count, opened = _upload(body, 5_000, tmp_path / "staging")
    assert count == 5
    opened[0].move_to(tmp_path / "in")
    opened[0].close()
    assert {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()} == files


def _lying_bodies() -> dict[str, bytes]:
    data = os.urandom(200_000)
    archive = _stored_zip({"a.bin": data, "b.bin": b"b" * 1000})
    at = archive.index(data)
    hidden = _delimiter() + b'\r\nContent-Disposition: form-data; name="hidden"\r\n\r\nx'
    inside = bytearray(archive)
    inside[at + 150_000 : at + 150_000 + len(hidden)] = hidden  # same size: the CRC no longer fits
    closing_inside = bytearray(archive)
    closing = _delimiter(closing=True) + b"\r\n"
    closing_inside[at + 150_000 : at + 150_000 + len(closing)] = closing
    bodies = {"boundary-inside": bytes(inside), "closing-boundary-inside": bytes(closing_inside)}
    for name, change in (("longer-a-little", 10), ("longer-than-the-body", 1 << 20), ("shorter", -10)):
        bodies[name] = declare_entry_size(archive, "a.bin", len(data) + change)
    return {name: encode([("jid", None, b"j1"), ("data_file", "d.zip", z)]) for name, z in bodies.items()}


@pytest.mark.parametrize("step", [1 << 20, 65_536, 4_099])
@pytest.mark.parametrize("case", sorted(_lying_bodies()))
def test_a_zip_header_that_lies_about_its_size_is_refused_and_nothing_kept(
    tmp_path: Path, case: str, step: int
) -> None:
    staging = tmp_path / "staging"
    outcome, opened = _upload(_lying_bodies()[case], step, staging)
    assert isinstance(outcome, (ValueError, InvalidInput)), outcome
    for sink in opened:
        sink.close()
    assert not staging.exists()


def test_a_zip_whose_entry_holds_the_boundary_is_refused_or_taken_whole(tmp_path: Path) -> None:
    """RFC 2046 forbids it; werkzeug cuts the part there. Unsearched, the entry (CRC right) is
    what the client zipped: either way nothing else is read from the body or stored."""
    files = {"a.bin": b"x" * 70_000 + _delimiter() + b"--\r\nafter" + b"y" * 70_000, "b": b"b"}
    body = encode([("data_file", "d.zip", _stored_zip(files))])
    for step in (1 << 20, 65_536, 4_099, 333):
        staging = tmp_path / f"staging-{step}"
        outcome, opened = _upload(body, step, staging)
        if isinstance(outcome, Exception):
            opened[0].close()
            assert not staging.exists()
            continue
        opened[0].move_to(tmp_path / f"in-{step}")
        opened[0].close()
        assert {p.name: p.read_bytes() for p in (tmp_path / f"in-{step}").iterdir()} == files
