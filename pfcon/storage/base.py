"""The storage interface: stage a job's input, deliver its output, clean up.

The same three verbs for every STORAGE_ENV; a strategy is chosen once at start-up. Paths a
storage hands back are storeBase-relative (what the compute side turns into mounts).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from pfcon.errors import StorageUnavailable
from pfcon.settings import LinkLimits
from pfcon.storebase import StoreBase


@dataclass(frozen=True)
class InputRequest:
    """What a submission says about its data (the same meaning for every storage)."""

    upload: IO[bytes] | None = None
    input_dirs: tuple[str, ...] = ()
    output_dir: str | None = None


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
    """A STORAGE_ENV strategy."""

    name = "abstract"

    def __init__(self, storebase: StoreBase, link_limits: LinkLimits | None = None) -> None:
        self.storebase = storebase
        self.link_limits = link_limits or LinkLimits()

    @abstractmethod
    def job_dirs(self, jid: str, request: InputRequest) -> JobDirs:
        """Check the request and say where input and output will live; writes nothing."""

    @abstractmethod
    def stage_input(self, jid: str, request: InputRequest, dirs: JobDirs) -> StagedInput:
        """Put the input in place under the claimed job folder."""

    @abstractmethod
    def output(self, jid: str, job_output_path: str | None) -> ZipOutput | ListingOutput:
        """Deliver the job's output; :class:`~pfcon.errors.JobNotFound` if its data is gone."""

    #: where an uploaded ``data_file`` is written while it arrives; ``None``: the part is read
    #: and dropped (in-network storages take no upload)
    upload_sink: Callable[[], IO[bytes]] | None = None

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
