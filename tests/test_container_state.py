"""Container states map to pfcon statuses through one explicit table per engine, and an ended
container is judged by what ended it: OOM, the engine shutting down, its exit code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pfcon.compute.base import JobStatus
from pfcon.compute.dockerapi.container_state import (
    CLEANUP_GRACE,
    DOCKER_STATES,
    ENDING,
    REMOVAL_GRACE,
    container_status,
)
from pfcon.compute.dockerapi.podman import PodmanBackend

PODMAN = PodmanBackend.judgement
MiB = 1024 * 1024


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
        ({"Status": "stopped", "ExitCode": 0}, JobStatus.undefined),  # not a Docker state
        ({"Status": "something-new"}, JobStatus.undefined),
        ({}, JobStatus.undefined),
    ],
)
def test_docker_table(state: dict, expected: JobStatus) -> None:
    assert container_status(state)[0] is expected


def test_docker_table_covers_every_docker_state() -> None:
    documented = {"created", "running", "paused", "restarting", "removing", "exited", "dead"}
    assert set(DOCKER_STATES) == documented


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"Status": "configured"}, JobStatus.notStarted),
        ({"Status": "initialized"}, JobStatus.notStarted),
        ({"Status": "stopping"}, JobStatus.started),
        ({"Status": "stopped", "ExitCode": 0}, JobStatus.finishedSuccessfully),
        ({"Status": "stopped", "ExitCode": 3}, JobStatus.finishedWithError),
    ],
)
def test_podman_table_adds_libpod_states(state: dict, expected: JobStatus) -> None:
    assert container_status(state, judgement=PODMAN)[0] is expected


def test_podman_judges_an_exit_once_it_is_final() -> None:
    """Podman's ``stopped`` precedes its cleanup, and a container removed with ``rm -f`` is
    killed (137) and shows ``stopped`` or ``exited`` on its way out: it is still ending
    (started, not vouched for) until the grace is over, so the kill of a removal is not
    judged as the job's own end; any other exit is judged at once."""
    just_now = datetime.now(UTC).isoformat()
    killed = {"Status": "stopped", "ExitCode": 137, "FinishedAt": just_now}
    assert container_status(killed, memory_limit=16 * MiB, judgement=PODMAN) == (JobStatus.started, ENDING)
    assert container_status({**killed, "Status": "exited"}, judgement=PODMAN) == (JobStatus.started, ENDING)
    assert container_status({**killed, "Status": "exited", "ExitCode": 0}, judgement=PODMAN)[0] is (
        JobStatus.finishedSuccessfully
    )
    assert container_status({**killed, "Status": "exited"})[0] is JobStatus.finishedWithError  # docker
    later = (datetime.now(UTC) - REMOVAL_GRACE - timedelta(seconds=1)).isoformat()
    status, message = container_status({**killed, "Status": "exited", "FinishedAt": later}, judgement=PODMAN)
    assert status is JobStatus.finishedWithError and "137" in message
    long_ago = (datetime.now(UTC) - CLEANUP_GRACE - timedelta(seconds=1)).isoformat()
    judged = container_status({**killed, "FinishedAt": long_ago}, judgement=PODMAN)
    assert judged[0] is JobStatus.finishedWithError


def test_exit_code_and_signal_are_in_the_message() -> None:
    assert container_status({"Status": "exited", "ExitCode": 3})[1] == "exited with code 3"
    message = container_status({"Status": "exited", "ExitCode": 137})[1]
    assert message == "exited with code 137 (killed by SIGKILL, sent from outside the job)"
    assert "SIGSEGV" in container_status({"Status": "exited", "ExitCode": 139})[1]


def test_docker_reports_oom_itself() -> None:
    state = {"Status": "exited", "ExitCode": 137, "OOMKilled": True}
    assert container_status(state, memory_limit=16 * MiB)[1].startswith("out of memory")
    # without the flag, Docker's SIGKILL is not taken for an OOM kill
    state = {"Status": "exited", "ExitCode": 137}
    assert "out of memory" not in container_status(state, memory_limit=16 * MiB)[1]


def test_podman_sigkill_under_a_limit_reads_as_oom() -> None:
    status, message = container_status(
        {"Status": "exited", "ExitCode": 137}, memory_limit=16 * MiB, judgement=PODMAN
    )
    assert status is JobStatus.finishedWithError
    assert message.startswith("out of memory (most likely)") and "16 MiB" in message
    assert "out of memory" not in container_status({"Status": "exited", "ExitCode": 137}, judgement=PODMAN)[1]


BOOT = datetime(2026, 11, 21, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("started", "finished", "code", "stopped_by_engine"),
    [
        ("2026-11-21T05:50:00Z", "2026-11-21T05:59:50Z", 137, True),  # SIGKILL at shutdown
        ("2026-11-21T05:50:00Z", "2026-11-21T05:59:40Z", 143, True),  # SIGTERM at shutdown
        ("2026-11-21T05:50:00Z", "2026-11-21T06:00:01Z", 255, True),  # engine crashed, cleaned up
        ("2026-11-21T05:50:00Z", "2026-11-21T05:59:50Z", 0, False),  # finished its work: success
        ("2026-11-21T05:00:00Z", "2026-11-21T05:10:00Z", 1, False),  # failed long before
        ("2026-11-21T06:00:05Z", "2026-11-21T06:00:09Z", 1, False),  # started after the restart
        ("0001-01-01T00:00:00Z", "2026-11-21T06:00:01Z", 1, False),  # never started
    ],
)
def test_a_job_failed_by_an_engine_shutdown_says_so(
    started: str, finished: str, code: int, stopped_by_engine: bool
) -> None:
    state = {"Status": "exited", "ExitCode": code, "StartedAt": started, "FinishedAt": finished}
    status, message = container_status(state, engine_started_at=BOOT)
    assert ("stopped by the docker engine" in message) is stopped_by_engine
    assert (status is JobStatus.finishedSuccessfully) is (code == 0)
    if stopped_by_engine:
        assert "2026-11-21T06:00:00Z" in message and f"exit code {code}" in message
