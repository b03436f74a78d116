"""In-network storage on storeBase itself, nothing copied (STORAGE_ENV=filesystem).

The job's input folder (the one ``input_dirs`` entry) is mounted read-only as it is, and its
``output_dir`` read-write; both must lie under storeBase, outside pfcon's own folders. The
output listing lists ``output_dir`` in place.
"""

from __future__ import annotations

from pfcon.errors import InvalidInput
from pfcon.storage.base import InputRequest, JobDirs, ListingOutput, Progress, StagedInput
from pfcon.storage.innetwork import InNetworkStorage, overlaps
from pfcon.storage.links import count_data_files


class FilesystemStorage(InNetworkStorage):
    name = "filesystem"

    def job_dirs(self, jid: str, request: InputRequest) -> JobDirs:
        inputs, output = self.requested_dirs(request)
        if len(inputs) != 1:
            raise InvalidInput(
                f"input_dirs: filesystem storage mounts exactly one input folder, got {len(inputs)}"
            )
        source = self.storebase_dir(inputs[0], "input_dirs", must_exist=True)
        target = self.storebase_dir(output, "output_dir", must_exist=False)
        if overlaps(source, target):
            raise InvalidInput(f"input_dirs: {inputs[0]} and output_dir {output} overlap")
        return JobDirs(input=source.as_posix(), output=target.as_posix())

    def stage_input(
        self, jid: str, request: InputRequest, dirs: JobDirs, progress: Progress | None = None
    ) -> StagedInput:
        source = self.storebase.root / dirs.input
        created = self.make_output_dir(self.storebase.root / dirs.output)
        self.remember_output(jid, self.requested_dirs(request)[1])
        return StagedInput(nfiles=count_data_files(source), path=str(source), output_created=created)

    def output(self, jid: str, job_output_path: str | None) -> ListingOutput:
        return self.list_in_place(jid, job_output_path)
