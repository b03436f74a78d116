"""What the object-store storages (swift, s3) share: staging from a store, uploading to it.

Input objects under each ``input_dirs`` prefix are downloaded into ``key-<jid>/incoming``
(link objects followed, see :mod:`pfcon.storage.links`); the job writes ``key-<jid>/outgoing``;
the output listing call first uploads that folder under ``job_output_path``, skipping objects
already there with the same size and checksum, so a repeated call uploads nothing twice.
An :class:`ObjectStore` is one container or bucket behind one client library; everything
above it — key rules, link resolution, the listing — is the same code for every store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from pfcon.errors import InvalidInput
from pfcon.safetree import open_regular, open_root
from pfcon.settings import LinkLimits
from pfcon.storage.base import InputRequest, JobDirs, ListingOutput, Progress, StagedInput
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
from pfcon.storebase import INCOMING, OUTGOING, StoreBase, safe_relative

log = logging.getLogger(__name__)

UPLOAD_LOCK = ".upload.lock"
HASH_CHUNK = 1024 * 1024
#: The longest object name S3 and Swift accept, in UTF-8 bytes
MAX_KEY_BYTES = 1024


class ObjectMissing(Exception):
    """The object (or container, bucket) asked for is not in the store."""


UNKNOWN_SIZE = -1


@dataclass(frozen=True)
class StoredObject:
    """One object as a listing shows it; ``etag`` without quotes (an MD5, or S3's ``md5-N``)."""

    name: str
    size: int
    etag: str = ""


@dataclass(frozen=True)
class LocalFile:
    """A regular file of a job's output, opened without following a link; its upload closes ``fd``."""

    fd: int
    size: int

    @property
    def fd_path(self) -> str:
        """A name for exactly this open file (no rename or swapped link can redirect it)."""
        return f"/proc/self/fd/{self.fd}"


#: A download (object, local file) or an upload (local file, key)
Download = tuple[StoredObject, Path]
Upload = tuple[LocalFile, str]


class ObjectStore(ABC):
    """One container (Swift) or bucket (S3); every library error leaves as a domain error.

    A missing object is ``None``/``False``/an empty listing; any other failure of the service
    (refused connection, timeout, 5xx, refused credentials) is
    :class:`~pfcon.errors.StorageUnavailable` with a message — a 503, never a 500.
    """

    #: how messages name the service, e.g. "Swift container 'users' at http://…"
    label = "object store"

    @abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the service answers with these credentials."""

    @abstractmethod
    def objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose name starts with ``prefix``, page by page (no full list in memory)."""

    @abstractmethod
    def head(self, key: str) -> StoredObject | None:
        """The object ``key``, or None if there is none."""

    @abstractmethod
    def ensure_container(self) -> None:
        """Create the container or bucket unless it exists."""

    @abstractmethod
    def read_small(self, key: str, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of an object (enough to tell it is over ``limit``)."""

    @abstractmethod
    def download_all(self, downloads: Iterable[Download], exclusive: bool = False) -> None:
        """Stream each object to its file (whose folder exists), a bounded number at a time.

        A file that cannot be written because a folder of its name is there (or a file where
        its folder should be) is a 400 (:func:`fetching`). With ``exclusive`` (link copies) an
        existing file is never overwritten and the raw ``OSError`` is raised instead, for the
        link resolver to name the taken path.
        """

    @abstractmethod
    def upload_all(self, uploads: Iterable[Upload]) -> None:
        """Stream each file to its key, a bounded number at a time, and close it.

        Every file taken from ``uploads`` is closed, whatever happens to its upload.
        """

    def part_size(self, size: int) -> int | None:
        """The part size a file of ``size`` bytes is uploaded in; None: one part (single PUT)."""
        return None

    def has_prefix(self, prefix: str) -> bool:
        return next(iter(self.objects(prefix)), None) is not None

    def holds_copy(self, obj: StoredObject, local: LocalFile) -> bool:
        """Whether ``obj`` already holds the bytes of ``local`` (size, then checksum).

        The checksum is what the store lists: the MD5 of the object, or S3's multipart form,
        the MD5 of the parts' MD5s followed by ``-N``, which only matches when the parts were
        the size this store uploads in (else the file is uploaded again: slower, never wrong).
        """
        if obj.size != local.size:
            return False
        return obj.etag == local_etag(local.fd, self.part_size(local.size) if "-" in obj.etag else None)


def local_etag(source: Path | int, part_size: int | None) -> str:
    """The ETag an object store gives these bytes: an MD5, or the multipart form.

    ``source`` is a path or an open descriptor; a descriptor is read with ``pread`` from its
    start, its offset left where it was (its upload reads it next).
    """
    if isinstance(source, Path):
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return local_etag(fd, part_size)
        finally:
            os.close(fd)
    whole, part, digests = _md5(), _md5(), []
    offset = in_part = 0
    step = HASH_CHUNK if part_size is None else min(HASH_CHUNK, part_size)
    while chunk := os.pread(source, step if part_size is None else min(step, part_size - in_part), offset):
        offset += len(chunk)
        if part_size is None:
            whole.update(chunk)
            continue
        part.update(chunk)
        in_part += len(chunk)
        if in_part == part_size:
            digests.append(part.digest())
            part, in_part = _md5(), 0
    if part_size is None:
        return whole.hexdigest()
    if in_part:
        digests.append(part.digest())
    return f"{_md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def _md5(data: bytes = b"") -> Any:
    return hashlib.md5(data, usedforsecurity=False)


#: what writing a file where a folder is (or under a file) raises
CLASHES = (FileExistsError, NotADirectoryError, IsADirectoryError)


def clash(name: str) -> InvalidInput:
    """Two objects that land on one path (``x`` and ``x/y``, or ``a//b`` and ``a/b``)."""
    return InvalidInput(f"object {name!r} clashes with another object of the same path")


@contextlib.contextmanager
def fetching(name: str, clashes: bool = True) -> Iterator[None]:
    """A download of ``name``: an object gone meanwhile is a 400; one clashing with another
    too, unless ``clashes`` is False (the caller reports the ``OSError`` itself)."""
    try:
        yield
    except ObjectMissing:
        raise InvalidInput(f"object {name!r} is not in the store any more (deleted while staging?)") from None
    except CLASHES:
        if not clashes:
            raise
        raise clash(name) from None


@contextlib.contextmanager
def closed_on_error(fd: int) -> Iterator[None]:
    """Close ``fd`` if the block fails (it would otherwise have been handed on to an upload)."""
    try:
        yield
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True)
class ObjectTree:
    """An object store as a source of link targets (names are object prefixes)."""

    store: ObjectStore

    def locate(self, relative: str, what: str) -> PurePosixPath:
        return safe_relative(relative, what)

    def look(self, target: PurePosixPath) -> Found | None:
        key = target.as_posix()
        obj = self.store.head(key)
        if obj is not None:
            return Found("file", obj.size)
        return Found("dir") if self.store.has_prefix(key + "/") else None

    def files(self, folder: PurePosixPath) -> Iterator[SourceFile]:
        start = folder.as_posix() + "/"
        for obj in self.store.objects(start):
            if not obj.name.endswith("/"):  # a pseudo-folder marker, no data
                relative = safe_relative(obj.name[len(start) :], f"object {obj.name!r}")
                yield SourceFile(relative.as_posix(), obj.size)

    def read_link(self, target: PurePosixPath) -> str:
        return decode_link(self.store.read_small(target.as_posix(), MAX_LINK_BYTES), target.name)

    def fetch(self, pairs: Iterable[tuple[PurePath, Path]]) -> None:
        def downloads() -> Iterator[Download]:
            for source, dest in pairs:
                dest.parent.mkdir(parents=True, exist_ok=True)
                yield StoredObject(PurePosixPath(source).as_posix(), UNKNOWN_SIZE), dest

        self.store.download_all(downloads(), exclusive=True)


def download_prefix(
    store: ObjectStore, prefix: PurePosixPath, dest: Path, progress: Progress | None = None
) -> int:
    """Download every object under ``prefix/`` into ``dest``, keeping the names below the prefix.

    Each object name is checked like a client path: one named ``a/../../x`` is refused
    before anything is written for it. Folders are made here, one walk ahead of the
    transfers, so a file and a folder of one name clash here. Returns the number of objects.
    """
    start = prefix.as_posix() + "/"
    count = 0
    made: set[Path] = set()

    def downloads() -> Iterator[Download]:
        nonlocal count
        for obj in store.objects(start):
            if obj.name.endswith("/"):  # a pseudo-folder marker, no data
                continue
            target = dest / safe_relative(obj.name[len(start) :], f"object {obj.name!r}")
            if target.parent not in made:
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except CLASHES:
                    raise clash(obj.name) from None
                made.add(target.parent)
            count += 1
            if progress is not None:
                progress.add(obj.size)
            yield obj, target

    store.download_all(downloads())
    return count


class ObjectStoreStorage(InNetworkStorage):
    """Base of swift and s3: stage from the store, upload the output on the listing call.

    Both of pfcon 6's operations do work here: the copy job stages the input, the upload job
    sends the output (the classic API does the same on its submit and its listing call).
    """

    copies_input = True
    uploads_output = True

    def __init__(
        self, storebase: StoreBase, store: ObjectStore, link_limits: LinkLimits | None = None
    ) -> None:
        super().__init__(storebase, link_limits)
        self.store = store

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
            download_prefix(self.store, prefix, incoming, progress)
        policy = LinkPolicy(source=ObjectTree(self.store), forbidden=(output,), limits=self.link_limits)
        resolve_links(incoming, policy, origins=inputs)
        self.remember_output(jid, output)
        return StagedInput(nfiles=count_data_files(incoming), path=str(incoming))

    def output(self, jid: str, job_output_path: str | None) -> ListingOutput:
        files, _kept = self._upload(jid, job_output_path, None)
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
            try:
                root_fd = open_root(outgoing)
            except FileNotFoundError:  # the job has not made it
                return [], 0
            try:
                return self.upload_new(root_fd, target, progress)
            finally:
                os.close(root_fd)

    def upload_new(
        self, root_fd: int, target: PurePosixPath, progress: Progress | None = None
    ) -> tuple[list[str], int]:
        """Upload the files the store does not already hold, byte for byte (nothing twice).

        Walks the output with :mod:`pfcon.safetree` (fd-relative, no link followed); each file
        is opened while the walk is on it and uploaded from that descriptor. A path too long
        for an object name (a job can write any depth) is left out with a warning: uploading
        it would fail every listing call. Returns the sorted paths of the files in the store and
        how many of them were there already (sent before, e.g. by an interrupted upload).
        """
        prefix = target.as_posix() + "/"
        present = {obj.name: obj for obj in self.store.objects(prefix)}
        files: list[str] = []
        too_long = kept = 0

        def uploads() -> Iterator[Upload]:
            nonlocal too_long, kept
            for entry in data_files(root_fd):
                key = prefix + entry.path
                if len(key.encode()) > MAX_KEY_BYTES:
                    too_long += 1
                    continue
                opened = open_regular(entry.dir_fd, entry.name)
                if opened is None:
                    continue
                local = LocalFile(opened[0], opened[1].st_size)
                files.append(entry.path)
                there = present.get(key)
                with closed_on_error(local.fd):
                    same = there is not None and self.store.holds_copy(there, local)
                if same:
                    os.close(local.fd)
                    kept += 1
                    continue
                if progress is not None:
                    progress.add(local.size)  # counted as it is handed to the transfer pool
                yield local, key

        pending = uploads()
        first = next(pending, None)
        if first is not None:
            with closed_on_error(first[0].fd):
                self.store.ensure_container()
            self.store.upload_all(itertools.chain([first], pending))
        if too_long:
            log.warning(
                "%d output files under %s: paths too long for an object name, not uploaded", too_long, target
            )
        files.sort()
        return files, kept

    def ping(self) -> str:
        local = super().ping()
        self.store.ping()
        return f"{local}; {self.store.label}"
