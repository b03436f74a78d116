"""Out-of-network storage: the input comes as a zip upload, the output leaves as a zip.

Input is extracted into ``key-<jid>/incoming`` (see :mod:`pfcon.storage.unzip` for the
limits), link files in it resolve only to the job's own input; the output is
``key-<jid>/outgoing``, streamed back as ``<jid>.zip``.
"""

from __future__ import annotations

import uuid

from pfcon.errors import InvalidInput
from pfcon.settings import LinkLimits, ZipLimits
from pfcon.storage.base import InputRequest, JobDirs, Progress, StagedInput, Storage, ZipOutput
from pfcon.storage.links import LinkPolicy, count_data_files, resolve_links
from pfcon.storage.unzip import StreamingUnzip
from pfcon.storebase import INCOMING, OUTGOING, StoreBase


class ZipFileStorage(Storage):
    name = "zipfile"

    def __init__(
        self, storebase: StoreBase, limits: ZipLimits, link_limits: LinkLimits | None = None
    ) -> None:
        super().__init__(storebase, link_limits)
        self.limits = limits

    def upload_sink(self) -> StreamingUnzip:
        """Where an uploaded file part goes while it arrives: extracted into a staging folder."""
        return StreamingUnzip(self.storebase.uploads_dir / uuid.uuid4().hex, self.limits)

    def job_dirs(self, jid: str, request: InputRequest) -> JobDirs:
        if request.upload is None:
            raise InvalidInput("data_file: field is required")
        key = self.storebase.job_key(jid)
        return JobDirs(input=f"{key}/{INCOMING}", output=f"{key}/{OUTGOING}")

    def stage_input(
        self, jid: str, request: InputRequest, dirs: JobDirs, progress: Progress | None = None
    ) -> StagedInput:
        upload = request.upload
        if not isinstance(upload, StreamingUnzip):
            raise InvalidInput("data_file: must be sent as a file part of a multipart form")
        incoming = self.storebase.root / dirs.input
        outgoing = self.storebase.root / dirs.output
        upload.finish()
        upload.move_to(incoming)
        outgoing.mkdir()
        policy = LinkPolicy(root=incoming, forbidden=(outgoing,), limits=self.link_limits)
        resolve_links(incoming, policy)
        return StagedInput(nfiles=count_data_files(incoming), path=str(incoming))

    def output(self, jid: str, job_output_path: str | None) -> ZipOutput:
        return self.zip_output(jid)
