"""Docker container states map to pfcon statuses through one explicit table."""

from __future__ import annotations

import pytest

from pfcon.compute.base import JobStatus
from pfcon.compute.docker import STATE_TABLE, container_status


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"Status": "created"}, JobStatus.notStarted),
        ({"Status": "running"}, JobStatus.started),
        ({"Status": "paused"}, JobStatus.started),
        ({"Status": "restarting"}, JobStatus.started),
        ({"Status": "exited", "ExitCode": 0}, JobStatus.finishedSuccessfully),
        ({"Status": "exited", "ExitCode": 137, "OOMKilled": True}, JobStatus.finishedWithError),
        ({"Status": "exited", "ExitCode": 1}, JobStatus.finishedWithError),
        ({"Status": "dead"}, JobStatus.finishedWithError),
        ({"Status": "removing"}, JobStatus.undefined),
        ({"Status": "something-new"}, JobStatus.undefined),
        ({}, JobStatus.undefined),
    ],
)
def test_state_table(state: dict, expected: JobStatus) -> None:
    assert container_status(state)[0] is expected


def test_state_table_covers_every_docker_state() -> None:
    documented = {"created", "running", "paused", "restarting", "removing", "exited", "dead"}
    assert set(STATE_TABLE) == documented
