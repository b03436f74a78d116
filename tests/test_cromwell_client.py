"""The Cromwell REST client against the in-test Cromwell (tests/cromwell_server.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pfcon.compute.cromwell.client import (
    CromwellClient,
    CromwellRefused,
    CromwellUnavailable,
    WorkflowNotFound,
)
from tests.cromwell_server import FakeCromwell, Plan
from tests.helpers import wait_for

WDL_DOC = """version 1.0
task plugin_instance {
  command <<<
    echo hi
  >>>
  runtime {
    docker: "busybox"
  }
}
workflow ChRISJob {
  call plugin_instance
}
"""


@pytest.fixture
def cromwell(tmp_path: Path):
    server = FakeCromwell(tmp_path / "executions").start()
    yield server
    server.stop()


@pytest.fixture
def client(cromwell: FakeCromwell):
    client = CromwellClient(cromwell.url)
    yield client
    client.close()


def test_version(client: CromwellClient) -> None:
    assert client.version() == "86"


def test_submit_sends_the_documented_parts(client: CromwellClient, cromwell: FakeCromwell) -> None:
    cromwell.planner = lambda w: Plan(queued=30)
    workflow_id = client.submit(WDL_DOC, {"org.chrisproject.pfcon.jid": "j-1"}, options={"a": 1}, inputs={})
    workflow = cromwell.workflows[workflow_id]
    assert workflow.source == WDL_DOC and workflow.parse_error is None
    assert workflow.labels == {"org.chrisproject.pfcon.jid": "j-1"}
    assert workflow.options == {"a": 1} and workflow.command is None
    assert client.status(workflow_id) == "Submitted"


def test_workflow_moves_through_its_states(client: CromwellClient, cromwell: FakeCromwell) -> None:
    cromwell.planner = lambda w: Plan(queued=0.2, running=0.3, return_code=1)
    workflow_id = client.submit(WDL_DOC, {})
    seen = []

    def done() -> bool:
        status = client.status(workflow_id)
        if not seen or seen[-1] != status:
            seen.append(status)
        return status == "Failed"

    wait_for(done, timeout=5, interval=0.05)
    assert seen == ["Submitted", "Running", "Failed"]
    metadata = client.metadata(workflow_id)
    assert metadata["status"] == "Failed" and metadata["end"] >= metadata["start"] >= metadata["submission"]
    call = metadata["calls"]["ChRISJob.plugin_instance"][0]
    assert call["returnCode"] == 1 and Path(call["stdout"]).is_file()
    assert "return code 1" in metadata["failures"][0]["causedBy"][0]["message"]


def test_query_by_label_with_labels(client: CromwellClient) -> None:
    first = client.submit(WDL_DOC, {"k": "a"})
    client.submit(WDL_DOC, {"k": "b"})
    results = client.query_label("k", "a")
    assert [r["id"] for r in results] == [first] and results[0]["labels"] == {"k": "a"}
    assert client.query_label("k", "none") == []


def test_abort_then_abort_again_is_refused(client: CromwellClient, cromwell: FakeCromwell) -> None:
    cromwell.planner = lambda w: Plan(running=30)
    workflow_id = client.submit(WDL_DOC, {})
    assert client.abort(workflow_id) == "Aborting"
    wait_for(lambda: client.status(workflow_id) == "Aborted", timeout=5)
    with pytest.raises(CromwellRefused, match="terminal state") as refused:
        client.abort(workflow_id)
    assert refused.value.status == 403


def test_update_labels(client: CromwellClient, cromwell: FakeCromwell) -> None:
    workflow_id = client.submit(WDL_DOC, {"k": "a"})
    client.update_labels(workflow_id, {"k": "b", "x": "y"})
    assert cromwell.workflows[workflow_id].labels == {"k": "b", "x": "y"}
    assert client.query_label("k", "a") == []


def test_error_answers(client: CromwellClient, cromwell: FakeCromwell) -> None:
    unknown = "2f6b0b5e-8a55-4c51-9b2a-1b8f7a7a0c11"
    with pytest.raises(WorkflowNotFound, match=f"Unrecognized workflow ID: {unknown}"):
        client.metadata(unknown)
    with pytest.raises(CromwellRefused, match="Invalid workflow ID"):
        client.status("not-a-uuid")
    with pytest.raises(CromwellRefused, match="Invalid labels"):
        client.submit(WDL_DOC, {"": "empty key"})
    cromwell.fail_with = (500, "database is down")
    with pytest.raises(CromwellUnavailable, match="500: database is down"):
        client.version()


def test_missing_source_is_refused(client: CromwellClient, cromwell: FakeCromwell) -> None:
    answer = client.session.post(cromwell.url + "/api/workflows/v1", files={"labels": ("l.json", "{}")})
    assert answer.status_code == 400
    assert answer.json() == {
        "status": "fail",
        "message": "Error(s): Either workflowSource or workflowUrl needs to be supplied",
    }


def test_a_document_that_does_not_parse_fails_the_workflow(client: CromwellClient) -> None:
    workflow_id = client.submit("version 1.0\nworkflow {", {})
    wait_for(lambda: client.status(workflow_id) == "Failed", timeout=5)
    cause = client.metadata(workflow_id)["failures"][0]["causedBy"][0]
    assert cause["message"] == "Workflow input processing failed" and cause["causedBy"]


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = CromwellClient(f"http://127.0.0.1:{port}")
    with pytest.raises(CromwellUnavailable, match="does not answer"):
        client.version()


def test_non_json_answers_are_unavailable(client: CromwellClient) -> None:
    """A 404 without Cromwell's JSON is a wrong CROMWELL_URL, never an unknown workflow."""
    with pytest.raises(CromwellUnavailable, match="404 Not Found, not Cromwell's JSON"):
        client._call("GET", "/no/such/route")


def test_a_hung_server_costs_the_read_timeout_only() -> None:
    class Hang(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(3)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = CromwellClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=(1.0, 0.5))
        started = time.monotonic()
        with pytest.raises(CromwellUnavailable, match="Timeout"):
            client.version()
        assert time.monotonic() - started < 2
    finally:
        server.shutdown()
        server.server_close()


def test_one_session_reuses_connections(client: CromwellClient, cromwell: FakeCromwell) -> None:
    workflow_id = client.submit(WDL_DOC, {})
    for _ in range(20):
        client.status(workflow_id)
    pool = next(iter(client.session.get_adapter(cromwell.url).poolmanager.pools._container.values()))
    assert pool.num_connections == 1
    json.dumps(client.metadata(workflow_id))  # metadata is plain JSON
