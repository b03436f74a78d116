"""Staging copies: hard links where possible, streamed copies otherwise, bounded and fail-fast."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from pfcon.storage import copying
from pfcon.storage.copying import bounded_each, copy_file, copy_tree


def _tree(root: Path) -> None:
    (root / "a/b").mkdir(parents=True)
    (root / "top.txt").write_text("top")
    (root / "a/b/deep.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    (root / "a/ln").symlink_to("/etc/passwd")
    (root / "a/dirlink").symlink_to(root / "a/b")


def test_copy_tree_hard_links_on_one_filesystem_and_skips_symlinks(tmp_path: Path) -> None:
    _tree(tmp_path / "src")
    copy_tree(tmp_path / "src", tmp_path / "dest")
    deep = tmp_path / "dest/a/b/deep.bin"
    assert deep.stat().st_ino == (tmp_path / "src/a/b/deep.bin").stat().st_ino
    assert (tmp_path / "dest/top.txt").read_text() == "top"
    assert not (tmp_path / "dest/a/ln").exists() and not (tmp_path / "dest/a/dirlink").exists()


def test_copy_falls_back_to_a_streamed_copy_when_links_are_refused(tmp_path: Path, monkeypatch) -> None:
    """As across filesystems (EXDEV): the data is copied, in chunks, into a new inode."""

    def cross_device(*_args, **_kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(copying.os, "link", cross_device)
    monkeypatch.setattr(copying, "CHUNK", 64 * 1024)  # many sendfile rounds
    _tree(tmp_path / "src")
    copy_tree(tmp_path / "src", tmp_path / "dest")
    src, dest = tmp_path / "src/a/b/deep.bin", tmp_path / "dest/a/b/deep.bin"
    assert dest.stat().st_ino != src.stat().st_ino and dest.read_bytes() == src.read_bytes()


def test_existing_destination_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "src").write_text("new")
    (tmp_path / "dest").write_text("old")
    copy_file(tmp_path / "src", tmp_path / "dest")
    assert (tmp_path / "dest").read_text() == "old"


def test_bounded_each_limits_threads_and_work_in_flight() -> None:
    running, peak, finished, lock = 0, 0, 0, threading.Lock()
    pulled = []

    def items():
        for i in range(40):
            pulled.append(i)
            yield i

    def work(_item: int) -> None:
        nonlocal running, peak, finished
        with lock:
            running += 1
            peak = max(peak, running)
            assert len(pulled) - finished <= 2 * 3 + 1  # never the whole iterable pulled ahead
        time.sleep(0.01)
        with lock:
            running -= 1
            finished += 1

    bounded_each(work, items(), workers=3)
    assert peak == 3 and len(pulled) == 40


def test_bounded_each_stops_at_the_first_error() -> None:
    done = []

    def work(item: int) -> None:
        if item == 2:
            raise ValueError("boom")
        time.sleep(0.01)
        done.append(item)

    with pytest.raises(ValueError, match="boom"):
        bounded_each(work, iter(range(1000)), workers=2)
    assert len(done) < 50  # no new work after the failure
