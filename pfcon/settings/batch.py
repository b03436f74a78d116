"""CONTAINER_ENV=slurm: how jobs are submitted to Slurm and run on its nodes."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from pfcon.settings.env import Env, SettingsError

SLURM_RUNTIMES = ("docker", "podman", "apptainer", "singularity")


@dataclass(frozen=True)
class SlurmSettings:
    """CONTAINER_ENV=slurm: how jobs are submitted to Slurm and run on its nodes."""

    timelimit_minutes: int | None = None
    partition: str | None = None
    sbatch_options: tuple[str, ...] = ()
    runtime: str = "docker"
    script_template: Path | None = None
    check_images: bool = True
    accounting: bool = False
    command_timeout_seconds: int = 20


def read_slurm(env: Env, container_env: str) -> SlurmSettings:
    """TIMELIMIT_MINUTES and the Slurm backend's own variables; read only when CONTAINER_ENV=slurm."""
    if container_env != "slurm":
        return SlurmSettings()
    template = env.str("SLURM_SCRIPT_TEMPLATE")
    if template is not None and not Path(template).is_file():
        raise SettingsError("SLURM_SCRIPT_TEMPLATE", f"{template} is not a file")
    return SlurmSettings(
        timelimit_minutes=env.int("TIMELIMIT_MINUTES", None, 1),
        partition=env.str("SLURM_PARTITION"),
        sbatch_options=_sbatch_options(env.str("SLURM_SBATCH_OPTIONS")),
        runtime=env.choice("SLURM_RUNTIME", SLURM_RUNTIMES, "docker"),
        script_template=Path(template) if template else None,
        check_images=env.bool("SLURM_CHECK_IMAGES", True),
        accounting=env.bool("SLURM_ACCOUNTING", False),
        command_timeout_seconds=env.int("SLURM_COMMAND_TIMEOUT", 20, 1),
    )


def _sbatch_options(text: str | None) -> tuple[str, ...]:
    """SLURM_SBATCH_OPTIONS, split like a shell would: one ``#SBATCH`` line per option.

    ``--qos=long -A chris --comment='a b'`` gives ``--qos=long``, ``-A chris`` and
    ``'--comment=a b'`` (sbatch reads quotes in its ``#SBATCH`` lines).
    """
    try:
        words = shlex.split(text or "")
    except ValueError as error:
        raise SettingsError("SLURM_SBATCH_OPTIONS", f"cannot split {text!r}: {error}") from None
    groups: list[list[str]] = []
    for word in words:
        if "\n" in word:
            raise SettingsError("SLURM_SBATCH_OPTIONS", f"no line breaks in options, got {word!r}")
        if word.startswith("-"):
            groups.append([word])
        elif groups:
            groups[-1].append(word)  # the value of the option before it
        else:
            raise SettingsError("SLURM_SBATCH_OPTIONS", f"expected an sbatch option first, got {word!r}")
    return tuple(shlex.join(group) for group in groups)
