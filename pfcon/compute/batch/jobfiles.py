"""A batch job's own folder: the script, its output, and the files that say how it ended.

A batch scheduler forgets a job soon after it ends (Slurm without accounting keeps it for
``MinJobAge``, 5 minutes by default), so the batch script writes what pfcon needs to know into
the job's folder on storage both see: ``started`` when the container starts, ``status`` when it
ends. pfcon writes ``job.json`` at submission and ``final.json`` once the outcome is settled.
The folder is ``key-<jid>/<scheduler>/`` beside the job's data, never mounted into the job,
and goes away with the job's data.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pfcon.compute.logtail import read_tail
from pfcon.storebase import StoreBase, write_atomically

JOB = "job.json"
SCRIPT = "job.sh"
OUTPUT = "output.log"
STARTED = "started"
STATUS = "status"
FINAL = "final.json"


@dataclass(frozen=True)
class JobFiles:
    """The folder of one job, as pfcon sees it (``path``) and as the node sees it (``node_path``)."""

    path: Path
    node_path: str

    @classmethod
    def of(cls, pfcon_root: Path, node_root: str, jid: str, scheduler: str) -> JobFiles:
        relative = f"{StoreBase.job_key(jid)}/{scheduler}"
        return cls(pfcon_root / relative, f"{node_root.rstrip('/')}/{relative}")

    def node(self, name: str) -> str:
        return f"{self.node_path}/{name}"

    def create(self) -> bool:
        """Make the folder; ``False`` if a job already lives in it."""
        self.path.mkdir(parents=True, exist_ok=True)
        return not (self.path / JOB).exists()

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        """Atomically, so a reader in another process never sees half a file."""
        write_atomically(self.path / name, json.dumps(data))

    def read_json(self, name: str) -> dict[str, Any] | None:
        try:
            with (self.path / name).open() as handle:
                data = json.load(handle)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def read_fields(self, name: str) -> dict[str, str] | None:
        """A ``key=value`` per line file written by the batch script, or ``None``."""
        try:
            text = (self.path / name).read_text(errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return None
        pairs = (line.partition("=") for line in text.splitlines())
        return {key.strip(): value.strip() for key, sep, value in pairs if sep}

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        write_atomically(target, text)
        return target

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def tail(self, name: str, lines: int) -> str:
        return read_tail(self.path / name, lines)


def is_node_path_safe(path: str) -> bool:
    """Paths go into ``#SBATCH`` lines and ``src:dst`` mount flags: no blanks, quotes, ``%`` or ``:``."""
    return not any(char in path for char in " \t\n'\"%:,\\")
