"""Every Job manifest the backend builds passes the official Kubernetes schema, strictly.

``kubernetes-validate`` checks against the JSON schemas generated from Kubernetes' OpenAPI
(strict: unknown fields are errors, as with ``kubectl --validate=strict``). The assertions
then check that each setting lands where the issue asks.
"""

from __future__ import annotations

import itertools

import kubernetes_validate
import pytest

from pfcon.compute.base import JobSpec, Mount, Resources
from pfcon.compute.kubernetes.job import GPU_RESOURCE, JOB_LABEL, JobTemplate, build_job
from pfcon.errors import InvalidJob

K8S_VERSION = "1.37.0"
MOUNTS = (
    Mount("/key-chris-jid-7/incoming", "/share/incoming", read_only=True),
    Mount("/key-chris-jid-7/outgoing", "/share/outgoing", read_only=False),
)


def spec(**overrides) -> JobSpec:
    fields = {
        "jid": "chris-jid-7",
        "image": "ghcr.io/fnndsc/pl-simpledsapp:2.1.0",
        "command": ("simpledsapp", "--prefix", "le", "/share/incoming", "/share/outgoing"),
        "env": {"A": "1", "HOME": "/tmp"},
        "resources": Resources(number_of_workers=1, cpu_millicores=1000, memory_mib=200, gpus=0),
        "mounts": MOUNTS,
        "labels": {"org.chrisproject.job_type": "plugin"},
    }
    fields.update(overrides)
    return JobSpec(**fields)


SPECS = {
    "plain": spec(),
    "workers, gpus, user, shm": spec(
        resources=Resources(4, 2500, 4096, 2), user="1001:1002", shm_size_mib=512, env={}
    ),
    "no limits (IGNORE_LIMITS)": spec(resources=Resources(1, None, None, 0)),
}
TEMPLATES = {
    "defaults": JobTemplate(namespace="default", claim_name="storebase"),
    "everything": JobTemplate(
        namespace="chris",
        claim_name="pfcon-storebase",
        node_selector={"kubernetes.io/arch": "amd64", "gpu": "a100"},
        image_pull_secrets=("regcred", "mirror"),
        ttl_seconds=600,
        deadline_seconds=7200,
    ),
}


@pytest.mark.parametrize(("spec_name", "template_name"), list(itertools.product(SPECS, TEMPLATES)))
def test_every_manifest_passes_the_official_schema_strictly(spec_name: str, template_name: str) -> None:
    manifest = build_job(SPECS[spec_name], TEMPLATES[template_name])
    assert kubernetes_validate.validate(manifest, K8S_VERSION, strict=True) == "1.37"


def test_strict_validation_would_catch_a_mistake() -> None:
    """The check is not vacuous: a misspelt field or a wrong type is refused."""
    manifest = build_job(spec(), TEMPLATES["defaults"])
    manifest["spec"]["backofLimit"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    manifest = build_job(spec(), TEMPLATES["defaults"])
    manifest["spec"]["parallelism"] = "4"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_the_job_carries_every_setting() -> None:
    job = build_job(SPECS["workers, gpus, user, shm"], TEMPLATES["everything"])
    assert job["metadata"] == {
        "name": "chris-jid-7",
        "namespace": "chris",
        "labels": {"org.chrisproject.job_type": "plugin", JOB_LABEL: "chris-jid-7"},
    }
    assert {k: job["spec"][k] for k in job["spec"] if k != "template"} == {
        "parallelism": 4,
        "completions": 4,
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 600,
        "activeDeadlineSeconds": 7200,
    }
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"][JOB_LABEL] == "chris-jid-7"
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64", "gpu": "a100"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert pod["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1001,
        "runAsGroup": 1002,
        "runAsNonRoot": True,
    }
    assert pod["volumes"] == [
        {"name": "storebase", "persistentVolumeClaim": {"claimName": "pfcon-storebase"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}},
    ]
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsUser": 1001,
        "runAsGroup": 1002,
        "runAsNonRoot": True,
    }
    amounts = {"cpu": "2500m", "memory": "4096Mi", GPU_RESOURCE: "2"}
    assert container["resources"] == {"limits": amounts, "requests": amounts}
    assert container["volumeMounts"] == [
        {
            "name": "storebase",
            "mountPath": "/share/incoming",
            "subPath": "key-chris-jid-7/incoming",
            "readOnly": True,
        },
        {
            "name": "storebase",
            "mountPath": "/share/outgoing",
            "subPath": "key-chris-jid-7/outgoing",
            "readOnly": False,
        },
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]


def test_defaults_leave_optional_fields_out() -> None:
    job = build_job(SPECS["no limits (IGNORE_LIMITS)"], TEMPLATES["defaults"])
    pod = job["spec"]["template"]["spec"]
    assert "ttlSecondsAfterFinished" not in job["spec"] and "activeDeadlineSeconds" not in job["spec"]
    assert not {"nodeSelector", "imagePullSecrets"} & set(pod)
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert "resources" not in pod["containers"][0]
    assert [v["name"] for v in pod["volumes"]] == ["storebase"]


@pytest.mark.parametrize("source", ["/", "", "/..", "/key-x/../../etc", "../up"])
def test_a_mount_outside_the_volume_is_refused(source: str) -> None:
    mounts = (Mount(source, "/share/incoming", True), MOUNTS[1])
    with pytest.raises(InvalidJob, match="storeBase"):
        build_job(spec(mounts=mounts), TEMPLATES["defaults"])


def test_a_root_container_user_is_not_claimed_non_root() -> None:
    """CONTAINER_USER=0:0 is honoured as asked; runAsNonRoot would make the kubelet refuse it."""
    job = build_job(spec(user="0:0"), TEMPLATES["defaults"])
    security = job["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (0, 0) and "runAsNonRoot" not in security
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
