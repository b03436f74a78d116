"""Fixtures for the tests on the real one-node Kubernetes (scripts/setup.d/70-kubernetes.sh).

The cluster is shared by the session: each session works in a namespace of its own, and
its storeBase volumes are hostPath PersistentVolumes (ReadWriteMany) pre-bound to claims in
that namespace, so the files a test writes on the host are the ones its pods see.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from pfcon.compute.base import JobSpec
from pfcon.compute.kubernetes.backend import KubernetesBackend, client_configuration
from pfcon.compute.kubernetes.job import JobTemplate
from pfcon.settings import KubernetesSettings
from tests.helpers import RUN_ID, wait_for

ROOT = Path(__file__).resolve().parent.parent
#: where 70-kubernetes.sh writes the cluster's admin kubeconfig (docs/kubernetes.md)
KUBECONFIG = Path("/var/lib/pfcon-dev/kubernetes/kubeconfig")


@dataclass(frozen=True)
class RealCluster:
    kubeconfig: str
    namespace: str
    api: k8s.ApiClient

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    @property
    def batch(self) -> k8s.BatchV1Api:
        return k8s.BatchV1Api(self.api)

    def pods_of(self, jid: str) -> list[k8s.V1Pod]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={jid}").items

    def storebase_claim(self, root: Path, namespace: str | None = None) -> str:
        """A ReadWriteMany claim (in the session's namespace unless another is named) on a
        hostPath volume at ``root``."""
        namespace = namespace or self.namespace
        name = f"storebase-{uuid.uuid4().hex[:8]}"
        volume = f"pfcon-test-{RUN_ID}-{name}"
        self.core.create_persistent_volume(
            {
                "metadata": {"name": volume, "labels": {"pfcon.test": RUN_ID}},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "hostPath": {"path": str(root), "type": "Directory"},
                    "claimRef": {"namespace": namespace, "name": name},
                },
            }
        )
        self.core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": volume,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        wait_for(
            lambda: (
                self.core.read_namespaced_persistent_volume_claim(name, namespace).status.phase == "Bound"
            ),
            timeout=30,
        )
        return name


def _cluster_answers(kubeconfig: Path) -> bool:
    if not kubeconfig.exists():
        return False
    try:
        api = k8s.ApiClient(client_configuration(KubernetesSettings(kubeconfig=str(kubeconfig))))
        node = k8s.CoreV1Api(api).read_node("localhost", _request_timeout=5)
        api.close()
    except Exception:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealCluster]:
    """The one-node cluster (started by its setup script when it does not answer) and a
    namespace of this session's, deleted with everything in it at the end."""
    if not _cluster_answers(KUBECONFIG):
        result = subprocess.run(
            ["bash", str(ROOT / "scripts/system-setup.sh"), "kubernetes"], capture_output=True, text=True
        )
        if result.returncode != 0 or not _cluster_answers(KUBECONFIG):
            pytest.skip(f"no Kubernetes cluster: {(result.stdout + result.stderr).strip()[-800:]}")
    api = k8s.ApiClient(client_configuration(KubernetesSettings(kubeconfig=str(KUBECONFIG))))
    core = k8s.CoreV1Api(api)
    namespace = f"pfcon-test-{RUN_ID}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"pfcon.test": RUN_ID}}})
    wait_for(lambda: core.list_namespaced_service_account(namespace).items, timeout=30)
    yield RealCluster(str(KUBECONFIG), namespace, api)
    core.delete_namespace(namespace, propagation_policy="Background")
    for volume in core.list_persistent_volume(label_selector=f"pfcon.test={RUN_ID}").items:
        try:
            core.delete_persistent_volume(volume.metadata.name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    api.close()


class StoreRootedBackend(KubernetesBackend):
    """The backend as pfcon's job service drives it, whose mount sources are paths inside the
    storeBase volume; the shared contract's are host paths under the volume's root."""

    def __init__(self, configuration: k8s.Configuration, template: JobTemplate, root: Path) -> None:
        super().__init__(configuration, template)
        self.root = root

    def _inside(self, spec: JobSpec) -> JobSpec:
        mounts = tuple(
            replace(m, source="/" + str(Path(m.source).relative_to(self.root))) for m in spec.mounts
        )
        return replace(spec, mounts=mounts)

    def validate(self, spec: JobSpec) -> None:
        super().validate(self._inside(spec))

    def submit(self, spec: JobSpec):
        return super().submit(self._inside(spec))


@pytest.fixture(scope="session")
def session_claim(real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One claim for the session, rooted at pytest's base folder (every tmp_path is inside)."""
    root = tmp_path_factory.getbasetemp()
    return real_cluster.storebase_claim(root), root


@pytest.fixture
def make_real_backend(
    real_cluster: RealCluster, session_claim: tuple[str, Path]
) -> Iterator[Callable[..., StoreRootedBackend]]:
    """Backends on the real cluster, with the session's namespace and claim; ``template``
    fields (ttl_seconds, deadline_seconds, ...) may be given."""
    claim, root = session_claim
    made: list[StoreRootedBackend] = []

    def build(**template: object) -> StoreRootedBackend:
        settings = KubernetesSettings(kubeconfig=real_cluster.kubeconfig)
        job_template = JobTemplate(namespace=real_cluster.namespace, claim_name=claim, **template)
        backend = StoreRootedBackend(client_configuration(settings), job_template, root)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        backend.close()
