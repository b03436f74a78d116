"""Cromwell backend: each job is one WDL 1.0 workflow on a Cromwell server (as in pfcon 5.3).

Nothing here waits for Cromwell to catch up. Submitting answers with the new workflow's id,
which is kept in memory and in the job's folder (``key-<jid>/cromwell.json``), so status,
logs and delete find the workflow at once, from any worker process and after a restart.
Cromwell's label query (every workflow carries the label ``org.chrisproject.pfcon.jid``) is
only the fallback for a job whose file is missing: Cromwell fills its query index a few
seconds after a submission, which is why pfcon 5.3 had to poll it.

Cromwell never forgets a workflow, so removing a job aborts it and then relabels it (the jid
label becomes ``(removed)``): a later job with the same jid does not meet the old one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pfcon.compute.base import Capabilities, ComputeBackend, JobInfo, JobSpec, JobStatus, utc_now
from pfcon.compute.cromwell import wdl
from pfcon.compute.cromwell.client import (
    CromwellClient,
    CromwellRefused,
    CromwellUnavailable,
    WorkflowNotFound,
)
from pfcon.compute.logtail import read_tail
from pfcon.compute.volumes import HostPaths
from pfcon.errors import BackendUnavailable, InvalidInput, InvalidJob, JobExists, JobNotFound
from pfcon.storebase import StoreBase, resolve_inside

log = logging.getLogger(__name__)

JOB_LABEL = "org.chrisproject.pfcon.jid"
REMOVED_LABEL = "org.chrisproject.pfcon.removed"
REMOVED = "(removed)"  # never a valid jid
REF_FILE = "cromwell.json"
#: calls are never served from Cromwell's call cache: a cached call would write no outputs
WORKFLOW_OPTIONS = {"read_from_cache": False, "write_to_cache": False}
#: how long a workflow we submitted may stay invisible to Cromwell's metadata before it is lost
VISIBILITY_GRACE_SECONDS = 120.0
MAX_WORKERS = 1024

#: Cromwell workflow status -> ours. Anything else is ``undefined``.
STATE_TABLE: Mapping[str, JobStatus] = {
    "On Hold": JobStatus.notStarted,
    "Submitted": JobStatus.notStarted,
    "Running": JobStatus.started,
    "Aborting": JobStatus.finishedWithError,
    "Aborted": JobStatus.finishedWithError,
    "Succeeded": JobStatus.finishedSuccessfully,
    "Failed": JobStatus.finishedWithError,
}


@dataclass(frozen=True)
class WorkflowRef:
    """Which Cromwell workflow runs a job, and what pfcon asked of it."""

    workflow_id: str
    image: str = ""
    cmd: str = ""
    submitted_at: float = 0.0  # time.time() of the submission; 0 when found by label


class CromwellBackend(ComputeBackend):
    name = "cromwell"
    # CONTAINER_USER and SHM_SIZE have no Cromwell runtime attribute: refused at start-up
    capabilities = Capabilities(max_workers=MAX_WORKERS, gpus=True, shm_size=False, labels=True, user=False)

    def __init__(
        self,
        client: CromwellClient,
        storebase: StoreBase,
        volumes: HostPaths,
        options: wdl.RuntimeOptions | None = None,
    ) -> None:
        self.client = client
        self.storebase = storebase
        self.volumes = volumes
        self.options = options or wdl.RuntimeOptions()
        self._refs: dict[str, WorkflowRef] = {}
        self._lock = threading.Lock()

    # -- errors ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _cromwell(self, action: str, jid: str) -> Iterator[None]:
        """Cromwell's answers as domain errors: 404 -> JobNotFound, 4xx -> InvalidJob, else 503."""
        try:
            yield
        except WorkflowNotFound as exc:
            raise JobNotFound(f"job {jid!r}: Cromwell does not know its workflow ({exc.message})") from exc
        except CromwellRefused as exc:
            raise InvalidJob(f"Cromwell refused to {action}: {exc.message}") from exc
        except CromwellUnavailable as exc:
            raise BackendUnavailable(f"Cromwell failed to {action}: {exc.message}") from exc

    # -- interface ------------------------------------------------------------------------
    def ping(self) -> str:
        with self._cromwell("answer a ping", ""):
            version = self.client.version()
        return f"{self.name} {version} at {self.client.url}"

    def validate(self, spec: JobSpec) -> None:
        super().validate(spec)
        if spec.user:
            raise InvalidJob("CONTAINER_USER: Cromwell jobs cannot be given a user")
        if not spec.image or any(c.isspace() or not c.isprintable() for c in spec.image):
            raise InvalidJob(f"image: {spec.image!r} is not a container image reference")
        wdl.render(spec, self.options)  # refuses what cannot be written (env names, mounts, NUL)
        if self._find(spec.jid) is not None:
            raise JobExists(f"job {spec.jid!r} already has a Cromwell workflow")

    def submit(self, spec: JobSpec) -> JobInfo:
        source = wdl.render(spec, self.options)
        if self._find(spec.jid) is not None:
            raise JobExists(f"job {spec.jid!r} already has a Cromwell workflow")
        labels = {**spec.labels, JOB_LABEL: spec.jid}
        with self._cromwell("accept the workflow", spec.jid):
            workflow_id = self.client.submit(source, labels, options=WORKFLOW_OPTIONS)
        self._remember(spec.jid, WorkflowRef(workflow_id, spec.image, spec.cmd, time.time()))
        log.info("[%s] submitted to Cromwell as workflow %s", spec.jid, workflow_id)
        return JobInfo(
            spec.jid,
            spec.image,
            spec.cmd,
            JobStatus.notStarted,
            f"submitted to Cromwell as workflow {workflow_id}",
            utc_now(),
            engine_id=workflow_id,
        )

    def info(self, jid: str) -> JobInfo:
        return self._describe(jid)[0]

    def logs(self, jid: str, tail: int) -> str:
        return self.snapshot(jid, tail)[1]

    def snapshot(self, jid: str, tail: int) -> tuple[JobInfo, str]:
        """One metadata call gives both the state and where Cromwell put the job's output."""
        info, metadata = self._describe(jid)
        return info, self._logs(metadata, tail) if tail > 0 else ""

    def remove(self, jid: str) -> None:
        ref = self._abort(jid)
        with self._cromwell("relabel the workflow", jid):
            self.client.update_labels(ref.workflow_id, {JOB_LABEL: REMOVED, REMOVED_LABEL: jid})
        self._forget(jid)
        log.info("[%s] workflow %s aborted and relabelled", jid, ref.workflow_id)

    def stop(self, jid: str) -> None:
        self._abort(jid)

    def _abort(self, jid: str) -> WorkflowRef:
        ref = self._ref(jid)
        with self._cromwell("abort the workflow", jid):
            try:
                self.client.abort(ref.workflow_id)
            except CromwellRefused as exc:
                if exc.status != 403:  # 403: already in a terminal state, nothing to stop
                    raise
                log.info("[%s] abort of %s refused: %s", jid, ref.workflow_id, exc.message)
        return ref

    def close(self) -> None:
        self.client.close()

    # -- the jid -> workflow mapping --------------------------------------------------------
    def _ref(self, jid: str) -> WorkflowRef:
        ref = self._find(jid)
        if ref is None:
            raise JobNotFound(f"job {jid!r} has no Cromwell workflow")
        return ref

    def _find(self, jid: str) -> WorkflowRef | None:
        """Memory, then the job's file, then Cromwell's label query (most recent match)."""
        with self._lock:
            ref = self._refs.get(jid)
        if ref is None:
            ref = self._load(jid)
        if ref is None:
            with self._cromwell("look up the job's workflow", jid):
                results = [
                    r
                    for r in self.client.query_label(JOB_LABEL, jid)
                    if (r.get("labels") or {}).get(JOB_LABEL, jid) == jid and r.get("id")
                ]
            if not results:
                return None
            latest = max(results, key=lambda r: str(r.get("submission") or ""))
            ref = WorkflowRef(str(latest["id"]))
        with self._lock:  # a submission finishing meanwhile knows more: never overwrite it
            return self._refs.setdefault(jid, ref)

    def _remember(self, jid: str, ref: WorkflowRef) -> None:
        with self._lock:
            self._refs[jid] = ref
        job_dir = self.storebase.job_dir(jid)
        if not job_dir.is_dir():
            return  # a job started without pfcon's folder (tests): memory and the label suffice
        fd, tmp = tempfile.mkstemp(dir=job_dir, prefix=".cromwell-", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(ref), handle)
        os.replace(tmp, job_dir / REF_FILE)

    def _load(self, jid: str) -> WorkflowRef | None:
        try:
            with (self.storebase.job_dir(jid) / REF_FILE).open() as handle:
                return WorkflowRef(**json.load(handle))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (ValueError, TypeError):
            log.warning("[%s] unreadable %s; falling back to Cromwell's label query", jid, REF_FILE)
            return None

    def _forget(self, jid: str) -> None:
        with self._lock:
            self._refs.pop(jid, None)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            (self.storebase.job_dir(jid) / REF_FILE).unlink()

    # -- state ----------------------------------------------------------------------------
    def _describe(self, jid: str) -> tuple[JobInfo, Mapping[str, Any]]:
        ref = self._ref(jid)
        try:
            with self._cromwell("describe the workflow", jid):
                metadata = self.client.metadata(ref.workflow_id)
        except JobNotFound:
            if ref.submitted_at and time.time() - ref.submitted_at < VISIBILITY_GRACE_SECONDS:
                message = f"submitted to Cromwell as workflow {ref.workflow_id}, not yet visible"
                return JobInfo(jid, ref.image, ref.cmd, JobStatus.notStarted, message, ""), {}
            self._forget_memory(jid)
            raise
        labels = metadata.get("labels")
        if isinstance(labels, dict) and labels.get(JOB_LABEL, jid) != jid:
            self._forget_memory(jid)  # removed by another worker process
            raise JobNotFound(f"job {jid!r} was removed")
        status, message = workflow_status(metadata)
        image = ref.image or str(_last_call(metadata).get("runtimeAttributes", {}).get("docker", ""))
        timestamp = str(metadata.get("end") or metadata.get("start") or metadata.get("submission") or "")
        return JobInfo(jid, image, ref.cmd, status, message, timestamp), metadata

    def _forget_memory(self, jid: str) -> None:
        with self._lock:
            self._refs.pop(jid, None)

    # -- logs -----------------------------------------------------------------------------
    def _logs(self, metadata: Mapping[str, Any], tail: int) -> str:
        """The tails of the call's stdout and stderr, when Cromwell wrote them under storeBase."""
        call = _last_call(metadata)
        parts = []
        for stream in ("stdout", "stderr"):
            path = call.get(stream)
            if not isinstance(path, str) or not path:
                continue
            local = self._local_path(path)
            if local is None:
                return f"logs unavailable: Cromwell keeps the job's {stream} at {path}, outside storeBase"
            parts.append(read_tail(local, tail))
        lines = "".join(part if part.endswith("\n") or not part else part + "\n" for part in parts)
        return "".join(lines.splitlines(keepends=True)[-tail:])

    def _local_path(self, engine_path: str) -> Path | None:
        """pfcon's view of a path Cromwell reported, if it lies inside storeBase."""
        root = self.volumes.root.rstrip("/") or "/"
        normal = posixpath.normpath(engine_path)
        if not posixpath.isabs(normal) or posixpath.commonpath([root, normal]) != root or normal == root:
            return None
        try:
            return resolve_inside(self.storebase.root, posixpath.relpath(normal, root), "log file")
        except InvalidInput:
            return None


def workflow_status(metadata: Mapping[str, Any]) -> tuple[JobStatus, str]:
    """Map a workflow's metadata to (status, message) through :data:`STATE_TABLE`."""
    state = str(metadata.get("status", ""))
    status = STATE_TABLE.get(state)
    if status is None:
        return JobStatus.undefined, f"unexpected Cromwell workflow status {state!r}"
    workflow = f"Cromwell workflow {metadata.get('id', '?')}"
    if state == "Failed":
        reason = failure_message(metadata.get("failures")) or "no reason given"
        return status, f"{workflow} failed: {reason}"
    return status, f"{workflow} {state.lower()}"


def failure_message(failures: Any) -> str:
    """Cromwell's nested ``failures`` (message + causedBy) as one line, innermost causes last."""
    messages: list[str] = []

    def walk(items: Any) -> None:
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                text = str(item.get("message") or "").strip()
                if text and text not in messages:
                    messages.append(text)
                walk(item.get("causedBy"))

    walk(failures)
    return ": ".join(messages)


def _last_call(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """The latest attempt of the workflow's task call (one task per pfcon workflow)."""
    calls = metadata.get("calls")
    attempts = calls.get(f"{wdl.WORKFLOW_NAME}.{wdl.TASK_NAME}") if isinstance(calls, dict) else None
    if not isinstance(attempts, list) or not attempts:
        return {}
    dicts = [a for a in attempts if isinstance(a, dict)]
    return max(dicts, key=lambda a: a["attempt"] if isinstance(a.get("attempt"), int) else 0, default={})
