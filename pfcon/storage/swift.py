"""In-network storage in OpenStack Swift (STORAGE_ENV=swift).

Input objects under each ``input_dirs`` prefix are downloaded into ``key-<jid>/incoming``
(link objects followed, see :mod:`pfcon.storage.links`); the job writes ``key-<jid>/outgoing``;
the output listing call first uploads that folder to Swift under ``job_output_path``, skipping
objects already there with the same size, so a repeated call uploads nothing twice. Transfers
are streamed and run a bounded number at a time.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, BinaryIO

from pfcon.errors import InvalidInput
from pfcon.safetree import open_regular, open_root
from pfcon.settings import LinkLimits, SwiftSettings
from pfcon.storage.base import InputRequest, JobDirs, ListingOutput, Progress, StagedInput
from pfcon.storage.copying import COPY_WORKERS, bounded_each
from pfcon.storage.innetwork import InNetworkStorage, data_files
from pfcon.storage.links import (
    MAX_LINK_BYTES,
    Found,
    LinkPolicy,
    SourceFile,
    count_data_files,
    decode_link,
    resolve_links,
)
from pfcon.storage.swiftstore import SwiftContainer
from pfcon.storebase import INCOMING, OUTGOING, StoreBase, safe_relative

UPLOAD_LOCK = ".upload.lock"


@dataclass(frozen=True)
class SwiftTree:
    """The Swift container as a source of link targets (names are object prefixes)."""

    swift: SwiftContainer

    def locate(self, relative: str, what: str) -> PurePosixPath:
        return safe_relative(relative, what)

    def look(self, target: PurePosixPath) -> Found | None:
        key = target.as_posix()
        size = self.swift.size(key)
        if size is not None:
            return Found("file", size)
        return Found("dir") if self.swift.has_prefix(key + "/") else None

    def files(self, folder: PurePosixPath) -> Iterator[SourceFile]:
        start = folder.as_posix() + "/"
        for obj in self.swift.objects(start):
            name = obj["name"]
            if not name.endswith("/"):  # a pseudo-folder marker, no data
                relative = safe_relative(name[len(start) :], f"object {name!r}")
                yield SourceFile(relative.as_posix(), int(obj["bytes"]))

    def read_link(self, target: PurePosixPath) -> str:
        return decode_link(self.swift.read_small(target.as_posix(), MAX_LINK_BYTES), target.name)

    def fetch(self, pairs: Iterable[tuple[PurePath, Path]]) -> None:
        def one(pair: tuple[PurePath, Path]) -> None:
            self.swift.download(PurePosixPath(pair[0]).as_posix(), pair[1], exclusive=True)

        bounded_each(one, pairs, COPY_WORKERS)


def download_prefix(
    swift: SwiftContainer, prefix: PurePosixPath, dest: Path, progress: Progress | None = None
) -> int:
    """Download every object under ``prefix/`` into ``dest``, keeping the names below the prefix.

    Each object name is checked like a client path: one named ``a/../../x`` is refused
    before anything is written for it. Returns the number of objects.
    """
    start = prefix.as_posix() + "/"
    count = 0

    def pairs():
        nonlocal count
        for obj in swift.objects(start):
            name = obj["name"]
            if name.endswith("/"):  # a pseudo-folder marker, no data
                continue
            relative = safe_relative(name[len(start) :], f"object {name!r}")
            count += 1
            if progress is not None:
                progress.add(obj.get("bytes", 0))
            yield name, dest / relative

    bounded_each(lambda pair: _fetch(swift, *pair), pairs(), COPY_WORKERS)
    return count


def _fetch(swift: SwiftContainer, name: str, dest: Path) -> None:
    try:
        swift.download(name, dest)
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise InvalidInput(f"object {name!r} clashes with another object of the same path") from None


class SwiftStorage(InNetworkStorage):
    name = "swift"
    copies_input = True
    uploads_output = True

    def __init__(
        self, storebase: StoreBase, settings: SwiftSettings, link_limits: LinkLimits | None = None
    ) -> None:
        super().__init__(storebase, link_limits)
        self.settings = settings
        self.swift = SwiftContainer(settings)

    def job_dirs(self, jid: str, request: InputRequest) -> JobDirs:
        self.requested_dirs(request)
        key = self.storebase.job_key(jid)
        return JobDirs(input=f"{key}/{INCOMING}", output=f"{key}/{OUTGOING}")

    def stage_input(
        self, jid: str, request: InputRequest, dirs: JobDirs, progress: Progress | None = None
    ) -> StagedInput:
        inputs, output = self.requested_dirs(request)
        incoming = self.storebase.root / dirs.input
        incoming.mkdir()
        (self.storebase.root / dirs.output).mkdir()
        for prefix in inputs:
            download_prefix(self.swift, prefix, incoming, progress)
        policy = LinkPolicy(source=SwiftTree(self.swift), forbidden=(output,), limits=self.link_limits)
        resolve_links(incoming, policy, origins=inputs)
        self.remember_output(jid, output)
        return StagedInput(nfiles=count_data_files(incoming), path=str(incoming))

    def output(self, jid: str, job_output_path: str | None) -> ListingOutput:
        files, _present = self._upload(jid, job_output_path, None)
        return self.listing(job_output_path or "", files)

    def upload_output(self, jid: str, job_output_path: str, progress: Progress | None = None) -> int:
        return self._upload(jid, job_output_path, progress)[1]

    def _upload(
        self, jid: str, job_output_path: str | None, progress: Progress | None
    ) -> tuple[list[str], int]:
        """Upload what is missing; returns every output file and how many were already there."""
        target = self.listing_target(jid, job_output_path)
        outgoing = self.storebase.outgoing(jid)
        # One upload per job at a time, across threads and worker processes: two listing calls
        # racing would otherwise both see a file missing and both upload it.
        with open(self.storebase.job_dir(jid) / UPLOAD_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            root_fd = open_root(outgoing)
            try:
                return self._upload_new(root_fd, target, progress)
            finally:
                os.close(root_fd)

    def _upload_new(
        self, root_fd: int, target: PurePosixPath, progress: Progress | None
    ) -> tuple[list[str], int]:
        """Upload the files not already in Swift with the same size (nothing twice); list all.

        Each file is opened fd-relative without following links while the walk is on it, and
        uploaded from that descriptor by the thread pool.
        """
        prefix = target.as_posix() + "/"
        present = {obj["name"]: obj["bytes"] for obj in self.swift.objects(prefix)}
        files: list[str] = []
        container_ready = False
        kept = 0

        def todo() -> Iterator[tuple[str, BinaryIO, int]]:
            nonlocal container_ready, kept
            for entry in data_files(root_fd):
                opened = open_regular(entry.dir_fd, entry.name)
                if opened is None:
                    continue
                fd, info = opened
                files.append(entry.path)
                if present.get(prefix + entry.path) == info.st_size:
                    os.close(fd)
                    kept += 1
                    continue
                if not container_ready:
                    self.swift.ensure_container()
                    container_ready = True
                yield prefix + entry.path, open(fd, "rb"), info.st_size  # noqa: SIM115 - closed by upload

        def send(item: tuple[str, BinaryIO, int]) -> None:
            self.swift.upload(*item)
            if progress is not None:
                progress.add(item[2])

        bounded_each(send, todo(), COPY_WORKERS)
        files.sort()
        return files, kept

    def info(self) -> dict[str, Any]:
        return {"swift_auth_url": self.settings.auth_url}

    def ping(self) -> str:
        local = super().ping()
        self.swift.ping()
        return f"{local}; Swift container {self.settings.container_name!r} at {self.settings.auth_url}"
