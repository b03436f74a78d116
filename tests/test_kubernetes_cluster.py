"""The Kubernetes backend on a real one-node cluster (Kubernetes 1.20, scripts/setup.d/70-kubernetes.sh):
the whole backend contract as on Docker, what the pod shows of limits and user, several
workers, JOB_TTL_SECONDS and JOB_DEADLINE_SECONDS, and python-pfconclient 3.3.0 end to end
through a pfcon on the host that uses the cluster's kubeconfig and a hostPath storeBase claim.

What 1.20 cannot show (fields newer than 1.20, every error shape) stays with the in-test API
server (test_kubernetes_backend.py) and the schema checks (test_kubernetes_manifest.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pfconclient.client import Client

from pfcon.compute.base import JobStatus, Resources
from pfcon.compute.kubernetes.backend import client_configuration
from pfcon.compute.kubernetes.job import JobTemplate
from pfcon.errors import JobNotFound
from pfcon.settings import KubernetesSettings
from tests.contract import BackendContract, finished, limits_spec, make_spec
from tests.helpers import RUN_ID, TEST_LABEL, client_descriptors, input_tree, wait_for
from tests.k8s_cluster import StoreRootedBackend
from tests.live import live_pfcon

pytestmark = pytest.mark.integration

COPY = ("pl-copy", "--prefix", "out-", "/share/incoming", "/share/outgoing")


@pytest.fixture
def backend(make_real_backend):
    return make_real_backend()


class TestRealClusterContract(BackendContract):
    """The shared contract, unchanged but for where a missing image shows."""

    @pytest.fixture
    def backend(self, make_real_backend):
        return make_real_backend()

    def test_missing_image_is_refused_naming_it(self, backend, jid: str, tmp_path: Path) -> None:
        """Nodes pull images, so a missing one shows at status time: the kubelet's ErrImagePull."""
        image = "localhost/no-such-image:404"
        backend.validate(make_spec(jid, tmp_path, ("true",), image=image))
        backend.submit(make_spec(jid, tmp_path, ("true",), image=image))
        info = finished(backend, jid)
        assert info.status is JobStatus.finishedWithError
        assert image in info.message
        assert "ErrImagePull" in info.message or "ImagePullBackOff" in info.message
        backend.remove(jid)


def test_limits_user_labels_and_shm_read_back_from_the_pod(
    backend, real_cluster, jid: str, tmp_path: Path
) -> None:
    show = (
        "id -u; id -g; echo $HOME; cat /sys/fs/cgroup/memory/memory.limit_in_bytes;"
        " cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; grep ' /dev/shm ' /proc/mounts | cut -d' ' -f3"
    )
    spec = limits_spec(jid, tmp_path, show)
    backend.submit(spec)
    assert finished(backend, jid).status is JobStatus.finishedSuccessfully
    (pod,) = real_cluster.pods_of(jid)
    assert pod.metadata.labels["site"] == "bch" and pod.metadata.labels["org.chrisproject.pfcon.jid"] == jid
    (container,) = pod.spec.containers
    assert container.resources.limits == {"cpu": "1500m", "memory": "96Mi"}
    assert (
        container.security_context.run_as_user == 12345 and container.security_context.run_as_group == 23456
    )
    assert pod.spec.restart_policy == "Never"
    # what the kernel enforces in the running container
    assert backend.logs(jid, 10).split() == [
        "12345",
        "23456",
        "/tmp",
        str(96 * 1024 * 1024),
        "150000",
        "tmpfs",
    ]
    backend.remove(jid)


def test_two_workers_run_as_one_job_counted_against_both(
    backend, real_cluster, jid: str, tmp_path: Path
) -> None:
    """The Job controller creates the pods in batches; no status may say "1 of 1 pods"."""
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming/data.txt").write_text("input data")
    backend.submit(
        make_spec(
            jid, tmp_path, ("sh", "-c", "sleep 2; " + " ".join(COPY)), resources=Resources(2, 250, 64, 0)
        )
    )
    messages = set()

    def done():
        info = backend.info(jid)
        messages.add(info.message)
        return info.status.terminal and info

    info = wait_for(done, timeout=60, interval=0.05)
    assert info.status is JobStatus.finishedSuccessfully, info.message
    counted = {m for m in messages if re.fullmatch(r"\d+ of \d+ pods \w+", m)}
    assert counted and all(" of 2 pods " in m for m in counted), messages
    pods = sorted(p.metadata.name for p in real_cluster.pods_of(jid))
    assert len(pods) == 2
    logs = backend.logs(jid, tail=1)
    assert logs == "".join(f"==> pod {pod} <==\npl-copy: done\n" for pod in pods)
    assert (tmp_path / "outgoing/out-data.txt").read_text() == "input data"
    backend.remove(jid)


def test_a_job_with_only_some_pods_created_counts_them_against_its_workers(
    real_cluster, tmp_path_factory, jid: str, tmp_path: Path
) -> None:
    """The Job controller creates pods in batches and may fail to create some (here a quota
    of one pod holds the second back): the status counts the pods against the workers."""
    namespace = f"{real_cluster.namespace}-quota"
    core = real_cluster.core
    core.create_namespace({"metadata": {"name": namespace, "labels": {"pfcon.test": RUN_ID}}})
    try:
        wait_for(lambda: core.list_namespaced_service_account(namespace).items, timeout=30)
        core.create_namespaced_resource_quota(
            namespace, {"metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}}
        )
        root = tmp_path_factory.getbasetemp()
        template = JobTemplate(namespace, real_cluster.storebase_claim(root, namespace))
        settings = KubernetesSettings(kubeconfig=real_cluster.kubeconfig)
        backend = StoreRootedBackend(client_configuration(settings), template, root)
        backend.submit(make_spec(jid, tmp_path, ("sleep", "300"), resources=Resources(2, 250, 64, 0)))
        info = wait_for(lambda: (i := backend.info(jid)).status is JobStatus.started and i, timeout=60)
        assert info.message == "1 of 2 pods running"
        core.delete_namespaced_resource_quota("one-pod", namespace)
        assert wait_for(lambda: backend.info(jid).message == "2 of 2 pods running", timeout=90, interval=0.5)
        backend.remove(jid)
        backend.close()
    finally:
        core.delete_namespace(namespace, propagation_policy="Background")


def test_oom_killed_with_exit_code_0_is_out_of_memory(
    backend, real_cluster, jid: str, tmp_path: Path
) -> None:
    """An inner shell is killed for memory; the outer one survives it and exits 0.

    The inner shell makes itself the OOM killer's first choice (raising ``oom_score_adj`` needs
    no privilege): with all of them small, the kernel once picked the outer shell instead.
    """
    hog = (
        "sh -c 'echo 1000 > /proc/self/oom_score_adj; x=$(head -c 200000000 /dev/zero | tr \"\\0\" a)';"
        " echo survived $?"
    )
    backend.submit(make_spec(jid, tmp_path, ("sh", "-c", hog), resources=Resources(1, 1000, 16, 0)))
    info = finished(backend, jid)
    (pod,) = real_cluster.pods_of(jid)
    ended = pod.status.container_statuses[0].state.terminated
    assert (ended.reason, ended.exit_code) == ("OOMKilled", 0)
    assert "survived 137" in backend.logs(jid, 10)
    assert info.status is JobStatus.finishedWithError
    assert info.message.startswith("out of memory")
    backend.remove(jid)


def test_job_ttl_removes_a_finished_job(make_real_backend, real_cluster, jid: str, tmp_path: Path) -> None:
    """JOB_TTL_SECONDS becomes ttlSecondsAfterFinished, which the TTL controller acts on."""
    backend = make_real_backend(ttl_seconds=2)
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    job = real_cluster.batch.read_namespaced_job(jid, real_cluster.namespace)
    assert job.spec.ttl_seconds_after_finished == 2  # not dropped: the TTLAfterFinished gate is on
    assert finished(backend, jid).status is JobStatus.finishedSuccessfully

    def gone() -> bool:
        try:
            backend.info(jid)
        except JobNotFound:
            return True
        return False

    wait_for(gone, timeout=60, interval=0.5)


def test_job_deadline_ends_a_job_that_runs_too_long(make_real_backend, jid: str, tmp_path: Path) -> None:
    backend = make_real_backend(deadline_seconds=3)
    backend.submit(make_spec(jid, tmp_path, ("sleep", "300")))
    info = finished(backend, jid, timeout=60)
    assert info.status is JobStatus.finishedWithError
    assert "DeadlineExceeded" in info.message
    backend.remove(jid)


def test_pfconclient_end_to_end_through_pfcon_on_the_host(
    real_cluster, storebase: Path, tmp_path: Path, jid: str
) -> None:
    """pfcon on the host with the kubeconfig; storeBase is a hostPath volume's ReadWriteMany claim."""
    claim = real_cluster.storebase_claim(storebase)
    env = {
        "STOREBASE": "",
        "CONTAINER_ENV": "kubernetes",
        "COMPUTE_VOLUME_TYPE": "kubernetes_pvc",
        "VOLUME_NAME": claim,
        "STOREBASE_MOUNT": str(storebase),
        "JOB_NAMESPACE": real_cluster.namespace,
        "KUBECONFIG": real_cluster.kubeconfig,
        "JOB_LABELS": TEST_LABEL,
    }
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        token = Client.get_auth_token(url + "auth-token/", "pfcon", "pfcon1234")
        client = Client(url, token)
        info = client.get_server_info()
        assert (info["container_env"], info["compute_volume_type"]) == ("kubernetes", "kubernetes_pvc")
        outdir = tmp_path / "out"
        outdir.mkdir()
        status = client.run_job(
            jid, client_descriptors("k8s-"), str(input_tree(tmp_path / "in")), str(outdir)
        )
    assert status == "finishedSuccessfully"
    assert (outdir / "k8s-one.txt").read_text() == "one"
    assert (outdir / "nested/k8s-two.txt").read_text() == "two"
    assert not (storebase / f"key-{jid}").exists()
    assert wait_for(lambda: not real_cluster.pods_of(jid), timeout=60)  # the Job and its pods are gone
