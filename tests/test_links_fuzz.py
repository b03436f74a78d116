"""Property-based fuzzing of the link resolver (hypothesis), bounded in time for CI.

Random trees of files, folders, symlinks and link files whose targets are files, folders,
other links, loops, the job's output, paths out of the tree and garbage, resolved under
random small caps. Every run must end in success or a domain error (400/413), write nothing
outside the job's input, stay within the caps, and end quickly.

Inputs worth keeping live in ``tests/corpus/links/*.json`` and are replayed on every run.
With ``PFCON_FUZZ_SAVE=1`` the fuzz test adds an example there for each outcome it has not
seen yet (the corpus grows by outcome, not by count).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfcon.errors import InvalidInput, PayloadTooLarge
from pfcon.settings import LinkLimits
from pfcon.storage.links import LinkPolicy, resolve_links

CORPUS = Path(__file__).parent / "corpus" / "links"
TIME_LIMIT = 5.0  # seconds per resolution; the caps keep every one far below it
FOLDERS = ["d", "d/a", "d/b", "d/a/c", "d/b/c", "job/in", "job/in/s", "job/out"]
FILES = [f"{folder}/{name}" for folder in FOLDERS for name in ("f", "g.txt")]
TARGETS = [
    *FOLDERS,
    *FILES,
    "d/a/l.chrislink",
    "d/sym",
    "d/sym/x",
    "job",
    "..",
    "../outside",
    "d/../../outside",
    "/etc",
    "missing",
    "",
    ".",
    "d//a/./c",
    "d\\a",
    "d/a\x00",
]


def _spec() -> st.SearchStrategy[dict[str, Any]]:
    link = st.tuples(
        st.sampled_from(FOLDERS),
        st.sampled_from(["l", "m", "f"]),
        st.one_of(st.sampled_from(TARGETS), st.text(max_size=8)),
    )
    return st.fixed_dictionaries(
        {
            "mode": st.sampled_from(["storebase", "self"]),
            "files": st.dictionaries(st.sampled_from(FILES), st.text("xyz\n", max_size=64), max_size=10),
            "links": st.lists(link, max_size=12),
            "symlink": st.booleans(),
            "limits": st.tuples(st.integers(0, 30), st.integers(0, 300), st.integers(0, 2000)),
        }
    )


def _build(root: Path, spec: dict[str, Any]) -> None:
    (root / "outside").mkdir()
    (root / "outside/secret").write_text("secret")
    store = root / "root"
    for folder in FOLDERS:
        if not folder.startswith("job/out"):
            (store / folder).mkdir(parents=True, exist_ok=True)
    (store / "job/out").mkdir()
    if spec["symlink"]:
        (store / "d/sym").symlink_to(root / "outside")
    for name, content in spec["files"].items():
        (store / name).write_text(content)
    for folder, name, target in spec["links"]:
        (store / folder / f"{name}.chrislink").write_bytes(target.encode("utf-8", "surrogatepass"))


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every entry under ``root`` but ``skip``: its kind and, for files, a hash of the content."""
    seen: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        if Path(folder) == skip:
            dirs[:] = []
            continue
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                seen[key] = "link:" + os.readlink(path)
            elif path.is_file():
                seen[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[key] = "dir"
    return seen


def _usage(tree: Path) -> tuple[int, int]:
    entries = size = 0
    for _folder, dirs, files in os.walk(tree):
        entries += len(dirs) + len(files)
        size += sum(os.lstat(os.path.join(_folder, name)).st_size for name in files)
    return entries, size


def check(spec: dict[str, Any]) -> str:
    """Resolve one generated tree and assert the properties; returns the outcome's kind."""
    with tempfile.TemporaryDirectory(prefix="pfcon-fuzz-") as tmp:
        root = Path(tmp)
        _build(root, spec)
        store = root / "root"
        tree = store / "job/in"
        max_links, max_entries, max_bytes = spec["limits"]
        limits = LinkLimits(max_links=max_links, max_entries=max_entries, max_bytes=max_bytes)
        policy_root = store if spec["mode"] == "storebase" else tree
        policy = LinkPolicy(root=policy_root, forbidden=(store / "job/out",), limits=limits)
        before = _snapshot(root, tree)
        entries_before, bytes_before = _usage(tree)
        started = time.monotonic()
        try:
            resolve_links(tree, policy)
            outcome = "resolved"
        except PayloadTooLarge as error:
            outcome = "413 " + error.message.rpartition("(")[2].rstrip(")")
        except InvalidInput as error:
            outcome = "400 " + _kind(error.message)
        assert time.monotonic() - started < TIME_LIMIT
        assert _snapshot(root, tree) == before, "something outside the job's input changed"
        if outcome == "resolved":
            entries_after, bytes_after = _usage(tree)
            assert entries_after - entries_before <= max_entries
            assert bytes_after - bytes_before <= max_bytes
            assert not list(tree.rglob("*.chrislink"))
            assert "secret" not in {p.name for p in tree.rglob("*")}
        return outcome


def _kind(message: str) -> str:
    for words in ("already taken", "another link file", "outside", "does not exist", "output", "UTF-8"):
        if words in message:
            return words
    return "invalid path"


def _corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.json"))


@pytest.mark.parametrize("path", _corpus(), ids=lambda path: path.stem)
def test_corpus_inputs_still_behave(path: Path) -> None:
    entry = json.loads(path.read_text())
    assert check(entry["spec"]) == entry["outcome"]


_seen = {json.loads(path.read_text())["outcome"] for path in _corpus()}


@settings(
    max_examples=int(os.environ.get("PFCON_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(spec=_spec())
def test_the_resolver_only_ever_answers_with_domain_errors(spec: dict[str, Any]) -> None:
    outcome = check(spec)
    if os.environ.get("PFCON_FUZZ_SAVE") == "1" and outcome not in _seen:
        _save(spec, outcome)


def _save(spec: dict[str, Any], outcome: str) -> None:
    """Keep an example of an outcome not in the corpus yet."""
    _seen.add(outcome)
    body = json.dumps({"outcome": outcome, "spec": spec}, indent=1, ensure_ascii=True)
    name = hashlib.sha256(body.encode()).hexdigest()[:12]
    CORPUS.mkdir(parents=True, exist_ok=True)
    (CORPUS / f"{name}.json").write_text(body + "\n")
