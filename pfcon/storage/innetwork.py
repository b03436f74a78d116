"""What the in-network storages share: the input_dirs/output_dir rules and the listing.

With ``PFCON_INNETWORK=true`` the client names its data instead of sending it: ``input_dirs``
and ``output_dir`` are paths relative to storeBase (filesystem, fslink) or prefixes in the
Swift container or S3 bucket (swift, s3). Each is checked here before anything is written;
the output dir a job was given is kept in ``key-<jid>/innetwork.json`` so the output listing
can refuse any other ``job_output_path``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pfcon.errors import InvalidInput, JobNotFound
from pfcon.safetree import FILE, Entry, open_root, walk
from pfcon.settings import STATE_DIR
from pfcon.storage.base import InputRequest, JobDirs, ListingOutput, Storage
from pfcon.storage.links import LocalTree, is_link_file
from pfcon.storebase import (
    INCOMING,
    OUTGOING,
    UPLOADS_DIR,
    StoreBase,
    resolve_inside,
    safe_relative,
    write_atomically,
)

RECORD_NAME = "innetwork.json"

log = logging.getLogger(__name__)


def overlaps(a: PurePosixPath, b: PurePosixPath) -> bool:
    """Whether one of two folders is the other or inside it."""
    return a == b or a in b.parents or b in a.parents


def is_reserved(relative: PurePosixPath) -> bool:
    """pfcon's own folders in storeBase (job folders, uploads in progress, the job store).

    Compared case-insensitively: on a case-insensitive filesystem ``KEY-x`` is ``key-x``.
    """
    first = relative.parts[0].casefold() if relative.parts else ""
    return first in (UPLOADS_DIR.casefold(), STATE_DIR.casefold()) or first.startswith("key-")


class StoreBaseTree(LocalTree):
    """storeBase as a source of link targets: inside it, and never in pfcon's own folders."""

    def __init__(self, storebase: StoreBase) -> None:
        super().__init__(storebase.root)

    def locate(self, relative: str, what: str) -> Path:
        path = resolve_inside(self.root, relative, what)
        if is_reserved(PurePosixPath(path.relative_to(self.root.resolve()))):
            raise InvalidInput(f"{what}: {relative!r} is one of pfcon's own folders")
        return path


class InNetworkStorage(Storage):
    """Base of filesystem, fslink, swift and s3: request checks, the output record, listings."""

    # -- the submission ---------------------------------------------------------------------
    def requested_dirs(self, request: InputRequest) -> tuple[tuple[PurePosixPath, ...], PurePosixPath]:
        """``input_dirs`` and ``output_dir``, lexically safe, present and not overlapping."""
        if not request.input_dirs and request.inputs_required:
            raise InvalidInput("input_dirs: at least one is required with PFCON_INNETWORK=true")
        if not request.output_dir:
            raise InvalidInput("output_dir: field is required with PFCON_INNETWORK=true")
        # a folder named twice is staged once (dict: ordered, unique)
        inputs = tuple(dict.fromkeys(safe_relative(d, "input_dirs") for d in request.input_dirs))
        output = safe_relative(request.output_dir, "output_dir")
        for name in inputs:
            if overlaps(name, output):
                raise InvalidInput(f"input_dirs: {name} and output_dir {output} overlap")
        return inputs, output

    def storebase_dir(self, relative: PurePosixPath, what: str, must_exist: bool) -> PurePosixPath:
        """A folder under storeBase, symlinks resolved, outside pfcon's own folders."""
        path = resolve_inside(self.storebase.root, relative.as_posix(), what)
        resolved = PurePosixPath(path.relative_to(self.storebase.root.resolve()))
        if not resolved.parts or is_reserved(resolved):
            raise InvalidInput(f"{what}: {relative} is storeBase itself or one of pfcon's own folders")
        if must_exist and not path.is_dir():
            raise InvalidInput(f"{what}: {relative} is not a folder in storeBase")
        if not must_exist and path.exists() and not path.is_dir():
            raise InvalidInput(f"{what}: {relative} exists and is not a folder")
        return resolved

    @staticmethod
    def make_output_dir(path: Path) -> bool:
        """Create the job's output folder; False if the client named one that exists."""
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            return False
        return True

    def remember_output(self, jid: str, output_dir: PurePosixPath) -> None:
        write_atomically(
            self.storebase.job_dir(jid) / RECORD_NAME, json.dumps({"output_dir": output_dir.as_posix()})
        )

    def remembered_output(self, jid: str) -> PurePosixPath:
        """The output dir the job's input was staged for; :class:`JobNotFound` if none was."""
        record = self.storebase.job_dir(jid) / RECORD_NAME
        try:
            return PurePosixPath(json.loads(record.read_text())["output_dir"])
        except (FileNotFoundError, NotADirectoryError):
            raise JobNotFound(f"job {jid!r} has no staged data") from None

    def staged_dirs(self, jid: str, output_dir: str | None) -> JobDirs:
        """The copy operation's input folder, and the output it was staged for."""
        if not output_dir:
            raise InvalidInput("output_dir: field is required with PFCON_INNETWORK=true")
        staged_for = self.remembered_output(jid)
        if safe_relative(output_dir, "output_dir") != staged_for:
            raise InvalidInput(
                f"output_dir: {output_dir!r} is not the output_dir {staged_for} of the job's copy job"
            )
        key = self.storebase.job_key(jid)
        return JobDirs(input=f"{key}/{INCOMING}", output=self.output_dir_of(jid, staged_for))

    def owns_output_path(self, jid: str, job_output_path: str) -> bool:
        try:
            return safe_relative(job_output_path, "job_output_path") == self.remembered_output(jid)
        except (InvalidInput, JobNotFound):
            return False

    def output_dir_of(self, jid: str, output_dir: PurePosixPath) -> str:
        """The storeBase-relative folder mounted at /share/outgoing for a staged job."""
        return f"{self.storebase.job_key(jid)}/{OUTGOING}"

    # -- the output -------------------------------------------------------------------------
    def listing_target(self, jid: str, job_output_path: str | None) -> PurePosixPath:
        """The job's own output dir, if ``job_output_path`` names it; else 400 (404: no job)."""
        try:
            output_dir = self.remembered_output(jid)
        except JobNotFound:
            raise JobNotFound(f"job {jid!r} has no output data") from None
        if job_output_path is None:
            raise InvalidInput("job_output_path: query parameter is required with PFCON_INNETWORK=true")
        requested = safe_relative(job_output_path, "job_output_path")
        if requested != output_dir:
            raise InvalidInput(f"job_output_path: {job_output_path!r} is not this job's output_dir")
        return requested

    def list_in_place(self, jid: str, job_output_path: str | None) -> ListingOutput:
        """List the job's output dir where it lies in storeBase (filesystem, fslink)."""
        target = self.listing_target(jid, job_output_path)
        folder = self.storebase.root / self.storebase_dir(target, "job_output_path", must_exist=False)
        files = output_files(folder)
        return self.listing(job_output_path or "", files)

    def listing(self, job_output_path: str, rel_file_paths: list[str]) -> ListingOutput:
        return ListingOutput({"job_output_path": job_output_path, "rel_file_paths": rel_file_paths})


def output_files(root: Path) -> list[str]:
    """Relative paths of the regular files a job wrote under ``root``, sorted.

    Read through :mod:`pfcon.safetree` (no link followed, any depth up to its bound); a name
    that is not UTF-8 is renamed on disk to its Latin-1 reading, so the listed path is the
    path a client opens in storeBase.
    """
    try:
        fd = open_root(root)
    except FileNotFoundError:  # the job has not made it (yet)
        return []
    try:
        found = [entry.path for entry in data_files(fd, rename=True)]
    finally:
        os.close(fd)
    found.sort()
    return found


def data_files(root_fd: int, rename: bool = False) -> Iterator[Entry]:
    """The regular files under an output's root, link files removed as they are met.

    A job may not plant a ``.chrislink`` that a later staging would follow (into data its
    owner cannot otherwise read). Shared by every in-network storage's listing and upload.
    """
    for entry in walk(root_fd, rename=rename):
        if entry.kind != FILE:
            continue
        if is_link_file(entry.parts[-1]):
            log.warning("removing link file %s written by a job into its output", entry.path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.name, dir_fd=entry.dir_fd)
            continue
        yield entry
