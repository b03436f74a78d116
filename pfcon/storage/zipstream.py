"""A zip of a folder, streamed to the client while it is written.

Nothing is held whole in memory: :class:`zipfile.ZipFile` writes into a sink that we drain
after every chunk, using data descriptors since the stream cannot seek. Data that does not
compress (judged on a sample) is stored, not deflated. Symlinks, special files and
``.chrislink`` files are left out: a job's output may hold anything.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from pfcon.storage.links import is_link_file

CHUNK = 1024 * 1024
SAMPLE = 64 * 1024
_ALREADY_COMPRESSED = frozenset(
    [
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".zst",
        ".zip",
        ".7z",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".webp",
        ".mp4",
        ".mkv",
        ".mov",
        ".mp3",
        ".npz",
        ".mgz",
        ".h5",
    ]
)


class _Sink:
    """A write-only, unseekable byte sink that hands out what was written so far."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        if data:
            self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        if self._parts:
            data = b"".join(self._parts)
            self._parts.clear()
            yield data


def output_files(root: Path) -> Iterator[tuple[Path, str]]:
    """(path, archive name) of every regular, non-link file under ``root``, in a stable order."""
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(dirpath, name)
            if is_link_file(name):
                continue
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                yield path, path.relative_to(root).as_posix()


def _compress_type(path: Path, head: bytes) -> int:
    if path.suffix.lower() in _ALREADY_COMPRESSED:
        return zipfile.ZIP_STORED
    if len(head) < 512:
        return zipfile.ZIP_DEFLATED
    ratio = len(zlib.compress(head, 1)) / len(head)
    return zipfile.ZIP_DEFLATED if ratio < 0.9 else zipfile.ZIP_STORED


def stream_zip(root: Path) -> Iterator[bytes]:
    """Yield the bytes of a zip of ``root`` as they are produced."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:  # type: ignore[arg-type]
        for path, arcname in output_files(root):
            yield from _add_file(archive, sink, path, arcname)
    yield from sink.drain()


def _add_file(archive: zipfile.ZipFile, sink: _Sink, path: Path, arcname: str) -> Iterator[bytes]:
    try:
        handle = open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW))  # noqa: SIM115
    except OSError:
        return  # vanished or replaced by a link since the walk: leave it out
    with handle:
        info = zipfile.ZipInfo.from_file(path, arcname, strict_timestamps=False)
        head = handle.read(SAMPLE)
        info.compress_type = _compress_type(path, head)
        info._compresslevel = 1  # fast deflate; what matters here is throughput
        with archive.open(info, "w") as entry:
            chunk = head
            while chunk:
                entry.write(chunk)
                yield from sink.drain()
                chunk = handle.read(CHUNK)
    yield from sink.drain()
