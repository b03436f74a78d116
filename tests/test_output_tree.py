"""What a job writes never breaks delete, download or listing (pfcon/safetree.py and its users).

Each class of hostile output on the real filesystem: deep trees, names that are not UTF-8,
permissions a job running as pfcon's uid can leave (deleted as a non-root user), folders
swapped for symlinks while the output is read, and many entries (memory).
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfcon.errors import InvalidInput
from pfcon.safetree import MAX_DEPTH, open_root, remove_tree
from pfcon.storage import zipstream
from pfcon.storage.copying import copy_tree
from pfcon.storage.innetwork import output_files
from pfcon.storage.links import count_data_files, link_files
from pfcon.storage.zipstream import stream_zip
from tests.helpers import as_user, shared_tmp_dir

DEPTH = 1_100
UID = 1001
SECRET = b"secret outside the output"


def _zip(root: Path) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(root))))
    assert archive.testzip() is None
    return archive


def _deep(root: Path, depth: int = DEPTH) -> None:
    """``depth`` nested folders, a file every 100 levels; built fd-relative (paths would be too long)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY)
    for level in range(depth):
        if level % 100 == 0:
            os.close(os.open(f"at{level}", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)


def test_deep_tree_zips_lists_and_deletes_within_the_bound(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _deep(out)
    names = _zip(out).namelist()
    assert names[0] == "at0" and "d/" * 100 + "at100" in names
    assert max(name.count("/") for name in names) <= MAX_DEPTH  # deeper files left out, zip whole
    assert output_files(out) == sorted(names)
    remove_tree(out)
    assert not out.exists() and tmp_path.exists()


def test_deep_source_is_refused_by_fslink_copy(tmp_path: Path) -> None:
    _deep(tmp_path / "src", MAX_DEPTH + 5)
    with pytest.raises(InvalidInput, match=f"deeper than {MAX_DEPTH} folders"):
        copy_tree(tmp_path / "src", tmp_path / "dest")
    _deep(tmp_path / "ok", MAX_DEPTH)
    copy_tree(tmp_path / "ok", tmp_path / "copy")
    assert output_files(tmp_path / "copy") == output_files(tmp_path / "ok")


def test_counting_an_input_deeper_than_path_max(tmp_path: Path) -> None:
    """filesystem mode counts a client-named input as it is: 40 levels of 200-byte names (8 KB paths)."""
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(40):
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
        os.mkdir("n" * 200, dir_fd=fd)
        child = os.open("n" * 200, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("x.chrislink", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    os.close(fd)
    assert count_data_files(tmp_path) == 40
    assert [len(link.as_posix()) > 4096 for link in link_files(tmp_path)] == [True]


def test_names_that_are_not_utf8_are_read_as_latin1_everywhere(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    latin1 = os.fsencode(out) + b"/caf\xe9.txt"
    with open(latin1, "wb") as handle:
        handle.write(b"latin-1 name")
    os.mkdir(os.fsencode(out) + b"/r\xe9sultats")
    with open(os.fsencode(out) + b"/r\xe9sultats/\xff.bin", "wb") as handle:
        handle.write(b"x")
    (out / "ok.txt").write_text("fine")
    (out / "dup").mkdir()  # "dup/naïve" exists in UTF-8, its Latin-1 twin is skipped
    (out / "dup/naïve").write_text("utf-8 one")
    with open(os.fsencode(out) + "/dup/naïve".encode("latin-1"), "wb") as handle:
        handle.write(b"latin-1 twin")

    archive = _zip(out)
    expected = ["café.txt", "dup/naïve", "ok.txt", "résultats/ÿ.bin"]
    assert sorted(archive.namelist()) == expected
    assert archive.read("café.txt") == b"latin-1 name" and archive.read("dup/naïve") == b"utf-8 one"
    # the in-network listing renames on disk, so each listed path is one a client can open
    assert output_files(out) == expected
    assert all((out / name).is_file() for name in expected)
    assert (out / "café.txt").read_bytes() == b"latin-1 name"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    with shared_tmp_dir() as path:
        yield path


def write_hostile_tree(out: Path, outside: Path) -> None:
    """Everything a job running as pfcon's uid can leave that once broke a delete."""
    _deep(out / "deep")
    (out / "locked/inner").mkdir(parents=True)
    (out / "locked/inner/f").write_text("x")
    (out / "locked/inner").chmod(0)
    (out / "locked").chmod(0)
    (out / "readonly").mkdir()
    (out / "readonly/f").write_text("x")
    (out / "readonly/sub").mkdir()
    (out / "readonly").chmod(0o500)
    (out / "noexec").mkdir()
    (out / "noexec/f").write_text("x")
    (out / "noexec").chmod(0o600)
    (out / "sticky").mkdir()
    (out / "sticky").chmod(0o1777)
    (out / "sticky/f").write_text("x")
    (out / "zero").write_text("x")
    (out / "zero").chmod(0)
    (out / "escape").symlink_to(outside)
    (out / "escape-file").symlink_to(outside / "secret")
    os.mkfifo(out / "fifo")
    with open(os.fsencode(out) + b"/caf\xe9.txt", "wb") as handle:
        handle.write(b"x")


def test_delete_as_non_root_removes_whatever_a_job_of_that_uid_can_leave(shared_tmp: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to become the non-root user")  # a failure under CI=true
    outside = shared_tmp / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    outside.chmod(0o777)
    storebase = shared_tmp / "storeBase"  # pfcon's own, as in its image
    storebase.mkdir()
    os.chown(storebase, UID, UID)
    job = storebase / "key-j1"

    def job_writes() -> int:
        job.mkdir()
        write_hostile_tree(job / "outgoing", outside)
        return 0

    def pfcon_reads_then_deletes() -> int:
        names = _zip(job / "outgoing").namelist()
        assert "café.txt" in names and "zero" not in names and "escape-file" not in names
        output_files(job / "outgoing")
        remove_tree(job)
        return 0

    assert as_user(UID, job_writes) == 0
    assert as_user(UID, pfcon_reads_then_deletes) == 0
    assert not job.exists()
    assert (outside / "secret").read_bytes() == SECRET


def _swapper(parent: Path, stop: threading.Event) -> None:
    """Swap ``parent/sub`` between a real folder and a symlink to the secret, as fast as it can."""
    real, link = parent / "sub.real", parent / "sub.link"
    while not stop.is_set():
        os.rename(link, parent / "sub")  # now a symlink
        os.rename(parent / "sub", link)
        os.rename(real, parent / "sub")  # now the folder
        os.rename(parent / "sub", real)


def test_a_folder_swapped_for_a_symlink_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_bytes(SECRET)
    out = tmp_path / "out"
    (out / "sub.real").mkdir(parents=True)
    (out / "sub.real/data.txt").write_bytes(b"the job's own")
    (out / "sub.link").symlink_to(outside)
    stop = threading.Event()
    swapper = threading.Thread(target=_swapper, args=(out, stop))
    swapper.start()
    try:
        for _ in range(300):
            archive = _zip(out)
            for name in archive.namelist():
                assert archive.read(name) != SECRET, name
            assert all(not name.startswith("sub.link/") for name in output_files(out))
            copy_tree(out, tmp_path / "copy")
            for path in (tmp_path / "copy").rglob("*"):
                assert not path.is_file() or path.read_bytes() != SECRET
            shutil.rmtree(tmp_path / "copy")
    finally:
        stop.set()
        swapper.join()
    assert (outside / "data.txt").read_bytes() == SECRET


def _empty_files(root: Path, folders: int) -> None:
    for folder in range(folders):
        (root / f"d{folder:02d}").mkdir(parents=True)
        for index in range(1000):
            os.close(os.open(root / f"d{folder:02d}/file-{index:05d}", os.O_CREAT | os.O_WRONLY))


def _zip_peak(root: Path) -> tuple[int, bytes]:
    tracemalloc.start()
    try:
        data = [len(chunk) for chunk in stream_zip(root)]
        return tracemalloc.get_traced_memory()[1], sum(data)
    finally:
        tracemalloc.stop()


def test_zip_memory_is_flat_in_the_number_of_entries(tmp_path: Path, monkeypatch) -> None:
    """1 000 vs 10 000 empty files: the central directory spills to disk instead of growing."""
    monkeypatch.setattr(zipstream, "CENTRAL_IN_MEMORY", 64 * 1024)
    monkeypatch.setattr(zipstream, "CHUNK", 64 * 1024)  # both zips span many chunks
    _empty_files(tmp_path / "small", 1)
    _empty_files(tmp_path / "big", 10)
    small, _ = _zip_peak(tmp_path / "small")
    big, size = _zip_peak(tmp_path / "big")
    assert big - small < 256 * 1024, f"peak {small} B for 1 000 entries, {big} B for 10 000"
    data = b"".join(stream_zip(tmp_path / "big"))
    assert len(data) == size
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert len(archive.infolist()) == 10_000 and archive.testzip() is None


def test_open_root_refuses_a_symlinked_output(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        open_root(tmp_path / "link")
