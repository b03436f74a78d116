"""Property-based fuzzing of the streaming unzip (hypothesis), bounded in time for CI.

Inputs are the archives of ``tests/corpus/unzip/`` (valid ones of every shape we read, and
every hostile one a review or this fuzzer found) mutated by flips, insertions, deletions,
duplications and truncations, fed in chunks of any size. Each run must end in a file count
or a domain error (:class:`InvalidInput`, :class:`PayloadTooLarge`), never anything else;
nothing may be written outside the job's folder, no symlink may be made, a refusal leaves
nothing, and memory and time stay bounded. An input that breaks a rule is saved into the
corpus as ``found-<sha>.zip`` and replayed by every run from then on.

``PFCON_FUZZ_EXAMPLES`` (default 150, about 15 s) sets how many mutated inputs a run tries.
"""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfcon.errors import InvalidInput, PayloadTooLarge
from pfcon.settings import ZipLimits
from tests.test_unzip import _extract

CORPUS = Path(__file__).parent / "corpus" / "unzip"
SEEDS = sorted(CORPUS.glob("*.zip"))
LIMITS = ZipLimits(max_upload_bytes=1 << 24, max_unzipped_bytes=1 << 25, max_entries=500, max_ratio=200)
MAX_PEAK_BYTES = 48 * 1024 * 1024  # the biggest buffer is one inflate chunk (1 MiB) and its copies
MAX_SECONDS = 10.0
EXAMPLES = int(os.environ.get("PFCON_FUZZ_EXAMPLES", "150"))


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def check_extraction(data: bytes, chunk: int, work: Path) -> None:
    """Feed ``data`` in ``chunk``-byte writes and check every rule; raise AssertionError if one breaks."""
    job = work / uuid.uuid4().hex
    job.mkdir()
    outside_before = sorted(p.name for p in work.iterdir())
    started = time.monotonic()
    tracemalloc.start()
    try:
        files = _extract(data, job, LIMITS, chunk)
        assert files == len([p for p in _files(job / "in") if p.is_file()])
    except (InvalidInput, PayloadTooLarge):
        assert not (job / "staging").exists()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"peak memory {peak}"
    assert time.monotonic() - started < MAX_SECONDS
    assert sorted(p.name for p in work.iterdir()) == outside_before  # nothing beside the job folder
    for path in _files(job):
        assert not path.is_symlink(), path
        assert path.resolve().is_relative_to(job.resolve()), path
    assert sorted(p.name for p in job.iterdir()) in ([], ["in"])


def _save_found(data: bytes) -> Path:
    path = CORPUS / f"found-{hashlib.sha256(data).hexdigest()[:16]}.zip"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("seed", SEEDS, ids=[p.name for p in SEEDS])
@pytest.mark.parametrize("chunk", [1, 4093, 1 << 20])
def test_corpus(seed: Path, chunk: int, tmp_path: Path) -> None:
    check_extraction(seed.read_bytes(), chunk, tmp_path)


def _mutate(data: bytes, ops: list[tuple[int, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, length, blob in ops:
        if not buf:
            buf.extend(blob)
            continue
        pos %= len(buf)
        if kind == 0:  # flip bits of one byte
            buf[pos] ^= (length % 255) + 1
        elif kind == 1:  # overwrite
            buf[pos : pos + len(blob)] = blob
        elif kind == 2:  # insert
            buf[pos:pos] = blob
        elif kind == 3:  # delete
            del buf[pos : pos + length]
        elif kind == 4:  # duplicate a slice in place
            buf[pos:pos] = buf[pos : pos + length]
        else:  # truncate
            del buf[pos:]
    return bytes(buf)


OPS = st.lists(
    st.tuples(
        st.integers(0, 5), st.integers(0, 1 << 20), st.integers(0, 4096), st.binary(min_size=1, max_size=64)
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,  # time is checked inside, against MAX_SECONDS
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.sampled_from(SEEDS), ops=OPS, chunk=st.sampled_from([1, 7, 509, 4096, 65536, 1 << 20]))
def test_mutated_archives(seed: Path, ops, chunk: int, tmp_path: Path) -> None:
    data = _mutate(seed.read_bytes(), ops)
    if chunk == 1 and len(data) > 20_000:
        chunk = 7  # byte-by-byte on the biggest seeds costs time, not coverage
    try:
        check_extraction(data, chunk, tmp_path)
    except BaseException:
        _save_found(data)
        raise
