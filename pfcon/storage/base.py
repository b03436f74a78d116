"""The storage interface: stage a job's input, deliver its output, clean up.

The same three verbs for every STORAGE_ENV; a strategy is chosen once at start-up. Paths a
storage hands back are storeBase-relative (what the compute side turns into mounts).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from pfcon.errors import JobNotFound, StorageUnavailable
from pfcon.settings import LinkLimits
from pfcon.storage.zipstream import stream_zip
from pfcon.storebase import StoreBase


@dataclass(frozen=True)
class InputRequest:
    """What a submission says about its data (the same meaning for every storage).

    ``inputs_required`` is False for pfcon 6's copy job, where a plugin without inputs
    sends no ``input_dirs`` and gets an empty input folder.
    """

    upload: IO[bytes] | None = None
    input_dirs: tuple[str, ...] = ()
    output_dir: str | None = None
    inputs_required: bool = True


class Progress:
    """Counts files and bytes as a transfer runs, for an operation's human-readable log.

    Transfer code calls :meth:`add` from its worker threads; the operation reads the
    counters while it runs. A storage that cannot count bytes counts files only.
    """

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def add(self, nbytes: int = 0) -> None:
        with self._lock:
            self.files += 1
            self.bytes += nbytes


@dataclass(frozen=True)
class JobDirs:
    """storeBase-relative folders mounted at /share/incoming and /share/outgoing."""

    input: str
    output: str


@dataclass(frozen=True)
class StagedInput:
    """What was staged: the ``data`` part of the submit answer."""

    nfiles: int
    path: str
    output_created: bool = True  # False: the client named an existing folder; its mode is kept


@dataclass(frozen=True)
class ZipOutput:
    """The job's output as a zip streamed while it is written."""

    filename: str
    chunks: Iterator[bytes]


@dataclass(frozen=True)
class ListingOutput:
    """The job's output as a JSON listing (in-network storages)."""

    body: Mapping[str, Any] = field(default_factory=dict)


class Storage(ABC):
    """A STORAGE_ENV strategy.

    ``copies_input`` and ``uploads_output`` say which of pfcon 6's copy and upload
    operations do work in this storage (they are ``requires_copy_job`` and
    ``requires_upload_job`` of its server info); elsewhere they are recorded as skipped.
    """

    name = "abstract"
    copies_input = False
    uploads_output = False

    def __init__(self, storebase: StoreBase, link_limits: LinkLimits | None = None) -> None:
        self.storebase = storebase
        self.link_limits = link_limits or LinkLimits()

    @abstractmethod
    def job_dirs(self, jid: str, request: InputRequest) -> JobDirs:
        """Check the request and say where input and output will live; writes nothing."""

    @abstractmethod
    def stage_input(
        self, jid: str, request: InputRequest, dirs: JobDirs, progress: Progress | None = None
    ) -> StagedInput:
        """Put the input in place under the claimed job folder, counting into ``progress``."""

    def staged_dirs(self, jid: str, output_dir: str | None) -> JobDirs:
        """Where a job's input already staged by a copy operation lies (``copies_input`` only).

        ``output_dir`` is what the plugin submission names; it must be the copy's.
        """
        raise NotImplementedError(f"{self.name} storage stages input with the job itself")

    def upload_output(self, jid: str, job_output_path: str, progress: Progress | None = None) -> int:
        """Deliver the job's output to ``job_output_path`` (``uploads_output`` only).

        Returns how many files were already there (sent before, e.g. by an upload
        that was interrupted and is redone).
        """
        raise NotImplementedError(f"{self.name} storage has nothing to upload")

    @abstractmethod
    def output(self, jid: str, job_output_path: str | None) -> ZipOutput | ListingOutput:
        """Deliver the job's output; :class:`~pfcon.errors.JobNotFound` if its data is gone."""

    #: where an uploaded ``data_file`` is written while it arrives; ``None``: the part is read
    #: and dropped (in-network storages take no upload)
    upload_sink: Callable[[], IO[bytes]] | None = None

    def owns_output_path(self, jid: str, job_output_path: str) -> bool:
        """Whether ``job_output_path`` names the job's output (in-network storages check it)."""
        return True

    def zip_output(self, jid: str) -> ZipOutput:
        """The job's ``outgoing`` folder as a streamed ``<jid>.zip``; 404 when it is gone."""
        try:  # opened here, before the 200: a job deleted meanwhile is a 404
            chunks = stream_zip(self.storebase.outgoing(jid))
        except (FileNotFoundError, NotADirectoryError):
            raise JobNotFound(f"job {jid!r} has no output data") from None
        return ZipOutput(filename=f"{jid}.zip", chunks=chunks)

    def delete(self, jid: str) -> bool:
        """Remove the job's data under storeBase; returns whether there was any."""
        return self.storebase.remove_job(jid)

    def info(self) -> dict[str, Any]:
        """Extra fields for ``GET jobs/`` (e.g. ``swift_auth_url``)."""
        return {}

    def ping(self) -> str:
        """Raise :class:`~pfcon.errors.StorageUnavailable` unless the storage answers."""
        if not self.storebase.root.is_dir():
            raise StorageUnavailable(f"storeBase {self.storebase.root} is not a folder")
        return f"{self.name} at {self.storebase.root}"
