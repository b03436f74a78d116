"""CONTAINER_ENV=cromwell: where Cromwell answers and each job's time limit."""

from __future__ import annotations

from dataclasses import dataclass

from pfcon.settings.env import Env, http_url


@dataclass(frozen=True)
class CromwellSettings:
    """CONTAINER_ENV=cromwell: where Cromwell answers, and each job's time limit."""

    url: str | None = None  # CROMWELL_URL without a trailing slash, e.g. http://cromwell:8000
    timelimit_minutes: int | None = None  # TIMELIMIT_MINUTES; None: the Cromwell config's default


def read_cromwell(env: Env, container_env: str) -> CromwellSettings:
    """CROMWELL_URL, TIMELIMIT_MINUTES; read only when CONTAINER_ENV=cromwell.

    The URL is checked for shape only: reading settings never talks to the network, so an
    unreachable Cromwell shows up in ``pfcon check`` and the health check, not here.
    """
    if container_env != "cromwell":
        return CromwellSettings()
    return CromwellSettings(
        url=http_url(env.required("CROMWELL_URL"), "CROMWELL_URL"),
        timelimit_minutes=env.int("TIMELIMIT_MINUTES", None, 1),
    )
