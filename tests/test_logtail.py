"""The shared log tail: bounded bytes and lines, never a symlink, never blocked by a FIFO."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from pathlib import Path

from pfcon.compute.batch.backend import BatchBackend
from pfcon.compute.batch.runtimes import RUNTIMES
from pfcon.compute.batch.scheduler import BatchOptions
from pfcon.compute.batch.script import ScriptTemplate
from pfcon.compute.batch.slurm import SLURM, TEMPLATE
from pfcon.compute.logtail import MAX_TAIL_BYTES, read_tail


def test_tail_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_text("".join(f"line {n}\n" for n in range(100_000)))
    assert read_tail(log, 3) == "line 99997\nline 99998\nline 99999\n"
    assert read_tail(log, 0) == ""
    log.write_text("a\nb")
    assert read_tail(log, 5) == "a\nb" and read_tail(log, 1) == "b"
    assert read_tail(tmp_path / "missing.log", 5) == ""


def _peak_while(func) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = func()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_one_huge_line_costs_at_most_the_byte_cap(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    with log.open("wb") as handle:  # 400 MB, one line (sparse: no disk used)
        handle.write(b"start ")
        handle.truncate(400 * 1024 * 1024)
        handle.seek(0, os.SEEK_END)
        handle.write("é end\n".encode())
    text, peak = _peak_while(lambda: read_tail(log, 1000))
    assert isinstance(text, str) and text.endswith("é end\n") and not text.startswith("start")
    assert len(text.encode("utf-8", errors="replace")) <= MAX_TAIL_BYTES + 16
    assert peak < 6 * MAX_TAIL_BYTES


def test_many_lines_are_cut_at_the_byte_cap_too(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_bytes(b"x" * 1000 + b"\n" + (b"y" * 99 + b"\n") * 20_000)
    text = read_tail(log, 100_000, max_bytes=10_000)
    assert len(text) <= 10_000 and set(text.replace("\n", "")) == {"y"}


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0\n")
    (tmp_path / "out.log").symlink_to(secret)
    assert read_tail(tmp_path / "out.log", 10) == ""


def test_a_fifo_never_blocks_and_a_folder_is_no_log(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "out.log")
    answer: list[str] = []
    reader = threading.Thread(target=lambda: answer.append(read_tail(tmp_path / "out.log", 10)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive() and answer == [""]
    (tmp_path / "dir.log").mkdir()
    assert read_tail(tmp_path / "dir.log", 10) == ""


def test_the_slurm_backend_tails_through_the_capped_reader(tmp_path: Path) -> None:
    """A job's output of one 400 MB line: the status poll reads the cap, not the line."""
    template = ScriptTemplate.packaged(TEMPLATE)
    backend = BatchBackend(SLURM, RUNTIMES["docker"], template, BatchOptions(), tmp_path, str(tmp_path))
    folder = tmp_path / "key-j-1/slurm"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"job_id": "1", "image": "i", "cmd": "c"}))
    with (folder / "output.log").open("wb") as handle:
        handle.truncate(400 * 1024 * 1024)
    logs, peak = _peak_while(lambda: backend.logs("j-1", 1000))
    assert isinstance(logs, str) and len(logs) <= MAX_TAIL_BYTES
    assert peak < 6 * MAX_TAIL_BYTES
