"""Safe extraction: bombs, traversal and lies are refused before or while writing."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from pfcon.errors import InvalidInput, PayloadTooLarge
from pfcon.settings import ZipLimits
from pfcon.storage.unzip import extract
from tests.helpers import make_zip

LIMITS = ZipLimits()


def _extract(data: bytes, dest: Path, limits: ZipLimits = LIMITS) -> int:
    dest.mkdir(exist_ok=True)
    return extract(io.BytesIO(data), dest, limits)


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_extracts_nested_files(tmp_path: Path) -> None:
    n = _extract(make_zip({"a.txt": "A", "d/e/b.bin": b"\x00\x01", "d/": ""}), tmp_path / "in")
    assert n == 2
    assert (tmp_path / "in/d/e/b.bin").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/abs.txt", "a\\..\\evil.txt"])
def test_traversal_names_are_refused_and_nothing_written(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        _extract(make_zip({"ok.txt": "fine", name: "evil"}), tmp_path / "in")
    assert _tree(tmp_path) == ["in"]


def test_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a valid zip"):
        _extract(b"this is not a zip at all" * 10, tmp_path / "in")


def test_truncated_zip(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        _extract(make_zip({"a": "x" * 1000})[:-30], tmp_path / "in")


def test_ratio_bomb_is_refused_before_writing(tmp_path: Path) -> None:
    bomb = make_zip({"zeros.bin": b"\x00" * (64 * 1024 * 1024)})
    assert len(bomb) < 200_000
    with pytest.raises(InvalidInput, match="zip bomb"):
        _extract(bomb, tmp_path / "in")
    assert _tree(tmp_path) == ["in"]


def test_total_size_cap(tmp_path: Path) -> None:
    data = make_zip({"a": b"x" * 5000, "b": b"y" * 5000}, zipfile.ZIP_STORED)
    with pytest.raises(PayloadTooLarge, match="uncompressed size"):
        _extract(data, tmp_path / "in", ZipLimits(max_unzipped_bytes=8000))


def test_entry_count_cap(tmp_path: Path) -> None:
    data = make_zip({f"f{i}": "x" for i in range(11)})
    with pytest.raises(PayloadTooLarge, match="entries"):
        _extract(data, tmp_path / "in", ZipLimits(max_entries=10))


def test_lying_header_is_caught_while_writing(tmp_path: Path) -> None:
    """A central directory that under-declares sizes cannot write past the budget."""
    data = bytearray(make_zip({"a.bin": b"z" * 20000}, zipfile.ZIP_STORED))
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 100)  # uncompressed size in the central directory
    with pytest.raises((InvalidInput, PayloadTooLarge)):
        _extract(bytes(data), tmp_path / "in", ZipLimits(max_unzipped_bytes=1000))


def test_overlapping_entries_bomb(tmp_path: Path) -> None:
    """Two central-directory entries that share one local file: the non-recursive bomb trick."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("one", b"q" * 5000)
        archive.writestr("two", b"q" * 10)
    data = bytearray(buffer.getvalue())
    second_cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, second_cd + 42, 0)  # entry "two" now points at "one"'s header
    with pytest.raises(InvalidInput):
        _extract(bytes(data), tmp_path / "in")


def test_symlink_entries_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(InvalidInput, match="symbolic link"):
        _extract(buffer.getvalue(), tmp_path / "in")


def test_duplicate_entries_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("same", "1")
        archive.writestr("same", "2")
    with pytest.raises(InvalidInput, match="twice"):
        _extract(buffer.getvalue(), tmp_path / "in")


def test_real_data_sized_archives_are_accepted(tmp_path: Path) -> None:
    """Many files and well-compressing text stay within the defaults."""
    files = {f"series/{i:05d}.dcm": (b"DICM" + bytes(range(256)) * 4) for i in range(3000)}
    assert _extract(make_zip(files), tmp_path / "in") == 3000
