"""A small in-test Kubernetes API server: the batch/v1 and core/v1 calls pfcon makes.

The backend is exercised through the real ``kubernetes`` client against this one for what
the real one-node cluster (1.20) cannot show: newer fields and every error shape. It serves
no watches (it refuses them with 501): those run on the real cluster. It answers as the API
documents: objects and lists with their ``kind``/``apiVersion``, ``Status`` documents for 401,
403, 404, 409, 400 and 422, plain text for pod logs. Jobs it accepts must pass the official
schemas strictly (``kubernetes-validate``), like the API server's validation would.

It runs no containers. A created Job gets one pod per worker, as the Job controller would
make them; tests then *tell* the cluster what happened (:meth:`FakeCluster.finish`,
:meth:`FakeCluster.pull_failure`, ...) and check that pfcon reports it correctly.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

K8S_VERSION = "1.37.0"
_JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs/?$")
_JOB = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs/(?P<name>[^/]+)/?$")
_PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/?$")
_POD_LOG = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log/?$")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """Answered as a ``Status`` document (how the API server reports every failure)."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None


@dataclass
class FakeCluster:
    """What the server knows; tests read it and drive it."""

    token: str | None = None  # the bearer token it accepts (None: no authentication)
    forbidden: bool = False  # answer 403 as RBAC would for a service account without rights
    start_pods: bool = True  # pods run as soon as they exist (else they stay Pending)
    collect_garbage: bool = True  # a Job's pods go with it (else they linger, as before the GC runs)
    first_batch: int | None = None  # the Job controller's slow start: only this many pods at first
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)  # Job manifests as received
    requests: list[Request] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- what tests drive -------------------------------------------------------------------
    def job(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.jobs[(namespace, name)]

    def pods_of(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        """The pods of the Job that now has this name (not of an earlier one)."""
        with self.lock:
            job = self.jobs.get((namespace, name))
            uid = job["metadata"]["uid"] if job else None
            pods = [p for (ns, _), p in self.pods.items() if ns == namespace and _owner(p) == (name, uid)]
            return sorted(pods, key=lambda p: p["metadata"]["name"])

    def run(self, name: str, namespace: str = "default") -> None:
        with self.lock:
            for pod in self.pods_of(name, namespace):
                _set_running(pod)
            self.job(name, namespace)["status"]["ready"] = len(self.pods_of(name, namespace))

    def create_remaining_pods(self, name: str, namespace: str = "default") -> None:
        """The Job controller's next batch: the pods not created at first (see first_batch)."""
        with self.lock:
            job = self.job(name, namespace)
            for _ in range(job["spec"].get("parallelism", 1) - len(self.pods_of(name, namespace))):
                self._create_pod(namespace, job)

    def write_logs(self, name: str, text: str, namespace: str = "default") -> None:
        """Each pod of the Job has printed ``text`` (with its pod name substituted for {pod})."""
        with self.lock:
            for pod in self.pods_of(name, namespace):
                self.logs[pod["metadata"]["name"]] = text.format(pod=pod["metadata"]["name"])

    def finish(
        self, name: str, exit_code: int = 0, reason: str | None = None, namespace: str = "default"
    ) -> None:
        """Every pod ends with ``exit_code``; the Job controller marks the Job Complete or Failed."""
        with self.lock:
            job, pods = self.job(name, namespace), self.pods_of(name, namespace)
            for pod in pods:
                _set_terminated(pod, exit_code, reason or ("Completed" if exit_code == 0 else "Error"))
            status = job["status"]
            status.pop("active", None)
            status["ready"] = 0
            if exit_code == 0:
                status["succeeded"] = len(pods)
                status["completionTime"] = now()
                status["conditions"] = [
                    _condition("SuccessCriteriaMet", "CompletionsReached"),
                    _condition("Complete"),
                ]
            else:
                status["failed"] = len(pods)
                message = "Job has reached the specified backoff limit"
                status["conditions"] = [
                    _condition("FailureTarget", "BackoffLimitExceeded", message),
                    _condition("Failed", "BackoffLimitExceeded", message),
                ]

    def exceed_deadline(self, name: str, namespace: str = "default") -> None:
        """activeDeadlineSeconds passed: the controller deletes the pods and fails the Job."""
        with self.lock:
            for pod in self.pods_of(name, namespace):
                del self.pods[(namespace, pod["metadata"]["name"])]
            status = self.job(name, namespace)["status"]
            status.pop("active", None)
            message = "Job was active longer than specified deadline"
            status["conditions"] = [
                _condition("FailureTarget", "DeadlineExceeded", message),
                _condition("Failed", "DeadlineExceeded", message),
            ]

    def pull_failure(
        self,
        name: str,
        reason: str = "ImagePullBackOff",
        message: str | None = None,
        namespace: str = "default",
    ) -> None:
        """The kubelet cannot pull the image: the pods stay Pending, their container waiting."""
        with self.lock:
            for pod in self.pods_of(name, namespace):
                image = pod["spec"]["containers"][0]["image"]
                pod["status"]["phase"] = "Pending"
                pod["status"]["containerStatuses"] = [
                    _container_status(
                        pod,
                        {
                            "waiting": {
                                "reason": reason,
                                "message": message or f'Back-off pulling image "{image}"',
                            }
                        },
                    )
                ]

    # -- the API --------------------------------------------------------------------------
    def handle(self, request: Request) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(request)
            self._authorize(request)
            path = request.path
            if request.method == "GET" and path.rstrip("/") == "/version":
                return 200, _version()
            if request.query.get("watch") == ["true"]:
                # watches are followed on the real cluster (test_status_feed_kubernetes.py);
                # here they are refused, so a feed falls back to asking, never answers stale
                raise ApiError(501, "NotImplemented", "the in-test API server serves no watches")
            if match := _JOBS.match(path):
                if request.method == "POST":
                    return 201, self._create_job(match["ns"], request.body)
                if request.method == "GET":
                    return 200, self._list_jobs(match["ns"], request.query)
            if match := _JOB.match(path):
                if request.method == "GET":
                    return 200, self._read_job(match["ns"], match["name"])
                if request.method == "DELETE":
                    return 200, self._delete_job(match["ns"], match["name"], request)
                if request.method == "PATCH":
                    return 200, self._patch_job(match["ns"], match["name"], request.body or {})
            if (match := _PODS.match(path)) and request.method == "GET":
                return 200, self._list_pods(match["ns"], request.query)
            if (match := _POD_LOG.match(path)) and request.method == "GET":
                return 200, self._pod_log(match["ns"], match["name"], request.query)
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _authorize(self, request: Request) -> None:
        if self.token is not None:
            scheme, _, token = (request.authorization or "").partition(" ")
            if scheme.lower() != "bearer" or token != self.token:
                raise ApiError(401, "Unauthorized", "Unauthorized")
        if self.forbidden and request.path.rstrip("/") != "/version":
            resource = "pods" if "/pods" in request.path else "jobs"
            raise ApiError(
                403,
                "Forbidden",
                f'{resource} is forbidden: User "system:serviceaccount:default:pfcon" cannot '
                f'{request.method.lower()} resource "{resource}" in the namespace "default"',
                {"kind": resource},
            )

    def _create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("metadata", {}).get("name", "")
        try:
            kubernetes_validate.validate(body, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise ApiError(422, "Invalid", f'Job.batch "{name}" is invalid: {exc.message}') from None
        if not _DNS_LABEL.fullmatch(name):
            raise ApiError(422, "Invalid", f'Job.batch "{name}" is invalid: metadata.name: Invalid value')
        if body["metadata"].get("namespace", namespace) != namespace:
            raise ApiError(
                400, "BadRequest", "the namespace of the provided object does not match the request"
            )
        if (namespace, name) in self.jobs:
            raise ApiError(
                409, "AlreadyExists", f'jobs.batch "{name}" already exists', {"name": name, "kind": "jobs"}
            )
        self.created.append(copy.deepcopy(body))
        job = copy.deepcopy(body)
        uid = str(uuid.uuid4())
        job["metadata"].update(namespace=namespace, uid=uid, resourceVersion="1", creationTimestamp=now())
        # defaulted by the API server: a selector on the Job's uid, and the labels it matches
        uid_labels = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
        job["spec"].setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        template_meta = job["spec"]["template"].setdefault("metadata", {})
        template_meta["labels"] = {
            **template_meta.get("labels", {}),
            **uid_labels,
            "batch.kubernetes.io/job-name": name,
            "job-name": name,
        }
        workers = job["spec"].get("parallelism", 1)
        job["status"] = {"active": workers, "ready": 0, "startTime": now()}
        self.jobs[(namespace, name)] = job
        for _ in range(min(workers, self.first_batch or workers)):
            self._create_pod(namespace, job)
        return job

    def _create_pod(self, namespace: str, job: dict[str, Any]) -> None:
        """What the Job controller does: a pod from the template, labelled with the Job."""
        name = f"{job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        template = copy.deepcopy(job["spec"]["template"])
        labels = template["metadata"]["labels"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "creationTimestamp": now()},
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        pod["status"]["containerStatuses"] = [
            _container_status(pod, {"waiting": {"reason": "ContainerCreating"}})
        ]
        if self.start_pods:
            _set_running(pod)
        self.pods[(namespace, name)] = pod

    def _read_job(self, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) not in self.jobs:
            raise ApiError(404, "NotFound", f'jobs.batch "{name}" not found', {"name": name, "kind": "jobs"})
        return self.jobs[(namespace, name)]

    def _list_jobs(self, namespace: str, query: dict[str, list[str]]) -> dict[str, Any]:
        selector = _selector(query)
        items = [j for (ns, _), j in self.jobs.items() if ns == namespace and selector(j)]
        limit = int(query.get("limit", ["0"])[0]) or len(items)
        return {
            "kind": "JobList",
            "apiVersion": "batch/v1",
            "metadata": {"resourceVersion": "1"},
            "items": items[:limit],
        }

    def _patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of ``spec.suspend`` only; suspending ends the Job's pods, as the Job
        controller does, and keeps the Job."""
        job = self._read_job(namespace, name)
        if set(patch) != {"spec"} or set(patch["spec"]) != {"suspend"}:
            raise ApiError(422, "Invalid", f"this fake server patches spec.suspend only, got {patch}")
        job["spec"]["suspend"] = bool(patch["spec"]["suspend"])
        if job["spec"]["suspend"]:
            for pod in self.pods_of(name, namespace):
                del self.pods[(namespace, pod["metadata"]["name"])]
            job["status"].pop("active", None)
            job["status"]["ready"] = 0
            job["status"]["conditions"] = [_condition("Suspended", "JobSuspended", "Job suspended")]
        return job

    def _delete_job(self, namespace: str, name: str, request: Request) -> dict[str, Any]:
        job = self._read_job(namespace, name)
        policy = (request.query.get("propagationPolicy") or [None])[0] or (request.body or {}).get(
            "propagationPolicy"
        )
        pods = self.pods_of(name, namespace)
        del self.jobs[(namespace, name)]
        if policy in ("Background", "Foreground") and self.collect_garbage:
            for pod in pods:
                del self.pods[(namespace, pod["metadata"]["name"])]
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": "batch", "kind": "jobs", "uid": job["metadata"]["uid"]},
        }

    def _list_pods(self, namespace: str, query: dict[str, list[str]]) -> dict[str, Any]:
        selector = _selector(query)
        items = [p for (ns, _), p in sorted(self.pods.items()) if ns == namespace and selector(p)]
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}

    def _pod_log(self, namespace: str, name: str, query: dict[str, list[str]]) -> str:
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        state = pod["status"]["containerStatuses"][0]["state"]
        if "waiting" in state:
            container = pod["spec"]["containers"][0]["name"]
            raise ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: {state["waiting"]["reason"]}',
            )
        lines = self.logs.get(name, "").splitlines(keepends=True)
        if "tailLines" in query:
            tail = int(query["tailLines"][0])
            lines = lines[-tail:] if tail else []
        return "".join(lines)


def _owner(pod: dict[str, Any]) -> tuple[str, str]:
    labels = pod["metadata"]["labels"]
    return labels.get("batch.kubernetes.io/job-name", ""), labels.get(
        "batch.kubernetes.io/controller-uid", ""
    )


def _selector(query: dict[str, list[str]]):
    """``labelSelector`` with the two forms pfcon uses: ``key=value`` and ``key`` (exists)."""
    terms = [t for t in (query.get("labelSelector") or [""])[0].split(",") if t]

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj["metadata"].get("labels", {})
        for term in terms:
            key, sep, value = term.partition("=")
            if key not in labels or (sep and labels[key] != value):
                return False
        return True

    return matches


def _condition(kind: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    condition = {"type": kind, "status": "True", "lastProbeTime": now(), "lastTransitionTime": now()}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _container_status(pod: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    container = pod["spec"]["containers"][0]
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": "running" in state,
        "restartCount": 0,
        "started": "running" in state,
        "state": state,
    }


def _set_running(pod: dict[str, Any]) -> None:
    pod["status"]["phase"] = "Running"
    pod["status"]["startTime"] = now()
    pod["status"]["containerStatuses"] = [_container_status(pod, {"running": {"startedAt": now()}})]


def _set_terminated(pod: dict[str, Any], exit_code: int, reason: str) -> None:
    pod["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
    terminated = {"exitCode": exit_code, "reason": reason, "startedAt": now(), "finishedAt": now()}
    pod["status"]["containerStatuses"] = [_container_status(pod, {"terminated": terminated})]


def _version() -> dict[str, str]:
    major, minor, _ = K8S_VERSION.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{K8S_VERSION}",
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    cluster: FakeCluster

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = Request(
            self.command,
            url.path,
            parse_qs(url.query),
            json.loads(raw) if raw else None,
            self.headers.get("Authorization"),
        )
        try:
            code, body = self.cluster.handle(request)
        except ApiError as exc:
            code, body = exc.code, exc.status()
        if isinstance(body, str):
            self._send(code, body.encode(), "text/plain")
        else:
            self._send(code, json.dumps(body).encode(), "application/json")

    def _send(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet under pytest
        pass


class FakeApiServer:
    """Serves a :class:`FakeCluster` on 127.0.0.1 (HTTPS when given a server SSL context)."""

    def __init__(self, cluster: FakeCluster, ssl_context: ssl.SSLContext | None = None) -> None:
        handler = type("Handler", (_Handler,), {"cluster": cluster})
        self.cluster = cluster
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if ssl_context else "http"
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_kubeconfig(
    path: Any, url: str, token: str, ca_file: str | None = None, namespace: str = "default"
) -> str:
    """A kubeconfig with one cluster, one token user and one current context."""
    cluster: dict[str, Any] = {"server": url}
    if ca_file:
        cluster["certificate-authority"] = str(ca_file)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": cluster}],
        "users": [{"name": "pfcon", "user": {"token": token}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "pfcon", "namespace": namespace}}
        ],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return str(path)
