"""The output zip is streamed, complete, and leaves out links."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

from pfcon.storage.zipstream import stream_zip


def test_stream_round_trips_and_skips_links(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub/deeper").mkdir(parents=True)
    (out / "text.txt").write_text("hello " * 2000)
    (out / "big.txt").write_text("hello " * 400_000)
    random_bytes = os.urandom(3 * 1024 * 1024 + 17)
    (out / "sub/deeper/random.bin").write_bytes(random_bytes)
    (out / "empty").write_bytes(b"")
    (out / "ref.chrislink").write_text("somewhere/else")
    (out / "escape").symlink_to("/etc/passwd")
    (out / "dirlink").symlink_to(tmp_path)
    os.mkfifo(out / "fifo")

    chunks = list(stream_zip(out))
    assert len(chunks) > 3, "the zip should arrive in several pieces, not one buffer"
    assert max(len(c) for c in chunks) <= 2 * 1024 * 1024
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == ["big.txt", "empty", "sub/deeper/random.bin", "text.txt"]
        assert archive.read("sub/deeper/random.bin") == random_bytes
        assert archive.getinfo("sub/deeper/random.bin").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("big.txt").compress_type == zipfile.ZIP_DEFLATED
        assert archive.getinfo("text.txt").compress_type == zipfile.ZIP_STORED  # small: never probed
        assert archive.read("big.txt") == (out / "big.txt").read_bytes()


def test_empty_output_is_a_valid_empty_zip(tmp_path: Path) -> None:
    data = b"".join(stream_zip(tmp_path))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == []


def test_a_file_that_grows_after_its_stat_is_zipped_whole(tmp_path: Path, monkeypatch) -> None:
    """A running job may append between the fstat and the read: nothing is cut off."""
    (tmp_path / "growing.log").write_bytes(b"line\n" * 1000)
    real_fstat = os.fstat

    def stale_fstat(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        fields = list(info)
        fields[6] = 10 if stat.S_ISREG(info.st_mode) else fields[6]  # st_size as it was earlier
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", stale_fstat)
    with zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(tmp_path)))) as archive:
        assert archive.read("growing.log") == b"line\n" * 1000 and archive.testzip() is None
