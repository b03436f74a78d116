"""pfcon's HTTP API with CONTAINER_ENV=kubernetes, end to end against the in-test API server.

The whole service is built as in production (settings -> registry -> backend through a
kubeconfig), jobs are submitted with zips over HTTP, and the Job pfcon creates is checked
as the in-test cluster received it. The cluster is told how the pods ended; no container runs.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.k8s_fixtures are redefined as arguments)
from __future__ import annotations

from pathlib import Path

import pytest

from pfcon.settings import load_settings
from tests.api_helpers import login, submit
from tests.helpers import job_form, wait_for
from tests.k8s_fixtures import api_server, cluster, kubeconfig  # noqa: F401
from tests.k8s_server import FakeCluster


@pytest.fixture
def make_k8s_app(kubeconfig: str, storebase: Path, build_app):
    """Apps on the fake cluster, closed before it stops."""

    def build(**env: str):
        settings = load_settings(
            {
                "APPLICATION_MODE": "development",
                "CONTAINER_ENV": "kubernetes",
                "COMPUTE_VOLUME_TYPE": "kubernetes_pvc",
                "VOLUME_NAME": "pfcon-storebase",
                "STOREBASE_MOUNT": str(storebase),
                "KUBECONFIG": kubeconfig,
                "JOB_NAMESPACE": "default",
                **env,
            }
        )
        return build_app(settings)

    return build


@pytest.fixture
def k8s_client(make_k8s_app):
    return make_k8s_app().test_client()


def status(client, auth, jid: str) -> dict:
    answer = client.get(f"/api/v1/jobs/{jid}/", headers=auth)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["compute"]


def created(cluster: FakeCluster, jid: str) -> dict:
    return wait_for(lambda: ("default", jid) in cluster.jobs and cluster.job(jid), timeout=10)


def test_submit_poll_delete(k8s_client, cluster, jid: str, storebase: Path) -> None:
    auth = login(k8s_client)
    info = k8s_client.get("/api/v1/jobs/", headers=auth).get_json()
    assert (info["container_env"], info["compute_volume_type"]) == ("kubernetes", "kubernetes_pvc")
    answer = submit(k8s_client, auth, job_form(jid), {"a.txt": "data"})
    assert answer.status_code == 201, answer.get_json()
    job = created(cluster, jid)
    mounts = {m["mountPath"]: m for m in job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/share/incoming"]["subPath"] == f"key-{jid}/incoming"
    assert mounts["/share/outgoing"]["subPath"] == f"key-{jid}/outgoing"
    assert (storebase / f"key-{jid}/incoming/a.txt").read_text() == "data"  # the PVC holds it
    assert job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "pfcon-storebase"
    }

    assert wait_for(lambda: status(k8s_client, auth, jid)["status"] == "started", timeout=10)
    cluster.write_logs(jid, "working\ndone\n")
    cluster.finish(jid)
    compute = wait_for(lambda: (c := status(k8s_client, auth, jid))["status"] != "started" and c, timeout=10)
    assert compute["status"] == "finishedSuccessfully" and compute["logs"] == "working\ndone\n"
    assert compute["cmd"] == "pl-copy --prefix out- /share/incoming /share/outgoing"

    assert k8s_client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    assert ("default", jid) not in cluster.jobs
    assert cluster.requests[-1].query["propagationPolicy"] == ["Background"]
    assert not (storebase / f"key-{jid}").exists()
    assert k8s_client.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404


def test_an_image_that_cannot_be_pulled_finishes_with_the_pull_error(k8s_client, cluster, jid: str) -> None:
    auth = login(k8s_client)
    image = "registry.example/nope:1"
    assert submit(k8s_client, auth, job_form(jid, image=image), {"a.txt": "x"}).status_code == 201
    created(cluster, jid)
    cluster.pull_failure(jid, "ErrImagePull", f'failed to pull and unpack image "{image}": not found')
    compute = wait_for(lambda: (c := status(k8s_client, auth, jid))["status"] != "started" and c, timeout=10)
    assert compute["status"] == "finishedWithError"
    assert image in compute["message"] and "ErrImagePull" in compute["message"]


def test_health_names_the_cluster_and_says_when_rbac_refuses(k8s_client, cluster) -> None:
    answer = k8s_client.get("/api/v1/health/")
    assert answer.status_code == 200 and "kubernetes v1.37.0" in str(answer.get_json())
    cluster.forbidden = True
    answer = k8s_client.get("/api/v1/health/")
    assert answer.status_code == 503 and "forbidden" in answer.get_json()["message"]


def test_forbidden_submission_is_503_and_leaves_nothing(
    k8s_client, cluster, jid: str, storebase: Path
) -> None:
    auth = login(k8s_client)
    cluster.forbidden = True
    answer = submit(k8s_client, auth, job_form(jid), {"a.txt": "x"})
    assert answer.status_code == 503, answer.get_json()
    assert "forbidden" in answer.get_json()["message"]
    assert not (storebase / f"key-{jid}").exists()


def test_a_jid_kubernetes_cannot_name_is_400(k8s_client, jid: str, storebase: Path) -> None:
    auth = login(k8s_client)
    answer = submit(k8s_client, auth, job_form("Chris_Jid_1"), {"a.txt": "x"})
    assert answer.status_code == 400 and "Kubernetes Job name" in answer.get_json()["message"]
    assert not (storebase / "key-Chris_Jid_1").exists()


def test_job_settings_reach_the_job(make_k8s_app, cluster, jid: str) -> None:
    client = make_k8s_app(
        NODE_SELECTOR="disk=ssd",
        IMAGE_PULL_SECRETS="regcred",
        JOB_LABELS="team=neuro",
        CONTAINER_USER="1001:1001",
        SHM_SIZE="256",
        JOB_TTL_SECONDS="600",
        JOB_DEADLINE_SECONDS="3600",
        IGNORE_LIMITS="no",
    ).test_client()
    auth = login(client)
    form = job_form(jid, number_of_workers="2", cpu_limit="1500", memory_limit="300", gpu_limit="1")
    assert submit(client, auth, form, {"a.txt": "x"}).status_code == 201
    job = created(cluster, jid)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert (job["spec"]["parallelism"], job["spec"]["completions"]) == (2, 2)
    assert (job["spec"]["ttlSecondsAfterFinished"], job["spec"]["activeDeadlineSeconds"]) == (600, 3600)
    assert pod["nodeSelector"] == {"disk": "ssd"} and pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert job["metadata"]["labels"]["team"] == "neuro"
    assert container["securityContext"]["runAsUser"] == 1001
    assert container["resources"]["limits"] == {"cpu": "1500m", "memory": "300Mi", "nvidia.com/gpu": "1"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert len(cluster.pods_of(jid)) == 2
