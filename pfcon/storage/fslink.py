"""In-network storage on storeBase with the input copied per job (STORAGE_ENV=fslink).

Every ``input_dirs`` folder is copied into ``key-<jid>/incoming`` (merged), then the link
files in it are replaced by copies of their targets anywhere in storeBase (except pfcon's
own folders and the job's output). Copies are hard links where the filesystem allows, so a
large tree stages in about the time it takes to walk it (:mod:`pfcon.storage.copying`).
The output is ``output_dir`` itself, listed in place.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from pfcon.errors import InvalidInput
from pfcon.storage.base import InputRequest, JobDirs, ListingOutput, Progress, StagedInput
from pfcon.storage.copying import copy_tree
from pfcon.storage.innetwork import InNetworkStorage, StoreBaseTree, overlaps
from pfcon.storage.links import LinkPolicy, count_data_files, resolve_links
from pfcon.storebase import INCOMING


class FslinkStorage(InNetworkStorage):
    name = "fslink"
    copies_input = True

    def job_dirs(self, jid: str, request: InputRequest) -> JobDirs:
        inputs, output = self.requested_dirs(request)
        target = self.storebase_dir(output, "output_dir", must_exist=False)
        for name in inputs:
            source = self.storebase_dir(name, "input_dirs", must_exist=True)
            if overlaps(source, target):
                raise InvalidInput(f"input_dirs: {name} and output_dir {output} overlap")
        return JobDirs(input=f"{self.storebase.job_key(jid)}/{INCOMING}", output=target.as_posix())

    def stage_input(
        self, jid: str, request: InputRequest, dirs: JobDirs, progress: Progress | None = None
    ) -> StagedInput:
        inputs, output = self.requested_dirs(request)
        root = self.storebase.root
        incoming = root / dirs.input
        incoming.mkdir()
        sources = tuple(root / self.storebase_dir(n, "input_dirs", must_exist=True) for n in inputs)
        for source, name in zip(sources, inputs, strict=True):
            try:
                copy_tree(source, incoming, progress=progress)
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise InvalidInput(
                    f"input_dirs: {name} has a file where another input has a folder"
                ) from None
        outgoing = root / dirs.output
        policy = LinkPolicy(
            source=StoreBaseTree(self.storebase), forbidden=(outgoing,), limits=self.link_limits
        )
        resolve_links(incoming, policy, origins=tuple(s.resolve() for s in sources))
        created = self.make_output_dir(outgoing)
        self.remember_output(jid, output)
        return StagedInput(nfiles=count_data_files(incoming), path=str(incoming), output_created=created)

    def output_dir_of(self, jid: str, output_dir: PurePosixPath) -> str:
        return output_dir.as_posix()  # the job writes straight into the client's folder

    def output(self, jid: str, job_output_path: str | None) -> ListingOutput:
        return self.list_in_place(jid, job_output_path)
