"""Property-based fuzzing of the output zip writer and the output listing (hypothesis, bounded).

Random trees of odd names (any bytes but ``/`` and NUL: Latin-1, invalid UTF-8, 255 bytes,
``.chrislink``), symlinks to a secret outside the tree, FIFOs, empty and larger files, and
chains deeper than :data:`~pfcon.safetree.MAX_DEPTH`. Each example asserts that the zip
parses with :mod:`zipfile`, holds exactly the files the documented rules say (computed here
independently, with ``os.walk`` on bytes), byte for byte, that nothing outside the tree was
read, that memory stays bounded, and that the listing names the same files. Inputs it once
found are kept as ``@example`` cases below (the corpus). ``PFCON_FUZZ_EXAMPLES`` raises the
number of examples for a longer local run (default 40, about 10 s).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import tracemalloc
import zipfile

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pfcon.safetree import MAX_DEPTH
from pfcon.storage.innetwork import output_files
from pfcon.storage.zipstream import stream_zip

SECRET = b"SECRET-outside-the-output-" * 4
EXAMPLES = int(os.environ.get("PFCON_FUZZ_EXAMPLES", "40"))

names = st.one_of(
    st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\x00" not in b),
    st.sampled_from([b"caf\xe9.txt", "café.txt".encode(), b"\xff\xfe", b"x.chrislink", b"n" * 255, b"\xe9"]),
).filter(lambda b: b not in (b".", b".."))
leaves = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda n: os.urandom(n), st.sampled_from([0, 70_000])),
    st.sampled_from(["symlink-file", "symlink-dir", "fifo"]),
)
trees = st.recursive(
    st.dictionaries(names, leaves, max_size=4),
    lambda children: st.dictionaries(names, st.one_of(leaves, children), max_size=4),
    max_leaves=16,
)


def _build(folder: bytes, tree: dict, outside: bytes) -> None:
    for name, node in tree.items():
        path = folder + b"/" + name
        if isinstance(node, dict):
            os.mkdir(path)
            _build(path, node, outside)
        elif node == "symlink-file":
            os.symlink(outside + b"/secret", path)
        elif node == "symlink-dir":
            os.symlink(outside, path)
        elif node == "fifo":
            os.mkfifo(path)
        else:
            with open(path, "wb") as handle:
                handle.write(node)


def _shown(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _expected(root: bytes) -> dict[str, bytes]:
    """The documented rules, on their own: regular files, names as UTF-8 else Latin-1, the UTF-8
    one kept on a clash, no link files, files in at most MAX_DEPTH folders."""
    found: dict[str, bytes] = {}
    stack: list[tuple[bytes, tuple[str, ...]]] = [(root, ())]
    while stack:
        folder, parts = stack.pop()
        kept: dict[str, bytes] = {}
        for raw in os.listdir(folder):
            shown = _shown(raw)
            if shown not in kept or shown.encode() == raw:
                kept[shown] = raw
        for shown, raw in kept.items():
            path = folder + b"/" + raw
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode) and len(parts) < MAX_DEPTH:
                stack.append((path, (*parts, shown)))
            elif stat.S_ISREG(mode) and not shown.endswith(".chrislink"):
                with open(path, "rb") as handle:
                    found["/".join((*parts, shown))] = handle.read()
    return found


def _check(tree: dict, deep: int) -> None:
    work = tempfile.mkdtemp(prefix="pfcon-fuzz-").encode()
    try:
        outside, root = work + b"/outside", work + b"/out"
        os.mkdir(outside)
        with open(outside + b"/secret", "wb") as handle:
            handle.write(SECRET)
        os.mkdir(root)
        _build(root, tree, outside)
        if deep:
            chain = root + b"/chain"
            os.makedirs(chain + b"/d" * deep)
            with open(chain + b"/d" * deep + b"/bottom.txt", "wb") as handle:
                handle.write(b"bottom")
        expected = _expected(root)

        tracemalloc.start()
        try:
            data = b"".join(stream_zip(os.fsdecode(root)))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < len(data) + 8 * 1024 * 1024
        assert SECRET not in data
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None
            assert sorted(archive.namelist()) == sorted(expected)
            for name, content in expected.items():
                assert archive.read(name) == content, name
        assert output_files(os.fsdecode(root)) == sorted(expected)
    finally:
        shutil.rmtree(work)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(tree=trees, deep=st.sampled_from([0, 0, 0, 3, MAX_DEPTH - 1, MAX_DEPTH + 2]))
@example(tree={b"\xe9": b"latin-1", "é".encode(): b"utf-8"}, deep=0)  # the clash: UTF-8 kept
@example(tree={b"caf\xe9": {b"x.chrislink": b"a/b", b"f": b"1"}}, deep=MAX_DEPTH)
@example(tree={b"a": "symlink-dir", b"b": "symlink-file", b"c": "fifo"}, deep=0)
def test_output_zip_and_listing_match_the_tree(tree: dict, deep: int) -> None:
    _check(tree, deep)
