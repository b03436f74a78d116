"""Kubernetes backend: each job is a batch/v1 Job in JOB_NAMESPACE (official ``kubernetes`` client).

One API client serves the whole process; how it reaches the cluster (the pod's service
account, or a kubeconfig) is chosen once at start-up by :func:`client_configuration`. The
Job manifest is built by :mod:`pfcon.compute.kubernetes.job`. A job's state is read from the
Job and its pods and mapped to pfcon's statuses through :data:`STATE_TABLE`; the status feed
follows their changes through watches (:mod:`pfcon.compute.kubernetes.watch`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from kubernetes.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)
from kubernetes.config.kube_config import load_kube_config

from pfcon.compute.base import Capabilities, ComputeBackend, EngineEvent, JobInfo, JobSpec, JobStatus
from pfcon.compute.kubernetes.job import JOB_LABEL, JobTemplate, build_job, check_job_name
from pfcon.compute.kubernetes.watch import JOBS, PODS, JobWatch
from pfcon.errors import BackendUnavailable, InvalidJob, JobExists, JobNotFound
from pfcon.settings import KubernetesSettings, SettingsError

log = logging.getLogger(__name__)

POOL_SIZE = 64
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read: a slow API server is an outage, not a hang
MAX_WORKERS = 1000
#: a pod's container waiting for these reasons will not start without a new image reference
IMAGE_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})

#: The engine state derived by :func:`engine_state` -> our status. Job conditions come
#: first (they are final), except that a container killed for its memory makes a finished
#: job an error even when the Job reads Complete: a shell whose child was OOM-killed can
#: still exit 0. Then pods: an image pull failure ends the job, a running pod means
#: started, pods still pending (or none yet) mean not started.
STATE_TABLE: Mapping[str, JobStatus] = {
    "pod:OOMKilled": JobStatus.finishedWithError,  # even when the Job reads Complete (below)
    "job:Complete": JobStatus.finishedSuccessfully,
    "job:SuccessCriteriaMet": JobStatus.finishedSuccessfully,
    "job:Failed": JobStatus.finishedWithError,
    "job:FailureTarget": JobStatus.finishedWithError,
    "pod:ImagePullFailed": JobStatus.finishedWithError,
    "pod:Running": JobStatus.started,
    "pod:Succeeded": JobStatus.started,  # the Job controller has not yet marked the Job
    "pod:Failed": JobStatus.started,  # likewise; the Failed condition follows
    "pod:Pending": JobStatus.notStarted,
    "job:NoPods": JobStatus.notStarted,
    "job:Suspended": JobStatus.finishedWithError,  # pfcon suspends a Job only to stop it
}


def client_configuration(
    settings: KubernetesSettings,
    token_file: str = SERVICE_TOKEN_FILENAME,
    ca_file: str = SERVICE_CERT_FILENAME,
) -> k8s.Configuration:
    """The service account when running in a pod, else the kubeconfig; read once at start-up."""
    configuration = k8s.Configuration()
    try:
        if settings.in_cluster:
            environ = {
                "KUBERNETES_SERVICE_HOST": settings.service_host or "",
                "KUBERNETES_SERVICE_PORT": settings.service_port or "",
            }
            InClusterConfigLoader(token_file, ca_file, environ=environ).load_and_set(configuration)
        else:
            load_kube_config(config_file=settings.kubeconfig, client_configuration=configuration)
    except (ConfigException, OSError, ValueError) as exc:
        variable = "KUBERNETES_SERVICE_HOST" if settings.in_cluster else "KUBECONFIG"
        source = "in-cluster service account" if settings.in_cluster else f"kubeconfig {settings.kubeconfig}"
        raise SettingsError(variable, f"cannot load the {source}: {exc}") from None
    configuration.connection_pool_maxsize = POOL_SIZE
    configuration.retries = 1
    return configuration


class KubernetesBackend(ComputeBackend):
    """Runs each job as a batch/v1 Job, one pod per worker."""

    name = "kubernetes"
    capabilities = Capabilities(max_workers=MAX_WORKERS, gpus=True, shm_size=True, labels=True)
    event_stream = True

    def __init__(self, configuration: k8s.Configuration, template: JobTemplate) -> None:
        self.api = k8s.ApiClient(configuration)
        self.batch = k8s.BatchV1Api(self.api)
        self.core = k8s.CoreV1Api(self.api)
        self.template = template
        self.namespace = template.namespace
        self.watch = JobWatch(self.core, self.batch, self.namespace)

    # -- errors ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _api(self, action: str, jid: str = "") -> Iterator[None]:
        """Translate API answers into domain errors; nothing from the client library leaks."""
        try:
            yield
        except ApiException as exc:
            detail = _status_message(exc)
            if exc.status == 404:
                raise JobNotFound(f"job {jid!r} is not known to kubernetes ({detail})") from exc
            if exc.status == 409:
                raise JobExists(f"job {jid!r} already exists in namespace {self.namespace!r}") from exc
            if exc.status in (400, 422):
                raise InvalidJob(f"kubernetes refused to {action}: {detail}") from exc
            raise BackendUnavailable(f"kubernetes failed to {action} (HTTP {exc.status}): {detail}") from exc
        except ValueError as exc:  # the client could not read the answer into its models
            raise BackendUnavailable(
                f"kubernetes gave an answer pfcon cannot read when asked to {action}: {type(exc).__name__}"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BackendUnavailable(
                f"the kubernetes API server at {self.api.configuration.host} does not answer "
                f"({type(exc).__name__})"
            ) from exc

    # -- interface ------------------------------------------------------------------------
    def ping(self) -> str:
        """The server's version, and that pfcon may list Jobs in its namespace (RBAC)."""
        with self._api("answer a ping"):
            version = k8s.VersionApi(self.api).get_code(_request_timeout=REQUEST_TIMEOUT)
        with self._api(f"list jobs in namespace {self.namespace!r}"):
            self.batch.list_namespaced_job(
                self.namespace, limit=1, label_selector=JOB_LABEL, _request_timeout=REQUEST_TIMEOUT
            )
        return f"{self.name} {version.git_version}"

    def validate(self, spec: JobSpec) -> None:
        super().validate(spec)
        check_job_name(spec.jid)
        build_job(spec, self.template)  # refuses mounts that leave the storeBase volume
        with contextlib.suppress(JobNotFound), self._api("look up the job", spec.jid):
            self._job(spec.jid)
            raise JobExists(f"job {spec.jid!r} already exists in namespace {self.namespace!r}")

    def submit(self, spec: JobSpec) -> JobInfo:
        body = k8s.V1Job.from_dict(build_job(spec, self.template))
        with self._api("create the job", spec.jid):
            job = self.batch.create_namespaced_job(self.namespace, body, _request_timeout=REQUEST_TIMEOUT)
        return dataclasses.replace(self._job_info(job, []), engine_id=job.metadata.uid)

    def info(self, jid: str) -> JobInfo:
        return self.snapshot(jid, 0)[0]

    def logs(self, jid: str, tail: int) -> str:
        return self.snapshot(jid, tail)[1]

    def snapshot(self, jid: str, tail: int) -> tuple[JobInfo, str]:
        """One Job read, one pod list, and one log read per pod when logs are wanted."""
        with self._api("read the job", jid):
            job = self._job(jid)
            pods = self._pods(job)
            logs = self._logs(pods, tail) if tail > 0 else ""
        return self._job_info(job, pods), logs

    def poll_all(self, jids: Iterable[str]) -> dict[str, JobInfo]:
        """Two list calls for all live jobs (pfcon's Jobs, then all their pods), not two per job.

        The watches resume where these lists stand, so no change between this full read and
        the next window is missed; with no live job one item of each is enough for that.
        """
        wanted = set(jids)
        limit = None if wanted else 1
        with self._api("list the jobs"):
            job_list = self.batch.list_namespaced_job(
                self.namespace, label_selector=JOB_LABEL, limit=limit, _request_timeout=REQUEST_TIMEOUT
            )
            pod_list = self.core.list_namespaced_pod(
                self.namespace, label_selector=JOB_LABEL, limit=limit, _request_timeout=REQUEST_TIMEOUT
            )
        self.watch.resume_from(
            {JOBS: job_list.metadata.resource_version, PODS: pod_list.metadata.resource_version}
        )
        if not wanted:
            return {}
        jobs, pods = job_list.items, pod_list.items
        found: dict[str, JobInfo] = {}
        for job in jobs:
            name = job.metadata.name
            if name in wanted and (job.metadata.labels or {}).get(JOB_LABEL) == name:
                found[name] = self._job_info(job, _pods_of(job, pods))
        return found

    def events(self, since: float, until: float) -> Iterator[EngineEvent]:
        """Changes of pfcon's pods and Jobs until ``until``, from watches that resume where the
        last window (or :meth:`poll_all`) left off, not from ``since``: Kubernetes counts
        changes by resourceVersion, not by time."""
        return self.watch.events(until)

    def remove(self, jid: str) -> None:
        """Delete the Job; its pods go in the background (the Job is gone at once)."""
        with self._api("remove the job", jid):
            self._job(jid)
            self.batch.delete_namespaced_job(
                jid, self.namespace, propagation_policy="Background", _request_timeout=REQUEST_TIMEOUT
            )

    def stop(self, jid: str) -> None:
        """Suspend the Job: Kubernetes ends its running pods and keeps the Job.

        An API server older than 1.21 silently drops ``suspend``, a field it does not know (a
        real 1.20 cluster showed it: the job ran on). There an active deadline of one second
        ends the Job instead: the Job controller kills its pods and fails it (DeadlineExceeded).
        """
        with self._api("stop the job", jid):
            self._job(jid)
            job = self.batch.patch_namespaced_job(
                jid, self.namespace, {"spec": {"suspend": True}}, _request_timeout=REQUEST_TIMEOUT
            )
            if not job.spec.suspend:
                self.batch.patch_namespaced_job(
                    jid,
                    self.namespace,
                    {"spec": {"activeDeadlineSeconds": 1}},
                    _request_timeout=REQUEST_TIMEOUT,
                )

    def close(self) -> None:
        self.api.close()

    # -- helpers --------------------------------------------------------------------------
    def _job(self, jid: str) -> k8s.V1Job:
        job = self.batch.read_namespaced_job(jid, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        if (job.metadata.labels or {}).get(JOB_LABEL) != jid:
            raise JobNotFound(f"job {jid!r} exists but was not created by pfcon")
        return job

    def _pods(self, job: k8s.V1Job) -> list[k8s.V1Pod]:
        """This Job's pods, by the selector the API server gave it (its uid), so pods of an
        earlier Job of the same jid still being garbage-collected are not mixed in."""
        labels = _selector(job)
        pods = self.core.list_namespaced_pod(
            self.namespace,
            label_selector=",".join(f"{key}={value}" for key, value in sorted(labels.items())),
            _request_timeout=REQUEST_TIMEOUT,
        )
        return sorted(pods.items, key=lambda pod: pod.metadata.name)

    def _logs(self, pods: Sequence[k8s.V1Pod], tail: int) -> str:
        """The last ``tail`` lines of each pod; with several workers each is headed by its pod."""
        parts = []
        for pod in pods:
            try:
                text = self.core.read_namespaced_pod_log(
                    pod.metadata.name, self.namespace, tail_lines=tail, _request_timeout=REQUEST_TIMEOUT
                )
            except ApiException as exc:
                if exc.status not in (400, 404):  # not started yet / pod just went: no log
                    raise
                text = ""
            parts.append((pod.metadata.name, text))
        if len(parts) == 1:
            return parts[0][1]
        return "".join(f"==> pod {name} <==\n{_ended(text)}" for name, text in parts)

    def _job_info(self, job: k8s.V1Job, pods: Sequence[k8s.V1Pod]) -> JobInfo:
        container = job.spec.template.spec.containers[0]
        state, detail = engine_state(job, pods)
        return JobInfo(
            jid=job.metadata.name,
            image=container.image or "",
            cmd=shlex.join(container.command or []),
            status=STATE_TABLE.get(state, JobStatus.undefined),
            message=detail,
            timestamp=_timestamp(job),
        )


def _selector(job: k8s.V1Job) -> Mapping[str, str]:
    """The labels that pick this Job's pods (its uid), as the API server set them."""
    selector = job.spec.selector.match_labels if job.spec.selector else None
    return selector or {JOB_LABEL: job.metadata.name}


def _pods_of(job: k8s.V1Job, pods: Sequence[k8s.V1Pod]) -> list[k8s.V1Pod]:
    """Of many pods, this Job's (the same choice as :meth:`KubernetesBackend._pods` makes)."""
    labels = _selector(job)
    mine = [pod for pod in pods if all((pod.metadata.labels or {}).get(k) == v for k, v in labels.items())]
    return sorted(mine, key=lambda pod: pod.metadata.name)


def engine_state(job: k8s.V1Job, pods: Sequence[k8s.V1Pod]) -> tuple[str, str]:
    """The one state (a :data:`STATE_TABLE` key) of a Job and its pods, with a message."""
    for condition in job.status.conditions if job.status and job.status.conditions else []:
        if condition.status == "True" and f"job:{condition.type}" in STATE_TABLE:
            killed = _out_of_memory(pods)
            if killed and condition.type in ("Complete", "SuccessCriteriaMet"):
                return "pod:OOMKilled", f"out of memory: {killed} was killed for exceeding its memory limit"
            return f"job:{condition.type}", _condition_message(condition, pods)
    for pod in pods:
        for status in _container_statuses(pod):
            waiting = status.state.waiting if status.state else None
            if waiting and waiting.reason in IMAGE_PULL_FAILURES:
                return "pod:ImagePullFailed", (
                    f"image pull failed for {status.image!r}: {waiting.reason}: {waiting.message or ''}"
                ).rstrip(": ")
    phases = [pod.status.phase if pod.status else None for pod in pods]
    if not phases:
        return "job:NoPods", "waiting for the job's pods to be created"
    # The Job controller creates pods in slow-start batches (a 2-worker Job first has one pod),
    # so the count to report against is the Job's, not the pods seen so far.
    expected = max(job.spec.parallelism or 1, len(phases))
    for phase in ("Running", "Pending", "Failed", "Succeeded"):
        if phase in phases:
            return f"pod:{phase}", f"{phases.count(phase)} of {expected} pods {phase.lower()}"
    unknown = next(phase for phase in phases if phase not in ("Running", "Pending", "Failed", "Succeeded"))
    return f"pod:{unknown}", f"unexpected pod phase {unknown!r}"


def _out_of_memory(pods: Sequence[k8s.V1Pod]) -> str:
    """The first pod whose container the kernel killed for its memory limit, whatever its exit code."""
    for pod in pods:
        for status in _container_statuses(pod):
            ended = status.state.terminated if status.state else None
            if ended is not None and ended.reason == "OOMKilled":
                return f"pod {pod.metadata.name}"
    return ""


def _condition_message(condition: k8s.V1JobCondition, pods: Sequence[k8s.V1Pod]) -> str:
    """For a failed Job, say why its pod ended (exit code, out of memory) before the Job's reason."""
    reason = ": ".join(part for part in (condition.reason, condition.message) if part)
    if condition.type not in ("Failed", "FailureTarget"):
        return reason or condition.type.lower()
    killed = _out_of_memory(pods)
    if killed:
        return f"out of memory: {killed} was killed for exceeding its memory limit ({reason})"
    for pod in pods:
        for status in _container_statuses(pod):
            ended = status.state.terminated if status.state else None
            if ended is not None and ended.exit_code != 0:
                return f"exited with code {ended.exit_code} in pod {pod.metadata.name} ({reason})"
    return reason or "failed"


def _container_statuses(pod: k8s.V1Pod) -> list[k8s.V1ContainerStatus]:
    return list(pod.status.container_statuses or []) if pod.status else []


def _timestamp(job: k8s.V1Job) -> str:
    status = job.status
    moments: list[datetime | None] = []
    if status:
        moments.append(status.completion_time)
        moments.extend(c.last_transition_time for c in status.conditions or [] if c.status == "True")
        moments.append(status.start_time)
    moments.append(job.metadata.creation_timestamp)
    first = next((moment for moment in moments if moment is not None), None)
    return first.isoformat() if first else ""


def _status_message(exc: ApiException) -> str:
    """The ``message`` of the API's Status answer, else the HTTP reason."""
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        body: Any = json.loads(exc.body or "")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return str(exc.reason or "no reason given")


def _ended(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"
