"""A small client for Cromwell's REST API (the calls pfcon makes, nothing more).

One :class:`requests.Session` with a connection pool serves the whole process; every call
has a connect and a read timeout, so a hung Cromwell costs a request seconds, not forever.
Cromwell's error answers become three exceptions the backend maps to domain errors:
:class:`WorkflowNotFound` (404), :class:`CromwellRefused` (other 4xx, with Cromwell's
``message``) and :class:`CromwellUnavailable` (5xx, connection refused, timeouts, answers
that are not Cromwell's JSON).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

API = "/api/workflows/v1"
POOL_SIZE = 32
TIMEOUT = (5.0, 30.0)  # (connect, read) seconds


class CromwellError(Exception):
    """Base of the client's errors; ``message`` is Cromwell's own when it gave one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class WorkflowNotFound(CromwellError):
    """Cromwell does not know the workflow id (404)."""


class CromwellRefused(CromwellError):
    """Cromwell refused the request (400, 403, ...): the request's fault, not Cromwell's."""


class CromwellUnavailable(CromwellError):
    """Cromwell did not answer, or answered with a server error."""


class CromwellClient:
    def __init__(self, url: str, timeout: tuple[float, float] = TIMEOUT, pool_size: int = POOL_SIZE) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    # -- calls ----------------------------------------------------------------------------
    def version(self) -> str:
        """``GET /engine/v1/version`` -> e.g. ``"86"``."""
        return str(self._call("GET", "/engine/v1/version").get("cromwell", "?"))

    def submit(
        self,
        workflow_source: str,
        labels: Mapping[str, str],
        options: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> str:
        """``POST /api/workflows/v1`` (multipart) -> the new workflow's id."""
        fields = {"workflowType": "WDL", "workflowTypeVersion": "1.0"}
        files: dict[str, tuple[str, str, str]] = {
            "workflowSource": ("workflow.wdl", workflow_source, "text/plain"),
            "labels": ("labels.json", json.dumps(dict(labels)), "application/json"),
        }
        if options is not None:
            files["workflowOptions"] = ("options.json", json.dumps(dict(options)), "application/json")
        if inputs is not None:
            files["workflowInputs"] = ("inputs.json", json.dumps(dict(inputs)), "application/json")
        answer = self._call("POST", API, data=fields, files=files)
        workflow_id = answer.get("id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise CromwellUnavailable(f"Cromwell's answer to a submission has no workflow id: {answer!r}")
        return workflow_id

    def status(self, workflow_id: str) -> str:
        """``GET /api/workflows/v1/{id}/status`` -> e.g. ``"Running"``."""
        return str(self._call("GET", f"{API}/{workflow_id}/status").get("status", ""))

    def metadata(self, workflow_id: str) -> dict[str, Any]:
        """``GET /api/workflows/v1/{id}/metadata`` (calls not expanded into subworkflows)."""
        return self._call("GET", f"{API}/{workflow_id}/metadata", params={"expandSubWorkflows": "false"})

    def query_label(self, key: str, value: str) -> list[dict[str, Any]]:
        """``GET /api/workflows/v1/query?label=key:value`` -> the matching workflows, with labels."""
        params = {"label": f"{key}:{value}", "additionalQueryResultFields": "labels"}
        results = self._call("GET", f"{API}/query", params=params).get("results")
        return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []

    def abort(self, workflow_id: str) -> str:
        """``POST /api/workflows/v1/{id}/abort`` -> the status Cromwell reports (``Aborting``...)."""
        return str(self._call("POST", f"{API}/{workflow_id}/abort").get("status", ""))

    def update_labels(self, workflow_id: str, labels: Mapping[str, str]) -> None:
        """``PATCH /api/workflows/v1/{id}/labels``: add or overwrite labels."""
        self._call("PATCH", f"{API}/{workflow_id}/labels", json=dict(labels))

    def close(self) -> None:
        self.session.close()

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            reason = type(exc).__name__
            raise CromwellUnavailable(f"Cromwell at {self.url} does not answer ({reason})") from exc
        body = _json(response)
        if response.status_code < 400:
            if body is None:
                raise CromwellUnavailable(
                    f"Cromwell at {self.url} answered {method} {path} with something that is not JSON"
                )
            return body
        if body is None:  # not Cromwell's error shape: a proxy, or CROMWELL_URL names another server
            raise CromwellUnavailable(
                f"{self.url} answered {method} {path} with {response.status_code} {response.reason}, "
                "not Cromwell's JSON; is CROMWELL_URL right?",
                response.status_code,
            )
        message = str(body.get("message") or response.reason or "no message")
        if response.status_code == 404:
            raise WorkflowNotFound(message, 404)
        if 400 <= response.status_code < 500:
            raise CromwellRefused(message, response.status_code)
        status = response.status_code
        raise CromwellUnavailable(f"Cromwell answered {status}: {message}", status)


def _json(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
