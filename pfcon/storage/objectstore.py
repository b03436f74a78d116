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
from pathlib import Path, PurePosixPath
from typing import Any

from pfcon.errors import InvalidInput
from pfcon.storage.base import InputRequest, JobDirs, ListingOutput, StagedInput
from pfcon.storage.innetwork import InNetworkStorage, output_files
from pfcon.storage.links import LinkPolicy, count_data_files, resolve_links
from pfcon.storebase import INCOMING, OUTGOING, StoreBase, safe_relative

log = logging.getLogger(__name__)

UPLOAD_LOCK = ".upload.lock"
HASH_CHUNK = 1024 * 1024
#: The longest object name S3 and Swift accept, in UTF-8 bytes
MAX_KEY_BYTES = 1024


class ObjectMissing(Exception):
    """The object (or container, bucket) asked for is not in the store."""


@dataclass(frozen=True)
class StoredObject:
    """One object as a listing shows it; ``etag`` without quotes (an MD5, or S3's ``md5-N``)."""

    name: str
    size: int
    etag: str = ""


#: A download (object, local file) or an upload (local file, key)
Download = tuple[StoredObject, Path]
Upload = tuple[Path, str]


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
    def download_all(self, downloads: Iterable[Download]) -> None:
        """Stream each object to its file (whose folder exists), a bounded number at a time.

        A file that cannot be written because a folder of its name is there (or a file where
        its folder should be) is a 400 (:func:`fetching`).
        """

    @abstractmethod
    def upload_all(self, uploads: Iterable[Upload]) -> None:
        """Stream each file to its key, a bounded number at a time."""

    def part_size(self, size: int) -> int | None:
        """The part size a file of ``size`` bytes is uploaded in; None: one part (single PUT)."""
        return None

    def has_prefix(self, prefix: str) -> bool:
        return next(iter(self.objects(prefix)), None) is not None

    def holds_copy(self, obj: StoredObject, path: Path, size: int) -> bool:
        """Whether ``obj`` already holds the bytes of the local file ``path`` (size, then checksum).

        The checksum is what the store lists: the MD5 of the object, or S3's multipart form,
        the MD5 of the parts' MD5s followed by ``-N``, which only matches when the parts were
        the size this store uploads in (else the file is uploaded again: slower, never wrong).
        """
        if obj.size != size:
            return False
        return obj.etag == local_etag(path, self.part_size(size) if "-" in obj.etag else None)


def local_etag(path: Path, part_size: int | None) -> str:
    """The ETag an object store gives ``path``'s bytes: an MD5, or the multipart form."""
    with path.open("rb") as data:
        if part_size is None:
            return hashlib.file_digest(data, _md5).hexdigest()
        digests: list[bytes] = []
        while True:
            part, remaining = _md5(), part_size
            while remaining and (chunk := data.read(min(HASH_CHUNK, remaining))):
                part.update(chunk)
                remaining -= len(chunk)
            if remaining == part_size:  # nothing left
                break
            digests.append(part.digest())
    return f"{_md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def storable(target: PurePosixPath, files: list[str]) -> list[str]:
    """The output files whose object name fits the store; the others are left out, with a warning.

    A job may write paths longer than any object name can be: uploading one would fail the
    listing call for good, so it is neither uploaded nor listed.
    """
    prefix = len(target.as_posix().encode()) + 1
    fits = [rel for rel in files if prefix + len(rel.encode("utf-8", "surrogateescape")) <= MAX_KEY_BYTES]
    if len(fits) < len(files):
        log.warning(
            "%d output files under %s have paths too long for an object name; not uploaded",
            len(files) - len(fits),
            target,
        )
    return fits


def _md5(data: bytes = b"") -> Any:
    return hashlib.md5(data, usedforsecurity=False)


#: what writing a file where a folder is (or under a file) raises
CLASHES = (FileExistsError, NotADirectoryError, IsADirectoryError)


def clash(name: str) -> InvalidInput:
    """Two objects that land on one path (``x`` and ``x/y``, or ``a//b`` and ``a/b``)."""
    return InvalidInput(f"object {name!r} clashes with another object of the same path")


@contextlib.contextmanager
def fetching(name: str) -> Iterator[None]:
    """A download of ``name``: an object gone meanwhile, or clashing with another, is a 400."""
    try:
        yield
    except ObjectMissing:
        raise InvalidInput(f"object {name!r} is not in the store any more (deleted while staging?)") from None
    except CLASHES:
        raise clash(name) from None


@dataclass(frozen=True)
class ObjectTree:
    """An object store as a source of link targets (names are object prefixes)."""

    store: ObjectStore

    def locate(self, relative: str, what: str) -> PurePosixPath:
        return safe_relative(relative, what)

    def kind(self, target: PurePosixPath) -> str | None:
        key = target.as_posix()
        if self.store.head(key) is not None:
            return "file"
        return "dir" if self.store.has_prefix(key + "/") else None

    def fetch_file(self, target: PurePosixPath, dest: Path) -> None:
        obj = self.store.head(target.as_posix())
        if obj is None:
            raise InvalidInput(f"object {target.as_posix()!r} is gone (deleted while staging?)")
        self.store.download_all([(obj, dest)])

    def fetch_tree(self, target: PurePosixPath, dest: Path) -> None:
        download_prefix(self.store, target, dest)


def download_prefix(store: ObjectStore, prefix: PurePosixPath, dest: Path) -> int:
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
            yield obj, target

    store.download_all(downloads())
    return count


class ObjectStoreStorage(InNetworkStorage):
    """Base of swift and s3: stage from the store, upload the output on the listing call."""

    def __init__(self, storebase: StoreBase, store: ObjectStore) -> None:
        super().__init__(storebase)
        self.store = store

    def job_dirs(self, jid: str, request: InputRequest) -> JobDirs:
        self.requested_dirs(request)
        key = self.storebase.job_key(jid)
        return JobDirs(input=f"{key}/{INCOMING}", output=f"{key}/{OUTGOING}")

    def stage_input(self, jid: str, request: InputRequest, dirs: JobDirs) -> StagedInput:
        inputs, output = self.requested_dirs(request)
        incoming = self.storebase.root / dirs.input
        incoming.mkdir()
        (self.storebase.root / dirs.output).mkdir()
        for prefix in inputs:
            download_prefix(self.store, prefix, incoming)
        policy = LinkPolicy(source=ObjectTree(self.store), forbidden=(output,))
        resolve_links(incoming, policy, origins=inputs)
        self.remember_output(jid, output)
        return StagedInput(nfiles=count_data_files(incoming), path=str(incoming))

    def output(self, jid: str, job_output_path: str | None) -> ListingOutput:
        target = self.listing_target(jid, job_output_path)
        outgoing = self.storebase.outgoing(jid)
        # One upload per job at a time, across threads and worker processes: two listing calls
        # racing would otherwise both see a file missing and both upload it.
        with open(self.storebase.job_dir(jid) / UPLOAD_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            files = storable(target, output_files(outgoing))
            self.upload_new(outgoing, target, files)
        return self.listing(job_output_path or "", files)

    def upload_new(self, outgoing: Path, target: PurePosixPath, files: list[str]) -> None:
        """Upload the files the store does not already hold, byte for byte (nothing twice)."""
        prefix = target.as_posix() + "/"
        present = {obj.name: obj for obj in self.store.objects(prefix)}

        def uploads() -> Iterator[Upload]:
            for rel in files:
                path, key = outgoing / rel, prefix + rel
                there = present.get(key)
                if there is None or not self.store.holds_copy(there, path, os.stat(path).st_size):
                    yield path, key

        pending = uploads()
        first = next(pending, None)
        if first is None:
            return
        self.store.ensure_container()
        self.store.upload_all(itertools.chain([first], pending))

    def ping(self) -> str:
        local = super().ping()
        self.store.ping()
        return f"{local}; {self.store.label}"
