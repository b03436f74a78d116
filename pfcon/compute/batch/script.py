"""Batch-script templates: the file a batch backend submits, visible and replaceable.

A template is a shell script with ``{{name}}`` placeholders. pfcon ships one per scheduler
(``pfcon/compute/batch/templates/``); a site may point a setting at its own file. Every value put in
a placeholder is already quoted for the shell (or is a ready shell line), so a template never
quotes them again. Placeholders are checked when the template is loaded, at start-up: an
unknown one, or a missing required one, stops the service with the setting's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pfcon.settings import SettingsError

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

#: what a template may use, and what it means
PLACEHOLDERS: Mapping[str, str] = {
    "directives": "the scheduler's option lines (#SBATCH ...): resources, time limit, output file",
    "jid": "the pfcon job id",
    "image": "the job's image",
    "runtime": "the container runtime's name",
    "job_dir": "the job's folder on the node: the status file and logs go there",
    "run": "the line that runs the container (in the background, then waited for)",
    "stop": "the line that stops the container at once (on SIGTERM)",
    "status": 'the line that prints "EXIT_CODE OOM_KILLED" once the container ended',
    "cleanup": "the line that removes the container (on every exit)",
}
REQUIRED = ("directives", "job_dir", "run")


@dataclass(frozen=True)
class ScriptTemplate:
    text: str
    origin: str

    @classmethod
    def packaged(cls, name: str) -> ScriptTemplate:
        text = resources.files("pfcon.compute.batch").joinpath("templates", name).read_text()
        return cls.checked(text, f"pfcon/compute/batch/templates/{name}", "")

    @classmethod
    def from_file(cls, path: Path, variable: str) -> ScriptTemplate:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(variable, f"cannot read {path}: {error}") from None
        return cls.checked(text, str(path), variable)

    @classmethod
    def checked(cls, text: str, origin: str, variable: str) -> ScriptTemplate:
        used = set(PLACEHOLDER.findall(text))
        unknown = sorted(used - set(PLACEHOLDERS))
        if unknown:
            raise SettingsError(
                variable, f"{origin}: unknown placeholders {unknown}; known: {sorted(PLACEHOLDERS)}"
            )
        missing = [name for name in REQUIRED if name not in used]
        if missing:
            wanted = ", ".join("{{" + name + "}}" for name in missing)
            raise SettingsError(variable, f"{origin}: the template must use {wanted}")
        if not text.startswith("#!"):
            raise SettingsError(variable, f"{origin}: a batch script must start with #! (e.g. #!/bin/bash)")
        return cls(text, origin)

    def render(self, values: Mapping[str, str]) -> str:
        """Fill every placeholder in one pass (values are never scanned for placeholders)."""
        return PLACEHOLDER.sub(lambda match: values[match.group(1)], self.text)
