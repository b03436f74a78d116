"""Job ids and client paths are confined to their roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from pfcon.errors import InvalidInput, JobExists
from pfcon.storebase import StoreBase, resolve_inside, safe_relative, validate_jid


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
