"""An in-test Cromwell: a threaded HTTP server answering the REST calls pfcon makes.

No Cromwell can run here (a JVM server in no reachable registry), so the backend's real client
code talks to this server instead. It answers as Cromwell's REST API documentation shows:

* ``POST /api/workflows/v1`` (multipart: workflowSource, workflowInputs, workflowOptions,
  labels, ...) -> ``201 {"id", "status": "Submitted"}``; a missing source, an unexpected part,
  labels that are not a JSON object of strings -> ``400 {"status": "fail", "message"}``;
* ``GET .../{id}/status``, ``GET .../{id}/metadata`` (workflowName, id, status, submission,
  start, end, labels, submittedFiles, calls with stdout/stderr/returnCode/runtimeAttributes,
  failures with causedBy), ``GET .../query?label=k:v`` (results, totalResultsCount),
  ``POST .../{id}/abort`` (403 once terminal), ``PATCH .../{id}/labels``,
  ``GET /engine/v1/version``; an unknown id -> ``404 {"status": "fail", "message":
  "Unrecognized workflow ID: ..."}``, a malformed id -> 400.

Workflows move Submitted -> Running -> Succeeded/Failed on a clock, following a :class:`Plan`
chosen per workflow by the test's ``planner``. The server cannot run containers: it never
pretends a job's outputs exist. It parses every submitted document with miniwdl (a document
that does not parse fails the workflow, as Cromwell's materialisation would) and keeps the
evaluated command line and runtime attributes so tests can check what pfcon sent. As in
Cromwell, the query index can lag behind submissions (``query_lag``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import WDL
from WDL import StdLib

VERSION = "86"
PARTS = {
    "workflowSource",
    "workflowUrl",
    "workflowRoot",
    "workflowType",
    "workflowTypeVersion",
    "workflowInputs",
    "workflowOptions",
    "labels",
    "workflowOnHold",
    "workflowDependencies",
    "requestedWorkflowId",
}
TERMINAL = {"Succeeded", "Failed", "Aborted"}
CALL = "ChRISJob.plugin_instance"
NOT_FOUND_TEXT = b"The requested resource could not be found."


@dataclass
class Plan:
    """How a workflow behaves: seconds queued and running, then its outcome."""

    queued: float = 0.1
    running: float = 0.3
    return_code: int = 0
    stdout: str = ""
    stderr: str = ""
    failure: str | None = None  # a failure other than a return code (e.g. image pull)


@dataclass
class Workflow:
    id: str
    source: str
    labels: dict[str, str]
    options: dict[str, Any]
    inputs: dict[str, Any]
    submitted: float
    command: str | None = None  # the task's evaluated cmdline (what Cromwell would run)
    runtime: dict[str, Any] = field(default_factory=dict)
    parse_error: str | None = None
    plan: Plan = field(default_factory=Plan)
    aborted_at: float | None = None
    logs_written: bool = False

    @property
    def succeeded(self) -> bool:
        return self.plan.return_code == 0 and self.plan.failure is None and self.parse_error is None

    def status(self, now: float) -> str:
        if self.aborted_at is not None:
            return "Aborting" if now - self.aborted_at < 0.1 else "Aborted"
        age = now - self.submitted
        if self.parse_error is not None:
            return "Submitted" if age < self.plan.queued else "Failed"
        if age < self.plan.queued:
            return "Submitted"
        if age < self.plan.queued + self.plan.running:
            return "Running"
        return "Succeeded" if self.succeeded else "Failed"


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def evaluate(source: str) -> tuple[str | None, dict[str, Any]]:
    """Parse and typecheck with miniwdl; the task's ``cmdline`` and runtime values, evaluated."""
    document = WDL.parse_document(source)
    document.typecheck()
    task = document.tasks[0]
    stdlib = StdLib.Base(document.effective_wdl_version)
    command = None
    for decl in task.postinputs:
        if decl.name == "cmdline" and decl.expr is not None:
            command = decl.expr.eval(WDL.Env.Bindings(), stdlib).value
    runtime = {key: expr.eval(WDL.Env.Bindings(), stdlib).value for key, expr in task.runtime.items()}
    return command, runtime


class FakeCromwell:
    """Start with :meth:`start`; ``url`` is its base URL. Thread-safe."""

    def __init__(self, executions: Path) -> None:
        self.executions = executions
        self.workflows: dict[str, Workflow] = {}
        self.planner: Callable[[Workflow], Plan] = lambda workflow: Plan()
        self.query_lag = 0.0  # seconds before a submission shows in query results
        self.requests: list[tuple[str, str]] = []
        self.fail_with: tuple[int, str] | None = None  # answer every call with this error
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._connections: list[socket.socket] = []

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeCromwell:
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop listening and drop kept-alive connections, as a Cromwell that went away."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def by_jid(self, jid: str) -> Workflow:
        matches = [w for w in self.workflows.values() if w.labels.get("org.chrisproject.pfcon.jid") == jid]
        assert len(matches) == 1, f"{len(matches)} workflows labelled {jid}"
        return matches[0]

    # -- the API --------------------------------------------------------------------------
    def submit(self, parts: dict[str, bytes]) -> tuple[int, dict[str, Any]]:
        unexpected = sorted(set(parts) - PARTS)
        if unexpected:
            return 400, fail(f"Error(s): Unexpected body part name: {unexpected[0]}")
        if "workflowSource" not in parts and "workflowUrl" not in parts:
            return 400, fail("Error(s): Either workflowSource or workflowUrl needs to be supplied")
        try:
            labels = json.loads(parts.get("labels", b"{}"))
            options = json.loads(parts.get("workflowOptions", b"{}"))
            inputs = json.loads(parts.get("workflowInputs", b"{}"))
        except ValueError as exc:
            return 400, fail(f"Error(s): a JSON part does not parse: {exc}")
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 255 and len(v) <= 255
            for k, v in labels.items()
        ):
            return 400, fail("Error(s): Invalid labels: keys 1-255 and values 0-255 characters")
        source = parts["workflowSource"].decode()
        workflow = Workflow(str(uuid.uuid4()), source, labels, options, inputs, time.time())
        try:
            workflow.command, workflow.runtime = evaluate(source)
        except Exception as exc:  # miniwdl's syntax and type errors
            workflow.parse_error = f"{type(exc).__name__}: {exc}"
        workflow.plan = self.planner(workflow)
        workflow.submitted = time.time()  # the clock starts once accepted (miniwdl's parse is slow)
        with self.lock:
            self.workflows[workflow.id] = workflow
        return 201, {"id": workflow.id, "status": "Submitted"}

    def status(self, workflow: Workflow) -> dict[str, Any]:
        return {"id": workflow.id, "status": workflow.status(time.time())}

    def metadata(self, workflow: Workflow) -> dict[str, Any]:
        now = time.time()
        state = workflow.status(now)
        plan = workflow.plan
        started = workflow.submitted + plan.queued
        ended = (workflow.aborted_at or started + plan.running) if state in TERMINAL else None
        body: dict[str, Any] = {
            "workflowName": "ChRISJob",
            "id": workflow.id,
            "status": state,
            "submission": iso(workflow.submitted),
            "labels": {"cromwell-workflow-id": f"cromwell-{workflow.id}", **workflow.labels},
            "submittedFiles": {
                "workflow": workflow.source,
                "options": json.dumps(workflow.options),
                "labels": json.dumps(workflow.labels),
                "inputs": json.dumps(workflow.inputs),
                "workflowType": "WDL",
                "workflowTypeVersion": "1.0",
            },
            "inputs": {},
            "outputs": {},
            "calls": {},
        }
        if state != "Submitted" and workflow.parse_error is None:
            body["start"] = iso(started)
            body["calls"] = {CALL: [self._call(workflow, state, started, ended)]}
        if ended is not None:
            body["end"] = iso(ended)
        if state == "Failed":
            body["failures"] = [{"message": "Workflow failed", "causedBy": [self._cause(workflow)]}]
        return body

    def _call(self, workflow: Workflow, state: str, started: float, ended: float | None) -> dict[str, Any]:
        execution = self.executions / "ChRISJob" / workflow.id / "call-plugin_instance" / "execution"
        with self.lock:
            if not workflow.logs_written:  # Cromwell creates these when the call starts
                execution.mkdir(parents=True, exist_ok=True)
                (execution / "stdout").write_text(workflow.plan.stdout)
                (execution / "stderr").write_text(workflow.plan.stderr)
                workflow.logs_written = True
        call: dict[str, Any] = {
            "executionStatus": {"Succeeded": "Done", "Running": "Running", "Aborting": "Running"}.get(
                state, state
            ),
            "inputs": {},  # the task takes none (required in the REST description's CallMetadata)
            "stdout": str(execution / "stdout"),
            "stderr": str(execution / "stderr"),
            "commandLine": workflow.command,
            "runtimeAttributes": {k: str(v) for k, v in workflow.runtime.items()},
            "attempt": 1,
            "shardIndex": -1,
            "backend": "Local",
            "callRoot": str(execution.parent),
            "start": iso(started),
        }
        if ended is not None:
            call["end"] = iso(ended)
            if workflow.plan.failure is None and workflow.aborted_at is None:
                call["returnCode"] = workflow.plan.return_code
        return call

    def _cause(self, workflow: Workflow) -> dict[str, Any]:
        if workflow.parse_error is not None:
            return {
                "message": "Workflow input processing failed",
                "causedBy": [{"message": workflow.parse_error, "causedBy": []}],
            }
        if workflow.plan.failure is not None:
            return {"message": workflow.plan.failure, "causedBy": []}
        return {
            "message": f"Job {CALL}:NA:1 exited with return code {workflow.plan.return_code} which has "
            "not been declared as a valid return code. See 'continueOnReturnCode' runtime attribute "
            "for more details.",
            "causedBy": [],
        }

    def query(self, params: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        wanted = []
        for label in params.get("label", []):
            key, sep, value = label.partition(":")
            if not sep:
                return 400, fail(f"Label values must be of the form key:value, got {label}")
            wanted.append((key, value))
        now = time.time()
        with_labels = "labels" in params.get("additionalQueryResultFields", [])
        results = []
        for workflow in list(self.workflows.values()):
            if now - workflow.submitted < self.query_lag:
                continue  # not summarised yet
            if all(workflow.labels.get(key) == value for key, value in wanted):
                state = workflow.status(now)
                result = {
                    "id": workflow.id,
                    "name": "ChRISJob",
                    "status": state,
                    "submission": iso(workflow.submitted),
                }
                if state != "Submitted":  # as in the metadata: a start once it left the queue
                    started = workflow.submitted + workflow.plan.queued
                    result["start"] = iso(started)
                    if state in TERMINAL:
                        result["end"] = iso(workflow.aborted_at or started + workflow.plan.running)
                if with_labels:
                    result["labels"] = dict(workflow.labels)
                results.append(result)
        return 200, {"results": results, "totalResultsCount": len(results)}

    def abort(self, workflow: Workflow) -> tuple[int, dict[str, Any]]:
        with self.lock:
            state = workflow.status(time.time())
            if state in TERMINAL or state == "Aborting":
                return 403, fail(f"Couldn't abort {workflow.id} because it is in a terminal state: {state}")
            workflow.aborted_at = time.time()
        return 200, {"id": workflow.id, "status": "Aborting"}

    def relabel(self, workflow: Workflow, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            labels = json.loads(body)
        except ValueError:
            return 400, fail("Error(s): the labels are not JSON")
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            return 400, fail("Error(s): Invalid labels")
        with self.lock:
            workflow.labels.update(labels)
        return 200, {"id": workflow.id, "labels": dict(workflow.labels)}


def fail(message: str) -> dict[str, str]:
    return {"status": "fail", "message": message}


def _handler(cromwell: FakeCromwell) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            cromwell._connections.append(self.connection)

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            cromwell.requests.append((method, url.path))
            if cromwell.fail_with is not None:
                status, message = cromwell.fail_with
                return self._send(status, {"status": "error", "message": message})
            parts = url.path.strip("/").split("/")
            if method == "GET" and url.path == "/engine/v1/version":
                return self._send(200, {"cromwell": VERSION})
            if parts[:3] != ["api", "workflows", "v1"]:
                return self._send(404, None)
            rest = parts[3:]
            if method == "POST" and not rest:
                return self._send(*cromwell.submit(_multipart(self.headers["Content-Type"], body)))
            if method == "GET" and rest == ["query"]:
                return self._send(*cromwell.query(parse_qs(url.query)))
            if len(rest) != 2:
                return self._send(404, None)
            try:
                uuid.UUID(rest[0])
            except ValueError:
                return self._send(400, fail(f"Invalid workflow ID: '{rest[0]}'."))
            workflow = cromwell.workflows.get(rest[0])
            if workflow is None:
                return self._send(404, fail(f"Unrecognized workflow ID: {rest[0]}"))
            action = (method, rest[1])
            if action == ("GET", "status"):
                return self._send(200, cromwell.status(workflow))
            if action == ("GET", "metadata"):
                return self._send(200, cromwell.metadata(workflow))
            if action == ("POST", "abort"):
                return self._send(*cromwell.abort(workflow))
            if action == ("PATCH", "labels"):
                return self._send(*cromwell.relabel(workflow, body))
            return self._send(404, None)

        def _send(self, status: int, body: dict[str, Any] | None) -> None:
            # Cromwell answers unknown routes with plain text, everything else with JSON
            data = NOT_FOUND_TEXT if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if body is None else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            parts[str(name)] = part.get_payload(decode=True) or b""
    return parts
