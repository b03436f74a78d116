# ruff: noqa: F811  (pytest fixtures imported from tests.k8s_fixtures are redefined as arguments)
"""The Kubernetes backend through the real ``kubernetes`` client against the in-test API server.

No API server or kubelet can run here (see tests/k8s_server.py), so no container runs: the
contract tests that need one to produce output are replaced by versions in which the
in-test cluster records the Job pfcon created and is told how the pods ended, and pfcon's
report of that outcome is checked. Every Job the server accepts passed the official schema
(strict) on the way in.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from pfcon.compute.base import JobStatus, Mount, Resources
from pfcon.compute.kubernetes.backend import KubernetesBackend, client_configuration, engine_state
from pfcon.compute.kubernetes.job import JOB_LABEL, JobTemplate
from pfcon.errors import BackendUnavailable, InvalidJob, JobExists, JobNotFound
from pfcon.settings import KubernetesSettings, SettingsError
from tests.contract import BackendContract, make_spec
from tests.k8s_fixtures import CLAIM, TOKEN, api_server, cluster, k8s_backend, kubeconfig, template  # noqa: F401
from tests.k8s_server import FakeApiServer, FakeCluster, write_kubeconfig

COPY = ("pl-copy", "--prefix", "out-", "/share/incoming", "/share/outgoing")


def container(cluster: FakeCluster, index: int = -1) -> dict:
    return cluster.created[index]["spec"]["template"]["spec"]["containers"][0]


class TestKubernetesContract(BackendContract):
    """The shared contract; tests that need a real container are adapted (see module doc)."""

    @pytest.fixture
    def backend(self, k8s_backend):
        return k8s_backend

    def test_job_lifecycle(self, backend, cluster, jid: str, tmp_path: Path) -> None:
        cluster.start_pods = False
        spec = make_spec(jid, tmp_path, COPY)
        backend.validate(spec)
        submitted = backend.submit(spec)
        assert (submitted.jid, submitted.image, submitted.cmd) == (jid, spec.image, spec.cmd)
        assert backend.info(jid).status is JobStatus.notStarted
        cluster.run(jid)
        assert backend.info(jid).status is JobStatus.started
        cluster.write_logs(jid, "copied ./data.txt\npl-copy: done\n")
        cluster.finish(jid)
        info = backend.info(jid)
        assert info.status is JobStatus.finishedSuccessfully, info.message
        assert info.timestamp
        logs = backend.logs(jid, tail=100)
        assert "copied ./data.txt" in logs and logs.rstrip().endswith("pl-copy: done")
        assert backend.logs(jid, tail=1).strip() == "pl-copy: done"
        backend.remove(jid)
        delete = [r for r in cluster.requests if r.method == "DELETE"][-1]
        assert delete.query["propagationPolicy"] == ["Background"]
        assert [p for p in cluster.pods.values() if p["metadata"]["labels"][JOB_LABEL] == jid] == []
        with pytest.raises(JobNotFound):
            backend.info(jid)
        with pytest.raises(JobNotFound):
            backend.remove(jid)

    def test_env_reaches_the_job(self, backend, cluster, jid: str, tmp_path: Path) -> None:
        backend.submit(make_spec(jid, tmp_path, ("sh", "-c", 'echo "$GREETING"')))
        assert container(cluster)["env"] == [{"name": "GREETING", "value": "hello from pfcon"}]
        assert container(cluster)["command"] == ["sh", "-c", 'echo "$GREETING"']

    def test_input_is_read_only(self, backend, cluster, jid: str, tmp_path: Path) -> None:
        backend.submit(make_spec(jid, tmp_path, ("touch", "/share/incoming/x")))
        mounts = {m["mountPath"]: m for m in container(cluster)["volumeMounts"]}
        assert mounts["/share/incoming"]["readOnly"] is True
        assert mounts["/share/outgoing"]["readOnly"] is False
        assert mounts["/share/incoming"]["subPath"] == str(tmp_path / "incoming").lstrip("/")

    def test_failing_job(self, backend, cluster, jid: str, tmp_path: Path) -> None:
        backend.submit(make_spec(jid, tmp_path, ("sh", "-c", "echo about to fail; exit 3")))
        cluster.write_logs(jid, "about to fail\n")
        cluster.finish(jid, exit_code=3)
        info = backend.info(jid)
        assert info.status is JobStatus.finishedWithError
        assert "exited with code 3" in info.message and "BackoffLimitExceeded" in info.message
        assert "about to fail" in backend.logs(jid, tail=10)
        backend.remove(jid)

    def test_out_of_memory(self, backend, cluster, jid: str, tmp_path: Path) -> None:
        backend.submit(make_spec(jid, tmp_path, ("sh", "-c", "hog"), resources=Resources(1, 1000, 16, 0)))
        assert container(cluster)["resources"]["limits"]["memory"] == "16Mi"
        cluster.finish(jid, exit_code=137, reason="OOMKilled")
        info = backend.info(jid)
        assert info.status is JobStatus.finishedWithError
        assert "out of memory" in info.message
        backend.remove(jid)

    @pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
    def test_missing_image_is_refused_naming_it(
        self, backend, cluster, jid: str, tmp_path: Path, reason
    ) -> None:
        """Kubernetes nodes pull images, so a missing one shows at status time, not at submit."""
        image = "localhost/no-such-image:404"
        backend.submit(make_spec(jid, tmp_path, ("true",), image=image))
        assert backend.info(jid).status is JobStatus.started
        cluster.pull_failure(jid, reason, f'rpc error: code = NotFound desc = failed to pull "{image}"')
        info = backend.info(jid)
        assert info.status is JobStatus.finishedWithError
        assert image in info.message and reason in info.message and "failed to pull" in info.message
        assert backend.logs(jid, tail=10) == ""  # the log endpoint says "waiting to start": no log
        backend.remove(jid)

    def test_stop_ends_a_running_job_and_keeps_it(self, backend, cluster, jid: str, tmp_path: Path) -> None:
        """REMOVE_JOBS=no: the Job is suspended (its pods end), and stays for inspection."""
        backend.submit(make_spec(jid, tmp_path, COPY))
        cluster.run(jid)
        assert backend.info(jid).status is JobStatus.started
        backend.stop(jid)
        patch = [r for r in cluster.requests if r.method == "PATCH"][-1]
        assert patch.body == {"spec": {"suspend": True}}
        assert cluster.job(jid)["spec"]["suspend"] is True and cluster.pods_of(jid) == []
        info = backend.info(jid)
        assert info.status is JobStatus.finishedWithError and "suspended" in info.message
        backend.remove(jid)


@pytest.fixture
def backend(k8s_backend):
    return k8s_backend


def test_several_workers_run_as_one_job_with_labelled_logs(
    backend, cluster, jid: str, tmp_path: Path
) -> None:
    backend.submit(make_spec(jid, tmp_path, COPY, resources=Resources(3, 250, 64, 0)))
    job = cluster.created[-1]["spec"]
    assert (job["parallelism"], job["completions"], job["backoffLimit"]) == (3, 3, 0)
    pods = [p["metadata"]["name"] for p in cluster.pods_of(jid)]
    assert len(pods) == 3
    cluster.write_logs(jid, "line 1 of {pod}\nline 2 of {pod}\n")
    cluster.finish(jid)
    logs = backend.logs(jid, tail=1)
    for pod in pods:
        assert f"==> pod {pod} <==\nline 2 of {pod}\n" in logs
        assert f"line 1 of {pod}" not in logs
    assert backend.info(jid).status is JobStatus.finishedSuccessfully


def test_pods_created_in_batches_are_counted_against_the_workers(
    backend, cluster, jid: str, tmp_path: Path
) -> None:
    """A real Job controller creates a 2-worker Job's pods in slow-start batches, one first."""
    cluster.first_batch = 1
    backend.submit(make_spec(jid, tmp_path, COPY, resources=Resources(2, 250, 64, 0)))
    assert len(cluster.pods_of(jid)) == 1
    info = backend.info(jid)
    assert (info.status, info.message) == (JobStatus.started, "1 of 2 pods running")
    cluster.create_remaining_pods(jid)
    assert backend.info(jid).message == "2 of 2 pods running"


def test_a_container_oom_killed_with_exit_code_0_is_out_of_memory(
    backend, cluster, jid: str, tmp_path: Path
) -> None:
    """A real kubelet reports OOMKilled with exit code 0 when the shell survived its killed child;
    the Job then reads Complete, but the job did not get to do its work."""
    backend.submit(make_spec(jid, tmp_path, ("sh", "-c", "hog"), resources=Resources(1, 1000, 16, 0)))
    cluster.finish(jid, exit_code=0, reason="OOMKilled")
    info = backend.info(jid)
    assert info.status is JobStatus.finishedWithError
    assert info.message.startswith("out of memory: pod ") and "memory limit" in info.message


def test_deadline_exceeded_is_an_error(backend, cluster, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("sleep", "9999")))
    cluster.exceed_deadline(jid)
    info = backend.info(jid)
    assert info.status is JobStatus.finishedWithError
    assert "DeadlineExceeded" in info.message


def test_ttl_and_deadline_reach_the_job(kubeconfig: str, cluster, jid: str, tmp_path: Path) -> None:
    template = JobTemplate("default", CLAIM, ttl_seconds=600, deadline_seconds=7200)
    backend = KubernetesBackend(client_configuration(KubernetesSettings(kubeconfig=kubeconfig)), template)
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    spec = cluster.created[-1]["spec"]
    assert (spec["ttlSecondsAfterFinished"], spec["activeDeadlineSeconds"]) == (600, 7200)
    backend.close()


def test_a_job_pfcon_did_not_create_is_not_ours(backend, cluster, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    del cluster.job(jid)["metadata"]["labels"][JOB_LABEL]
    for call in (backend.info, backend.remove):
        with pytest.raises(JobNotFound, match="not created by pfcon"):
            call(jid)


@pytest.mark.parametrize("bad_jid", ["Upper-Case", "under_score", "dot.ted", "x" * 64, "ends-with-"])
def test_jids_kubernetes_cannot_name_are_refused(backend, bad_jid: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidJob, match="jid"):
        backend.validate(make_spec(bad_jid, tmp_path, ("true",)))


def test_mounts_outside_the_volume_are_refused(backend, jid: str, tmp_path: Path) -> None:
    mounts = (Mount("/../etc", "/share/incoming", True), Mount("/key-x/outgoing", "/share/outgoing", False))
    with pytest.raises(InvalidJob, match="storeBase"):
        backend.validate(make_spec(jid, tmp_path, ("true",), mounts=mounts))


def test_forbidden_is_unavailable_with_the_servers_message(
    backend, cluster, jid: str, tmp_path: Path
) -> None:
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    cluster.forbidden = True
    calls = [
        backend.ping,
        lambda: backend.info(jid),
        lambda: backend.remove(jid),
        lambda: backend.submit(make_spec("other", tmp_path, ("true",))),
    ]
    for call in calls:
        with pytest.raises(BackendUnavailable, match=r"HTTP 403.*forbidden"):
            call()
    cluster.forbidden = False
    assert backend.info(jid).status is JobStatus.started  # nothing was changed meanwhile


def test_a_wrong_token_is_unavailable(api_server, tmp_path: Path, template, jid: str) -> None:
    config = write_kubeconfig(tmp_path / "wrong", api_server.url, "not-the-token")
    backend = KubernetesBackend(client_configuration(KubernetesSettings(kubeconfig=config)), template)
    with pytest.raises(BackendUnavailable, match=r"HTTP 401.*Unauthorized"):
        backend.info(jid)
    backend.close()


def test_an_invalid_job_answer_is_invalid_job(
    backend, cluster, jid: str, tmp_path: Path, monkeypatch
) -> None:
    """422 from the API server (a name it refuses) is the job's fault: a clear 400 for pfcon."""
    from pfcon.compute.kubernetes import job as kubernetes_job

    def misnamed(spec, template):
        manifest = kubernetes_job.build_job(spec, template)
        manifest["metadata"]["name"] = "Not_A_DNS_Label"
        return manifest

    monkeypatch.setattr("pfcon.compute.kubernetes.backend.build_job", misnamed)
    with pytest.raises(InvalidJob, match="is invalid"):
        backend.submit(make_spec(jid, tmp_path, ("true",)))
    assert cluster.jobs == {}


def test_a_server_that_does_not_answer_is_unavailable(template, tmp_path: Path, jid: str) -> None:
    with FakeApiServer(FakeCluster()) as server:
        url = server.url
    config = write_kubeconfig(tmp_path / "gone", url, TOKEN)
    backend = KubernetesBackend(client_configuration(KubernetesSettings(kubeconfig=config)), template)
    for call in (backend.ping, lambda: backend.info(jid), lambda: backend.remove(jid)):
        with pytest.raises(BackendUnavailable, match="does not answer"):
            call()
    backend.close()


# -- configuration: in-cluster and kubeconfig ------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_in_cluster_service_account_over_tls(ca: trustme.CA, tmp_path: Path, template, jid: str) -> None:
    """What a pod sees: KUBERNETES_SERVICE_HOST/PORT, a token file and the cluster CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    cluster = FakeCluster(token="service-account-token")
    (tmp_path / "token").write_text("service-account-token")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    with FakeApiServer(cluster, context) as server:
        settings = KubernetesSettings(
            in_cluster=True, service_host="127.0.0.1", service_port=str(server.port)
        )
        configuration = client_configuration(settings, str(tmp_path / "token"), str(tmp_path / "ca.crt"))
        assert configuration.host == server.url
        backend = KubernetesBackend(configuration, template)
        assert backend.ping().startswith("kubernetes v")
        backend.submit(make_spec(jid, tmp_path, ("true",)))
        assert backend.info(jid).status is JobStatus.started
        assert cluster.requests[-1].authorization.lower() == "bearer service-account-token"
        backend.close()


def test_in_cluster_rejects_a_server_the_ca_did_not_sign(tmp_path: Path, template, ca: trustme.CA) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)  # another CA
    (tmp_path / "token").write_text("t")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    with FakeApiServer(FakeCluster(), context) as server:
        settings = KubernetesSettings(
            in_cluster=True, service_host="127.0.0.1", service_port=str(server.port)
        )
        backend = KubernetesBackend(
            client_configuration(settings, str(tmp_path / "token"), str(tmp_path / "ca.crt")), template
        )
        with pytest.raises(BackendUnavailable, match="does not answer"):
            backend.ping()
        backend.close()


def test_in_cluster_without_a_token_stops_the_service(tmp_path: Path) -> None:
    settings = KubernetesSettings(in_cluster=True, service_host="10.0.0.1", service_port="443")
    with pytest.raises(SettingsError, match=r"KUBERNETES_SERVICE_HOST.*token"):
        client_configuration(settings, str(tmp_path / "missing-token"), str(tmp_path / "missing-ca"))


def test_a_missing_kubeconfig_stops_the_service(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="KUBECONFIG"):
        client_configuration(KubernetesSettings(kubeconfig=str(tmp_path / "nope")))


def test_kubeconfig_over_tls_with_its_ca(ca: trustme.CA, tmp_path: Path, template, jid: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    with FakeApiServer(FakeCluster(token=TOKEN), context) as server:
        config = write_kubeconfig(
            tmp_path / "kubeconfig", server.url, TOKEN, ca_file=str(tmp_path / "ca.crt")
        )
        backend = KubernetesBackend(client_configuration(KubernetesSettings(kubeconfig=config)), template)
        backend.submit(make_spec(jid, tmp_path, ("true",)))
        with pytest.raises(JobExists):
            backend.submit(make_spec(jid, tmp_path, ("true",)))
        backend.close()


# -- the state table -------------------------------------------------------------------------
def test_an_unknown_pod_phase_is_undefined(backend, cluster, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    for pod in cluster.pods_of(jid):
        pod["status"]["phase"] = "Unknown"
    info = backend.info(jid)
    assert info.status is JobStatus.undefined and "Unknown" in info.message


def test_a_job_without_pods_yet_has_not_started(backend, cluster, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    for pod in cluster.pods_of(jid):
        del cluster.pods[("default", pod["metadata"]["name"])]
    assert backend.info(jid).status is JobStatus.notStarted


def test_engine_state_prefers_job_conditions(backend, cluster, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    cluster.finish(jid)
    job = backend.batch.read_namespaced_job(jid, "default")
    pods = backend.core.list_namespaced_pod("default", label_selector=f"{JOB_LABEL}={jid}").items
    assert engine_state(job, pods)[0] == "job:SuccessCriteriaMet"


def test_a_reused_jid_never_reads_the_pods_of_the_job_before(
    backend, cluster, jid: str, tmp_path: Path
) -> None:
    """Background deletion lets old pods linger until the garbage collector runs."""
    cluster.collect_garbage = False
    backend.submit(make_spec(jid, tmp_path, ("false",)))
    cluster.write_logs(jid, "first run failed\n")
    cluster.finish(jid, exit_code=1)
    backend.remove(jid)
    assert len(cluster.pods) == 1  # still there
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    cluster.write_logs(jid, "second run\n")
    assert backend.info(jid).status is JobStatus.started
    assert backend.logs(jid, 10) == "second run\n"


def test_an_answer_the_client_cannot_read_is_unavailable(backend, cluster, jid: str, tmp_path: Path) -> None:
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    del cluster.job(jid)["spec"]["template"]  # a Job without its (required) template
    with pytest.raises(BackendUnavailable, match="cannot read"):
        backend.info(jid)


def test_poll_all_reads_every_live_job_in_two_calls(k8s_backend, cluster, jid: str, tmp_path: Path) -> None:
    """The feed's round: one Job list and one pod list for all jobs, each judged as ``info`` does."""
    cluster.start_pods = False
    jids = [f"{jid}-a", f"{jid}-b", f"{jid}-c"]
    for each in jids:
        (tmp_path / each).mkdir()
        k8s_backend.submit(make_spec(each, tmp_path / each, COPY))
    cluster.run(jids[1])
    cluster.run(jids[2])
    cluster.finish(jids[2])
    cluster.requests.clear()
    found = k8s_backend.poll_all([*jids, f"{jid}-gone"])
    assert [(r.method, r.path.split("?")[0]) for r in cluster.requests] == [
        ("GET", "/apis/batch/v1/namespaces/default/jobs"),
        ("GET", "/api/v1/namespaces/default/pods"),
    ]
    assert set(found) == set(jids)  # a jid kubernetes does not know is left out
    assert [found[each].status for each in jids] == [
        JobStatus.notStarted,
        JobStatus.started,
        JobStatus.finishedSuccessfully,
    ]
    assert all(found[each] == k8s_backend.info(each) for each in jids)
