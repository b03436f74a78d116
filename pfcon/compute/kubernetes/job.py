"""The batch/v1 Job manifest pfcon submits for one job (CONTAINER_ENV=kubernetes).

Built as the plain JSON document the API server takes, so the tests can validate exactly
what is sent against the official schemas (``kubernetes-validate``, strict), and so an
operator can read in one place what a pfcon job looks like on the cluster.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pfcon.compute.base import JobSpec, Mount
from pfcon.errors import InvalidJob

#: label on every Job and pod pfcon creates; pods are found by it and foreign Jobs ignored
JOB_LABEL = "org.chrisproject.pfcon.jid"
STOREBASE_VOLUME = "storebase"
SHM_VOLUME = "dshm"
GPU_RESOURCE = "nvidia.com/gpu"
#: a Job name becomes a pod label value (``batch.kubernetes.io/job-name``): an RFC 1123 label
_JOB_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class JobTemplate:
    """What every Job shares, from the settings: where it runs and how long it may live."""

    namespace: str
    claim_name: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    ttl_seconds: int | None = None
    deadline_seconds: int | None = None


def check_job_name(jid: str) -> None:
    """pfcon uses the jid as the Job's name, so it must be a lowercase RFC 1123 label."""
    if not _JOB_NAME.fullmatch(jid):
        raise InvalidJob(
            "jid: a Kubernetes Job name must be at most 63 lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit; got {jid!r}"
        )


def sub_path(mount: Mount) -> str:
    """A mount source is a path inside the storeBase volume; the Job mounts it as a subPath."""
    path = posixpath.normpath(mount.source.lstrip("/")) if mount.source.strip("/") else ""
    if not path or path == "." or path.startswith("../") or path == "..":
        raise InvalidJob(f"mount {mount.target}: {mount.source!r} is not a folder inside the storeBase")
    return path


def build_job(spec: JobSpec, template: JobTemplate) -> dict[str, Any]:
    """The Job for ``spec``: one pod per worker, never retried, with a locked-down container."""
    check_job_name(spec.jid)
    workers = spec.resources.number_of_workers
    labels = {**spec.labels, JOB_LABEL: spec.jid}
    job_spec: dict[str, Any] = {
        "parallelism": workers,
        "completions": workers,
        "backoffLimit": 0,  # a plugin that fails has failed; ChRIS decides about retries
        "template": {"metadata": {"labels": labels}, "spec": _pod_spec(spec, template)},
    }
    if template.ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = template.ttl_seconds
    if template.deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = template.deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": spec.jid, "namespace": template.namespace, "labels": labels},
        "spec": job_spec,
    }


def _pod_spec(spec: JobSpec, template: JobTemplate) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": STOREBASE_VOLUME, "persistentVolumeClaim": {"claimName": template.claim_name}}
    ]
    if spec.shm_size_mib:
        shm = {"medium": "Memory", "sizeLimit": f"{spec.shm_size_mib}Mi"}
        volumes.append({"name": SHM_VOLUME, "emptyDir": shm})
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # a plugin has no business with the API server
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(spec)],
        "volumes": volumes,
    }
    user = _user(spec.user)
    if user:  # no fsGroup: it would re-own the whole storeBase volume on every mount
        pod["securityContext"].update(user)
    if template.node_selector:
        pod["nodeSelector"] = dict(template.node_selector)
    if template.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in template.image_pull_secrets]
    return pod


def _container(spec: JobSpec) -> dict[str, Any]:
    mounts = [
        {
            "name": STOREBASE_VOLUME,
            "mountPath": mount.target,
            "subPath": sub_path(mount),
            "readOnly": mount.read_only,
        }
        for mount in spec.mounts
    ]
    if spec.shm_size_mib:
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        **_user(spec.user),
    }
    container: dict[str, Any] = {
        "name": spec.jid,
        "image": spec.image,
        "command": list(spec.command),
        "env": [{"name": key, "value": value} for key, value in spec.env.items()],
        "securityContext": security,
        "volumeMounts": mounts,
    }
    resources = _resources(spec)
    if resources:
        container["resources"] = {"limits": resources, "requests": dict(resources)}
    return container


def _resources(spec: JobSpec) -> dict[str, str]:
    """Limits equal requests: the scheduler places the job where its limits fit (Guaranteed QoS)."""
    res = spec.resources
    amounts: dict[str, str] = {}
    if res.cpu_millicores:
        amounts["cpu"] = f"{res.cpu_millicores}m"
    if res.memory_mib:
        amounts["memory"] = f"{res.memory_mib}Mi"
    if res.gpus:
        amounts[GPU_RESOURCE] = str(res.gpus)
    return amounts


def _user(user: str | None) -> dict[str, Any]:
    """CONTAINER_USER, already picked for this job as ``UID:GID``."""
    if not user:
        return {}
    uid, _, gid = user.partition(":")
    ids: dict[str, Any] = {"runAsUser": int(uid), "runAsGroup": int(gid or uid)}
    if int(uid) != 0:  # what the "restricted" Pod Security Standard asks for
        ids["runAsNonRoot"] = True
    return ids
