"""Streaming extraction: bombs, traversal and lies are refused, whatever the chunking."""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest

from pfcon.errors import InvalidInput, PayloadTooLarge
from pfcon.safetree import remove_tree
from pfcon.settings import ZipLimits
from pfcon.storage.filemaker import WRITE_PIECE, reserve
from pfcon.storage.unzip import RESERVE_STEP, SMALL_FILE, StreamingUnzip
from pfcon.storage.zipstream import stream_zip
from tests.helpers import make_zip

LIMITS = ZipLimits()
MiB = 1024 * 1024


def _extract(data: bytes, root: Path, limits: ZipLimits = LIMITS, chunk: int = 7919) -> int:
    """Feed ``data`` in chunks as the multipart parser would; the tree lands at root/in."""
    sink = StreamingUnzip(root / "staging", limits)
    try:
        for start in range(0, len(data), chunk):
            sink.write(data[start : start + chunk])
        files = sink.finish()
        sink.move_to(root / "in")
        return files
    finally:
        sink.close()


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("chunk", [1, 3, 7919, 1 << 20])
def test_extracts_nested_files_whatever_the_chunking(tmp_path: Path, chunk: int) -> None:
    files = {"a.txt": "A" * 3000, "d/e/b.bin": os.urandom(5000), "d/": ""}
    data = make_zip(files)
    assert _extract(data, tmp_path, chunk=chunk) == 2
    assert (tmp_path / "in/d/e/b.bin").read_bytes() == files["d/e/b.bin"]
    assert (tmp_path / "in/a.txt").read_text() == files["a.txt"]
    assert _tree(tmp_path) == ["in", "in/a.txt", "in/d", "in/d/e", "in/d/e/b.bin"]


@pytest.mark.parametrize("chunk", [5, 4096, 1 << 20])
def test_streamed_zips_with_data_descriptors_are_accepted(tmp_path: Path, chunk: int) -> None:
    """Our own output zips (stored and deflated entries of unknown size) can come back as input."""
    out = tmp_path / "out"
    (out / "s").mkdir(parents=True)
    random_data = os.urandom(300_000) + b"PK\x07\x08" + os.urandom(1000)  # a fake descriptor inside
    (out / "s/random.bin").write_bytes(random_data)
    (out / "text.txt").write_text("words " * 10_000)
    data = b"".join(stream_zip(out))
    assert _extract(data, tmp_path, chunk=chunk) == 2
    assert (tmp_path / "in/s/random.bin").read_bytes() == random_data
    assert (tmp_path / "in/text.txt").read_text() == "words " * 10_000


def test_zip64_entries(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, archive.open("big.txt", "w", force_zip64=True) as entry:
        entry.write(b"z64" * 1000)
    assert _extract(buffer.getvalue(), tmp_path) == 1
    assert (tmp_path / "in/big.txt").read_bytes() == b"z64" * 1000


def test_empty_zip(tmp_path: Path) -> None:
    assert _extract(make_zip({}), tmp_path) == 0


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/abs.txt", "a\\..\\evil.txt"])
def test_traversal_names_are_refused_and_nothing_kept(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        _extract(make_zip({"ok.txt": "fine", name: "evil"}), tmp_path)
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("data", [b"this is not a zip at all" * 10, b"", b"PK\x03\x04short"])
def test_not_a_zip(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(InvalidInput, match="zip"):
        _extract(data, tmp_path)
    assert _tree(tmp_path) == []


def test_truncated_zip(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a complete zip"):
        _extract(make_zip({"a": os.urandom(1000), "b": "x"})[:600], tmp_path)
    assert _tree(tmp_path) == []


def test_ratio_bomb_is_stopped_early(tmp_path: Path) -> None:
    bomb = make_zip({"zeros.bin": b"\x00" * (256 * 1024 * 1024)})
    assert len(bomb) < 300_000
    with pytest.raises(InvalidInput, match="zip bomb"):
        _extract(bomb, tmp_path)
    assert _tree(tmp_path) == []


def test_total_size_cap(tmp_path: Path) -> None:
    data = make_zip({"a": os.urandom(5000), "b": os.urandom(5000)}, zipfile.ZIP_STORED)
    with pytest.raises(PayloadTooLarge, match="uncompressed"):
        _extract(data, tmp_path, ZipLimits(max_unzipped_bytes=8000))


def test_entry_count_cap(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge, match="entries"):
        _extract(make_zip({f"f{i}": "x" for i in range(11)}), tmp_path, ZipLimits(max_entries=10))


def test_corrupt_data_fails_the_crc(tmp_path: Path) -> None:
    data = bytearray(make_zip({"a.bin": b"z" * 20000}, zipfile.ZIP_STORED))
    data[100] ^= 0xFF
    with pytest.raises(InvalidInput, match="corrupt"):
        _extract(bytes(data), tmp_path)


def test_overlapping_entries_bomb(tmp_path: Path) -> None:
    """Two central-directory entries that share one local file: the non-recursive bomb trick."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("one", b"q" * 5000)
        archive.writestr("two", b"q" * 10)
    data = bytearray(buffer.getvalue())
    second_cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, second_cd + 42, 0)  # entry "two" now points at "one"'s header
    with pytest.raises(InvalidInput, match="central directory"):
        _extract(bytes(data), tmp_path)
    assert _tree(tmp_path) == []


def test_symlink_entries_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(InvalidInput, match="symbolic link"):
        _extract(buffer.getvalue(), tmp_path)
    assert _tree(tmp_path) == []


def test_duplicate_entries_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("same", "1")
        archive.writestr("same", "2")
    with pytest.raises(InvalidInput, match="twice"):
        _extract(buffer.getvalue(), tmp_path)


def test_encrypted_and_unsupported_entries_are_refused(tmp_path: Path) -> None:
    encrypted = bytearray(make_zip({"secret": "x"}))
    encrypted[6] |= 0x01  # general purpose flag: encrypted
    with pytest.raises(InvalidInput, match="encrypted"):
        _extract(bytes(encrypted), tmp_path)
    bzip = make_zip({"b": "x" * 100}, zipfile.ZIP_BZIP2)
    with pytest.raises(InvalidInput, match="compression method 12"):
        _extract(bzip, tmp_path)


def test_real_data_sized_archives_are_accepted(tmp_path: Path) -> None:
    """Many files and well-compressing content stay within the defaults."""
    files = {f"series/{i:05d}.dcm": (b"DICM" + bytes(range(256)) * 4) for i in range(3000)}
    assert _extract(make_zip(files), tmp_path) == 3000


def test_extra_field_cut_short_is_ignored_not_a_crash(tmp_path: Path) -> None:
    """A zip64 tag claiming more bytes than the extra field holds once raised struct.error (a 500)."""
    data = bytearray(make_zip({"a.txt": "x" * 100}, zipfile.ZIP_STORED))
    struct.pack_into("<H", data, 28, 8)  # local header: extra length 8 ...
    data[30 + 5 : 30 + 5] = struct.pack("<HH", 0x0001, 200) + b"\0" * 4  # ... a zip64 tag claiming 200
    assert _extract(bytes(data), tmp_path) == 1
    assert (tmp_path / "in/a.txt").read_text() == "x" * 100


# -- crafted archives: what zipfile cannot write ----------------------------------------------
def _crafted(
    name: bytes, data: bytes, method: int = 0, descriptor: bytes | None = None, crc: int | None = None
) -> bytes:
    """One entry (with ``descriptor`` after its data, flag 8 set, sizes 0 in its header), then
    a central directory that lists it and an end record."""
    crc = zlib.crc32(data) if crc is None else crc
    stored = zlib.compress(data)[2:-4] if method == 8 else data
    flags = 0x8 if descriptor is not None else 0
    sizes = (0, 0, 0) if descriptor is not None else (crc, len(stored), len(data))
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, method, 0, 0, *sizes, len(name), 0)
    body = local + name + stored + (descriptor or b"")
    big = len(stored) > 0xFFFFFFFE
    extra = struct.pack("<HHQQ", 1, 16, len(data), len(stored)) if big else b""
    csize, usize = (0xFFFFFFFF, 0xFFFFFFFF) if big else (len(stored), len(data))
    central = (
        struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            20,
            3,
            20,
            0,
            flags,
            method,
            0,
            0,
            crc,
            csize,
            usize,
            len(name),
            len(extra),
            0,
            0,
            0,
            0o100644 << 16,
            0,
        )
        + name
        + extra
    )
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(body), 0)
    return body + central + end


def test_corrupt_deflate_data_is_bad_input(tmp_path: Path) -> None:
    """zlib.error used to escape as a 500."""
    data = bytearray(make_zip({"a.txt": os.urandom(2000).hex()}))
    data[40:60] = b"\xff" * 20  # inside the deflate stream
    with pytest.raises(InvalidInput, match="corrupt"):
        _extract(bytes(data), tmp_path)
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("chunk", [1, 13, 1 << 20])
def test_java_zip64_descriptor_with_8_byte_sizes(tmp_path: Path, chunk: int) -> None:
    """ZipOutputStream writes 8-byte sizes in the descriptor only, with no zip64 extra in the header."""
    content = b"java " * 4000
    stored = zlib.compress(content)[2:-4]
    descriptor = struct.pack("<4sIQQ", b"PK\x07\x08", zlib.crc32(content), len(stored), len(content))
    assert _extract(_crafted(b"big.txt", content, 8, descriptor), tmp_path, chunk=chunk) == 1
    assert (tmp_path / "in/big.txt").read_bytes() == content


def test_unsigned_32_bit_descriptor(tmp_path: Path) -> None:
    content = b"plain " * 100
    stored = zlib.compress(content)[2:-4]
    descriptor = struct.pack("<III", zlib.crc32(content), len(stored), len(content))
    assert _extract(_crafted(b"a.txt", content, 8, descriptor), tmp_path, chunk=7) == 1
    assert (tmp_path / "in/a.txt").read_bytes() == content


def test_a_descriptor_that_lies_is_refused(tmp_path: Path) -> None:
    content = b"liar " * 100
    stored = zlib.compress(content)[2:-4]
    descriptor = struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(content), len(stored), len(content) + 1)
    with pytest.raises(InvalidInput, match="descriptor"):
        _extract(_crafted(b"a.txt", content, 8, descriptor), tmp_path)
    assert _tree(tmp_path) == []


def test_false_descriptor_signatures_cost_linear_time(tmp_path: Path) -> None:
    """A stored entry of unknown size full of descriptor signatures once cost a CRC of the whole
    buffer per candidate (9 s of CPU for 4 MiB); each byte is now hashed once."""
    content = b"PK\x07\x08" * (2 * 1024 * 1024)  # 8 MiB, 2 M false candidates
    descriptor = struct.pack("<4sIII", b"PK\x07\x08", zlib.crc32(content), len(content), len(content))
    data = _crafted(b"sigs.bin", content, 0, descriptor)
    started = time.process_time()
    assert _extract(data, tmp_path, chunk=1 << 20) == 1
    assert time.process_time() - started < 5  # quadratic: hours; linear: about a second
    assert (tmp_path / "in/sigs.bin").stat().st_size == len(content)


def test_deep_names_are_refused_and_cleanup_works(tmp_path: Path) -> None:
    """A 1 100-folder-deep entry once made cleanup raise RecursionError and left data behind."""
    with pytest.raises(InvalidInput, match="deep"):
        _extract(make_zip({"a/" * 1100 + "f": "x"}), tmp_path)
    with pytest.raises(InvalidInput, match="bytes"):
        _extract(make_zip({"b" * 5000: "x"}), tmp_path)
    assert _tree(tmp_path) == []


def test_a_central_directory_with_more_records_than_entries_is_refused(tmp_path: Path) -> None:
    data = make_zip({"a": "1"})
    cd = data.index(b"PK\x01\x02")
    end = data.index(b"PK\x05\x06")
    forged = data[:end] + data[cd:end] * 1000 + data[end:]
    with pytest.raises(InvalidInput, match="central directory"):
        _extract(forged, tmp_path)
    assert _tree(tmp_path) == []


def test_junk_after_the_central_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="after the zip"):
        _extract(make_zip({"a": "1"}) + b"\0" * (1 << 20), tmp_path)
    with pytest.raises(InvalidInput, match="central directory"):
        _extract(make_zip({"a": "1"})[:-22] + b"garbage!" * 10, tmp_path)
    assert _tree(tmp_path) == []


def _maker_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "pfcon-unzip"]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_small_files_made_on_threads_are_all_there_and_whole(tmp_path: Path, compression: int) -> None:
    """Small files (created by the file maker's threads) and large ones (by the request's
    thread) of many folders, and files just under, at and over the size that decides."""
    files: dict[str, bytes] = {f"d{i % 37}/s{i % 5}/f{i}.bin": os.urandom(i % 5000) for i in range(2000)}
    files |= {f"edge/{size}": os.urandom(size) for size in (0, SMALL_FILE - 1, SMALL_FILE, SMALL_FILE + 1)}
    files["d1/big.bin"] = os.urandom(3 * SMALL_FILE)
    assert _extract(make_zip(files, compression), tmp_path, chunk=65_521) == len(files)
    for name, content in files.items():
        assert (tmp_path / "in" / name).read_bytes() == content, name
    assert not _maker_threads()


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a", "a/b"], "clashes"),  # a folder where a small file is (maybe not yet created)
        (["x/a", "x/a/b/c"], "clashes"),
        (["a/", "a"], "twice"),
        (["a/b/c", "a"], "twice"),  # found by a file maker's thread: its folder was made on the way
        (["a", "b", "a"], "twice"),
    ],
)
def test_name_clashes_are_refused(tmp_path: Path, names: list[str], message: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
        for name in names:
            archive.writestr(name, "" if name.endswith("/") else "data")
    with pytest.raises(InvalidInput, match=message):
        _extract(buffer.getvalue(), tmp_path)
    assert _tree(tmp_path) == []
    assert not _maker_threads()


def test_a_refusal_after_many_small_files_stops_the_threads_and_keeps_nothing(tmp_path: Path) -> None:
    """The last entry is corrupt: files already handed to the threads are removed with the rest."""
    files = {f"d{i % 50}/f{i}": os.urandom(2000) for i in range(3000)}
    data = bytearray(make_zip({**files, "last": b"z" * 1000}, zipfile.ZIP_STORED))
    data[data.rindex(b"z" * 1000)] ^= 1  # the CRC no longer matches
    with pytest.raises(InvalidInput, match="CRC"):
        _extract(bytes(data), tmp_path)
    assert _tree(tmp_path) == []
    assert not _maker_threads()


# -- blocks of large files allocated ahead ----------------------------------------------------
def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def _can_reserve(folder: Path) -> bool:
    probe = folder / "probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        return reserve(fd, 0, 1 << 20)
    finally:
        os.close(fd)
        probe.unlink()


def test_a_header_that_lies_about_its_size_reserves_at_most_one_step_ahead(tmp_path: Path) -> None:
    """A stored entry claims 1 GiB and sends 2 MiB: the disk holds the 2 MiB and at most one
    step of blocks allocated ahead, the file's size is what was written, and the cut upload
    leaves nothing."""
    claimed, sent = 1 << 30, 2 << 20
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, claimed, claimed, 5, 0)
    sink = StreamingUnzip(tmp_path / "staging", LIMITS)
    try:
        sink.write(local + b"a.bin")
        for _ in range(sent // (1 << 20)):
            sink.write(os.urandom(1 << 20))
        target = tmp_path / "staging/a.bin"
        assert target.stat().st_size == sent
        assert _allocated(target) <= sent + RESERVE_STEP + (1 << 20)  # (the filesystem's rounding)
        if _can_reserve(tmp_path):  # where the filesystem allocates ahead, it did here
            assert _allocated(target) >= RESERVE_STEP
        with pytest.raises(InvalidInput, match="not a complete zip"):
            sink.finish()
    finally:
        sink.close()
    assert _tree(tmp_path) == []


def test_reserve_says_no_where_the_file_cannot_grow(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with open(tmp_path / "f", "rb") as read_only:
        assert not reserve(read_only.fileno(), 0, 1 << 20)  # EBADF: the writes decide, as before
    assert (tmp_path / "f").stat().st_size == 1


def test_large_files_are_whole_when_the_filesystem_allocates_nothing_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem without fallocate (NFS before 4.2): asked once per file, then plain writes."""
    asked: list[int] = []
    monkeypatch.setattr(
        "pfcon.storage.unzip.reserve", lambda fd, offset, length: asked.append(offset) or False
    )
    files = {"big.bin": os.urandom(3 * SMALL_FILE), "d/other.bin": os.urandom(2 * SMALL_FILE)}
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        asked.clear()
        assert _extract(make_zip(files, compression), tmp_path, chunk=65_521) == 2
        for name, content in files.items():
            assert (tmp_path / "in" / name).read_bytes() == content
        assert asked == [0, 0]
        remove_tree(tmp_path / "in")


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_large_files_reach_the_kernel_in_pieces_of_at_most_write_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: int
) -> None:
    """Chunks of 1 MiB arrive whole, written in pieces (docs/uploads.md: on a VM whose host
    takes back free memory, page-cache writes of 512 KiB and more are at times 4-8x dearer)."""
    sizes: list[int] = []
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr("pfcon.storage.filemaker.os.write", write)
    content = os.urandom(3 * MiB + 12_345)
    assert _extract(make_zip({"big.bin": content}, compression), tmp_path, chunk=MiB) == 1
    assert (tmp_path / "in" / "big.bin").read_bytes() == content
    assert sum(sizes) == len(content)
    assert max(sizes) <= WRITE_PIECE  # without the pieces: up to the 1 MiB the reader holds
