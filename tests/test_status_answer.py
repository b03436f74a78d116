"""The classic status answer, written out field by field, is byte for byte the schema's dump.

``schemas.status_answer`` skips marshmallow on the most frequent request; the schema stays the
description (OpenAPI). Any field added to, renamed in or respelled by the schema fails here.
"""

from __future__ import annotations

import pytest
from flask import Flask, jsonify

from pfcon.api import schemas
from pfcon.compute.base import JobInfo, JobStatus
from pfcon.jobs import JobState

STATES = [
    JobState(
        JobInfo(
            "jid-1",
            "localhost/pl-simpledsapp:1",
            "simpledsapp --x 1 /in /out",
            status,
            "ok é \u2603",
            "2026-11-27T10:00:00Z",
        ),
        "line 1\nline 2 ü\n\x00\n",
    )
    for status in JobStatus
] + [
    JobState(JobInfo("jid-2", "", "", JobStatus.undefined, "", "")),  # a job pfcon holds data for, no record
    JobState(JobInfo("jid-3", "i", "c", JobStatus.started, "m", None), None),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("state", STATES, ids=lambda state: f"{state.info.jid}-{state.info.status.value}")
def test_status_answer_is_the_schemas_dump(state: JobState) -> None:
    dumped = schemas.StatusAnswerSchema().dump({"compute": state})
    written = schemas.status_answer(state)
    assert written == dumped
    assert list(written["compute"]) == list(dumped["compute"])
    with Flask(__name__).app_context():
        assert jsonify(written).get_data() == jsonify(dumped).get_data()


def test_the_classic_spelling_of_not_started() -> None:
    state = JobState(JobInfo("j", "i", "c", JobStatus.notStarted, "m", "t"))
    assert schemas.status_answer(state)["compute"]["status"] == "notstarted"
