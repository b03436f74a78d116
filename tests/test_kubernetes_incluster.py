"""pfcon inside the real cluster: its own image, deployed with kubernetes/ as shipped.

The image is built from this checkout by scripts/build-image.sh and imported into the node
(no registry); the manifests are applied with ``kubectl apply -k`` (kubectl 1.20, the
cluster's own) through an overlay that only names that image. pfcon then runs with its
ServiceAccount and Role, reaches the API server with its service-account token, and is
reached through its Service (the API server's service proxy; no kube-proxy runs here).
A job goes through the whole API: token, submit, status, logs, download, delete.
"""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import zipfile
from collections.abc import Iterator

import pytest
import requests

from tests.helpers import RUN_ID, job_form, make_zip, wait_for
from tests.k8s_cluster import KUBECONFIG, ROOT, RealCluster
from tests.live import free_port

pytestmark = pytest.mark.integration

NAMESPACE = "pfcon"  # kubernetes/kustomization.yaml's
PKI = KUBECONFIG.parent / "pki"
IMAGE = f"localhost/pfcon-k8s-test:{RUN_ID}"
CREDENTIALS = {
    "SECRET_KEY": "in-cluster-secret-of-at-least-32-bytes",
    "PFCON_USER": "chris",
    "PFCON_PASSWORD": "chris1234",
}


def kubectl(*args: str) -> str:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/kubernetes/kubectl.sh"), *args], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def deployed(real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """pfcon deployed in namespace "pfcon"; yields the base URL of its Service via the proxy.

    The namespace is the manifests' own, so one session at a time deploys (a lock file)."""
    with open("/tmp/pfcon-k8s-incluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        core = real_cluster.core
        wait_for(lambda: NAMESPACE not in {n.metadata.name for n in core.list_namespace().items}, timeout=120)
        run("bash", str(ROOT / "scripts/build-image.sh"), IMAGE)
        run("bash", str(ROOT / "scripts/kubernetes/import-image.sh"), IMAGE)
        storebase = tmp_path_factory.mktemp("incluster-storebase")
        os.chown(storebase, 1001, 1001)  # the pod's user; a hostPath volume ignores fsGroup
        volume = f"pfcon-test-{RUN_ID}-incluster"
        core.create_persistent_volume(
            {
                "metadata": {"name": volume, "labels": {"pfcon.test": RUN_ID}},
                "spec": {
                    "capacity": {"storage": "100Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "hostPath": {"path": str(storebase), "type": "Directory"},
                    "claimRef": {"namespace": NAMESPACE, "name": "pfcon-storebase"},
                },
            }
        )
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        core.create_namespaced_secret(
            NAMESPACE, {"metadata": {"name": "pfcon-credentials"}, "stringData": CREDENTIALS}
        )
        overlay = tmp_path_factory.mktemp("overlay")
        (overlay / "kustomization.yaml").write_text(
            f"bases:\n  - {os.path.relpath(ROOT / 'kubernetes', overlay)}\n"
            f"images:\n  - name: pfcon\n    newName: {IMAGE.split(':')[0]}\n    newTag: '{RUN_ID}'\n"
        )
        try:
            kubectl("apply", "-k", str(overlay))
            kubectl("-n", NAMESPACE, "rollout", "status", "deployment/pfcon", "--timeout=180s")
            yield f"https://127.0.0.1:16443/api/v1/namespaces/{NAMESPACE}/services/pfcon:http/proxy/api/v1/"
        finally:
            for pod in core.list_namespaced_pod(
                NAMESPACE, label_selector="app.kubernetes.io/name=pfcon"
            ).items:
                print(core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE, tail_lines=50))
            core.delete_namespace(NAMESPACE)
            wait_for(
                lambda: NAMESPACE not in {n.metadata.name for n in core.list_namespace().items}, timeout=120
            )
            core.delete_persistent_volume(volume)
            # in the background: on a busy dockerd removing 210 MB of layers can take a minute
            subprocess.run(["sh", "-c", f"setsid docker image rm {IMAGE} >/dev/null 2>&1 &"], check=True)


@pytest.fixture
def forwarded(deployed: str) -> Iterator[str]:
    """``kubectl port-forward svc/pfcon`` as docs/deploying.md shows: the base URL on the host."""
    port = free_port()
    command = ["bash", str(ROOT / "scripts/kubernetes/kubectl.sh"), "-n", NAMESPACE, "port-forward"]
    process = subprocess.Popen(
        [*command, "svc/pfcon", f"{port}:5005"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        assert "Forwarding from" in process.stdout.readline()
        yield f"http://127.0.0.1:{port}/api/v1/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_service_routes_to_pfcon(deployed: str) -> None:
    """The API server's proxy to the Service reaches a ready pfcon through its endpoints
    (pfcon's health asks the API server with its service-account token: that works too)."""
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE, when set, overrides the cluster's CA
    session.cert = (str(PKI / "admin-client.crt"), str(PKI / "admin-client.key"))
    health = session.get(deployed + "health/", verify=str(PKI / "ca.crt"), timeout=30)
    assert health.status_code == 200, health.text
    assert health.json()["health"] == "OK"


def test_pfcon_in_the_cluster_runs_a_job_end_to_end(forwarded: str, jid: str) -> None:
    service, deployed = requests.Session(), forwarded
    token = service.post(
        deployed + "auth-token/",
        json={"pfcon_user": CREDENTIALS["PFCON_USER"], "pfcon_password": CREDENTIALS["PFCON_PASSWORD"]},
        timeout=30,
    )
    assert token.status_code == 200, token.text
    service.headers["Authorization"] = f"Bearer {token.json()['token']}"
    info = service.get(deployed + "jobs/", timeout=30)  # server info
    assert info.status_code == 200, info.text
    info = info.json()
    assert (info["container_env"], info["compute_volume_type"]) == ("kubernetes", "kubernetes_pvc")
    form = job_form(jid, args=["--prefix", "in-cluster-"])
    archive = make_zip({"data.txt": "from the host", "nested/more.txt": "deeper"})
    submitted = service.post(
        deployed + "jobs/", data=form, files={"data_file": ("data.zip", archive)}, timeout=60
    )
    assert submitted.status_code == 201, submitted.text

    def finished():
        status = service.get(f"{deployed}jobs/{jid}/", timeout=30).json()["compute"]["status"]
        return status if status in ("finishedSuccessfully", "finishedWithError", "undefined") else None

    assert wait_for(finished, timeout=120, interval=1) == "finishedSuccessfully"
    files = service.get(f"{deployed}jobs/{jid}/file/", timeout=60)
    assert files.status_code == 200, files.text
    with zipfile.ZipFile(io.BytesIO(files.content)) as zipped:
        assert zipped.read("in-cluster-data.txt") == b"from the host"
        assert zipped.read("nested/in-cluster-more.txt") == b"deeper"
    assert service.delete(f"{deployed}jobs/{jid}/", timeout=60).status_code == 204
    assert service.get(f"{deployed}jobs/{jid}/", timeout=30).status_code == 404
