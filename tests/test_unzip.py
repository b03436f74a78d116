"""Streaming extraction: bombs, traversal and lies are refused, whatever the chunking."""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from pfcon.errors import InvalidInput, PayloadTooLarge
from pfcon.settings import ZipLimits
from pfcon.storage.unzip import StreamingUnzip
from pfcon.storage.zipstream import stream_zip
from tests.helpers import make_zip

LIMITS = ZipLimits()


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
