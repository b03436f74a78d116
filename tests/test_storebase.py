"""Job ids and client paths are confined to their roots."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfcon.errors import DataNotDeletable, InvalidInput, JobExists
from pfcon.storebase import StoreBase, resolve_inside, safe_relative, validate_jid
from tests.helpers import as_user, shared_tmp_dir


@pytest.mark.parametrize("jid", ["chris-jid-42", "a", "A.b_c-1", "x" * 128])
def test_valid_jids(jid: str) -> None:
    assert validate_jid(jid) == jid


@pytest.mark.parametrize(
    "jid", ["", "..", "../etc", "/abs", "a/b", "-lead", ".hidden", "x" * 129, "a b", "a\x00", "é"]
)
def test_invalid_jids(jid: str) -> None:
    with pytest.raises(InvalidInput, match="jid"):
        validate_jid(jid)


@pytest.mark.parametrize("path", ["", "/etc", "../x", "a/../../b", "a\\b", "a\x00b", ".", "./"])
def test_unsafe_relative_paths(path: str) -> None:
    with pytest.raises(InvalidInput):
        safe_relative(path, "field")


def test_relative_paths_are_normalised() -> None:
    assert str(safe_relative("a//b/./c", "f")) == "a/b/c"


def test_resolve_inside_refuses_symlink_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    with pytest.raises(InvalidInput, match="outside"):
        resolve_inside(root, "out/secret", "link")
    (root / "ok").mkdir()
    assert resolve_inside(root, "ok", "link") == (root / "ok").resolve()


def test_claim_is_exclusive(tmp_path: Path) -> None:
    store = StoreBase(tmp_path)
    store.claim("job1")
    with pytest.raises(JobExists):
        store.claim("job1")
    assert store.remove_job("job1") and not store.remove_job("job1")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    with shared_tmp_dir() as path:
        yield path


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play two users")
def test_job_data_another_user_wrote_is_refused_whole(shared_tmp: Path) -> None:
    """pfcon as uid 1001, the job as root: a clear refusal, not a half-deleted folder."""
    root = shared_tmp / "storeBase"
    root.mkdir()
    os.chown(root, 1001, 1001)
    job = StoreBase(root).claim("j1")
    os.chown(job, 1001, 1001)
    (job / "incoming").mkdir()
    (job / "incoming/a.txt").write_text("mine")
    for path in (job, job / "incoming", job / "incoming/a.txt"):
        os.chown(path, 1001, 1001)
    (job / "outgoing/nested").mkdir(parents=True)  # written by the job, as root
    (job / "outgoing/nested/result.txt").write_text("root's")
    os.chown(job / "outgoing", 1001, 1001)

    def delete() -> int:
        try:
            StoreBase(root).remove_job("j1")
        except DataNotDeletable as error:
            return 3 if "outgoing/nested belongs to uid 0" in error.message else 2
        return 0

    assert as_user(1001, delete) == 3
    assert (job / "incoming/a.txt").read_text() == "mine"  # nothing was deleted
    os.chown(job / "outgoing/nested", 1001, 1001)
    os.chown(job / "outgoing/nested/result.txt", 1001, 1001)
    assert as_user(1001, lambda: 0 if StoreBase(root).remove_job("j1") else 4) == 0
    assert not job.exists()
