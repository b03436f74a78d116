# ruff: noqa: F811  (the cromwell fixture is imported, then named as an argument)
"""The in-test Cromwell's answers have the shapes Cromwell's published REST description gives.

The description (tests/cromwell_rest.yaml, vendored from Cromwell's cromwell.yaml) is the
reference for every answer pfcon's client reads; each answer the in-test server gives during
a workflow's life is validated against its definition. Where the description and Cromwell
itself disagree, Cromwell's real answers win and the difference is listed in KNOWN_DEVIATIONS.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml

from pfcon.compute.cromwell.client import API, CromwellClient
from tests.cromwell_server import FakeCromwell, Plan
from tests.helpers import wait_for
from tests.test_cromwell_client import WDL_DOC, cromwell  # noqa: F401 (a fixture)

DESCRIPTION = yaml.safe_load((Path(__file__).with_name("cromwell_rest.yaml")).read_text())
#: Where the published description is not what a Cromwell server sends (and pfcon reads what
#: the server sends): failures are nested {message, causedBy} lists, labels an object.
KNOWN_DEVIATIONS: dict[str, dict[str, Any]] = {
    "FailureMessage": {
        "type": "array",
        "items": {"required": ["message", "causedBy"], "properties": {"message": {"type": "string"}}},
    },
    "LabelsResponse.labels": {"type": "object", "additionalProperties": {"type": "string"}},
    # the description gives one CallMetadata; its own example (and every server) maps each
    # call's name to a list of attempts
    "WorkflowMetadataResponse.calls": {
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"$ref": "#/definitions/CallMetadata"}},
    },
}


def definitions() -> dict[str, Any]:
    defs = copy.deepcopy(DESCRIPTION["definitions"])
    for where, schema in KNOWN_DEVIATIONS.items():
        name, _, field = where.partition(".")
        if field:
            defs[name]["properties"][field] = schema
        else:
            defs[name] = schema
    return defs


def check(answer: requests.Response, status: int, definition: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    schema = {"definitions": definitions(), "$ref": f"#/definitions/{definition}"}
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)
    return body


def test_the_description_is_the_vendored_one() -> None:
    """The deviations name fields that exist in the description (so none goes stale unseen)."""
    for where in KNOWN_DEVIATIONS:
        name, _, field = where.partition(".")
        assert name in DESCRIPTION["definitions"]
        assert not field or field in DESCRIPTION["definitions"][name]["properties"]


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
def test_every_answer_of_a_workflows_life_has_its_documented_shape(
    cromwell: FakeCromwell, outcome: str
) -> None:
    cromwell.planner = lambda w: Plan(queued=0.3, running=0.5, return_code=0 if outcome == "Succeeded" else 3)
    base = cromwell.url + API
    files = {
        "workflowSource": ("w.wdl", WDL_DOC),
        "labels": ("l.json", '{"org.chrisproject.pfcon.jid": "j-1"}'),
    }
    submitted = check(requests.post(base, files=files, timeout=30), 201, "WorkflowIdAndStatus")
    workflow = submitted["id"]
    assert submitted["status"] == "Submitted"
    check(requests.get(f"{base}/{workflow}/status", timeout=5), 200, "WorkflowIdAndStatus")
    check(requests.get(f"{base}/{workflow}/metadata", timeout=5), 200, "WorkflowMetadataResponse")
    query = {"label": "org.chrisproject.pfcon.jid:j-1", "additionalQueryResultFields": "labels"}
    wait_for(lambda: requests.get(f"{base}/{workflow}/status", timeout=5).json()["status"] == "Running")
    # a query result requires a start, which a workflow has once it left the queue
    check(requests.get(f"{base}/query", params=query, timeout=5), 200, "WorkflowQueryResponse")
    labels = requests.patch(f"{base}/{workflow}/labels", json={"site": "bch"}, timeout=5)
    assert check(labels, 200, "LabelsResponse")["labels"]["site"] == "bch"
    wait_for(lambda: requests.get(f"{base}/{workflow}/status", timeout=5).json()["status"] == outcome)
    metadata = check(requests.get(f"{base}/{workflow}/metadata", timeout=5), 200, "WorkflowMetadataResponse")
    assert [call["returnCode"] for call in metadata["calls"]["ChRISJob.plugin_instance"]] == [
        0 if outcome == "Succeeded" else 3
    ]
    assert ("failures" in metadata) is (outcome == "Failed")
    result = check(requests.get(f"{base}/query", params=query, timeout=5), 200, "WorkflowQueryResponse")
    assert result["totalResultsCount"] == 1 and result["results"][0]["end"]


def test_abort_and_version_answers(cromwell: FakeCromwell) -> None:
    cromwell.planner = lambda w: Plan(queued=30)
    client = CromwellClient(cromwell.url)
    workflow = client.submit(WDL_DOC, {"org.chrisproject.pfcon.jid": "j-2"})
    aborted = check(
        requests.post(f"{cromwell.url}{API}/{workflow}/abort", timeout=5), 200, "WorkflowIdAndStatus"
    )
    assert aborted["status"] == "Aborting"
    version = check(requests.get(f"{cromwell.url}/engine/v1/version", timeout=5), 200, "VersionResponse")
    assert version["cromwell"] == client.version()
    client.close()


def test_a_shape_pfcon_does_not_expect_would_be_caught() -> None:
    """Not vacuous: an answer without its id, or with a number for a status, is refused."""
    schema = {"definitions": definitions(), "$ref": "#/definitions/WorkflowIdAndStatus"}
    for wrong in ({"status": "Submitted"}, {"id": "x", "status": 3}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft4Validator(schema).validate(wrong)
