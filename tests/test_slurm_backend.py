"""The Slurm backend on a real one-node cluster: the contract, time limits, cancels, outages."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import docker
import pytest

from pfcon.compute.base import JobStatus, Resources
from pfcon.compute.batch.backend import BatchBackend
from pfcon.errors import BackendUnavailable, InvalidJob, JobNotFound
from tests.contract import BackendContract, finished, make_spec
from tests.helpers import TEST_LABEL, TEST_LABELS, wait_for
from tests.slurm_fixtures import (  # noqa: F401
    slurm,
    slurm_backend,
    slurm_cluster,
    slurm_on_podman,
    slurm_root,
)

pytestmark = pytest.mark.integration


class TestSlurmContract(BackendContract):
    @pytest.fixture
    def backend(self, slurm: BatchBackend) -> BatchBackend:  # noqa: F811
        return slurm


class TestSlurmOnPodmanContract(BackendContract):
    """The whole contract again with SLURM_RUNTIME=podman (Podman's own image store)."""

    @pytest.fixture
    def backend(self, slurm_on_podman: BatchBackend) -> BatchBackend:  # noqa: F811
        return slurm_on_podman


def _slurm_id(backend: BatchBackend, jid: str) -> str:
    return json.loads((backend.pfcon_root / f"key-{jid}/slurm/job.json").read_text())["job_id"]


def _containers(client: docker.DockerClient, jid: str) -> list:
    filters = {"label": [TEST_LABEL, f"org.chrisproject.pfcon.batch.jid={jid}"]}
    # sparse: no inspect per container, which races the script removing one (404)
    return client.containers.list(all=True, filters=filters, sparse=True)


def _squeue_state(job_id: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%T", "-j", job_id], capture_output=True, text=True
    )
    return out.stdout.strip()


def test_limits_user_env_labels_and_mounts_reach_the_container(
    slurm: BatchBackend,  # noqa: F811
    docker_client,
    jid: str,
    tmp_path: Path,
) -> None:
    spec = make_spec(
        jid,
        tmp_path,
        ("sh", "-c", 'id -u; id -g; echo "$HOME|$GREETING"; sleep 30'),
        resources=Resources(1, 1500, 96, 0),
        user="12345:23456",
        shm_size_mib=32,
        env={"HOME": "/tmp", "GREETING": 'it\'s "quoted" $HOME'},
        labels={**TEST_LABELS, "site": "bch"},
    )
    slurm.validate(spec)
    slurm.submit(spec)
    container = wait_for(lambda: _containers(docker_client, jid), timeout=30)[0]
    wait_for(lambda: len(slurm.logs(jid, 10).split("\n")) > 3, timeout=20)
    attrs = docker_client.containers.get(container.id).attrs
    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == host["MemorySwap"] == 96 * 1024 * 1024
    assert host["ShmSize"] == 32 * 1024 * 1024
    assert attrs["Config"]["User"] == "12345:23456"
    assert attrs["Config"]["Labels"]["site"] == "bch"
    binds = {m["Destination"]: m for m in attrs["Mounts"]}
    assert binds["/share/incoming"]["RW"] is False and binds["/share/outgoing"]["RW"] is True
    assert slurm.logs(jid, 10).splitlines() == ["12345", "23456", '/tmp|it\'s "quoted" $HOME']
    # Slurm got the whole CPUs (1500 millicores -> 2) and the memory
    job = subprocess.run(
        ["scontrol", "show", "job", _slurm_id(slurm, jid)], capture_output=True, text=True, check=True
    ).stdout
    assert "NumCPUs=2" in job and "mem=96M" in job
    assert slurm.info(jid).status is JobStatus.started
    slurm.remove(jid)
    assert not _containers(docker_client, jid)


def test_time_limit_stops_the_job_and_its_container(
    slurm: BatchBackend,  # noqa: F811
    docker_client,
    jid: str,
    tmp_path: Path,
) -> None:
    """A job's own TIMELIMIT_MINUTES=1 (Slurm enforces limits every 30 s: this takes 1-2 min)."""
    spec = make_spec(jid, tmp_path, ("sleep", "600"), env={"TIMELIMIT_MINUTES": "1"})
    slurm.submit(spec)
    assert "#SBATCH --time=1\n" in (slurm.pfcon_root / f"key-{jid}/slurm/job.sh").read_text()
    wait_for(lambda: slurm.info(jid).status is JobStatus.started, timeout=30)
    info = finished(slurm, jid, timeout=180)
    assert info.status is JobStatus.finishedWithError
    assert "time limit of 1 minutes" in info.message
    assert not _containers(docker_client, jid)
    assert "DUE TO TIME LIMIT" in slurm.logs(jid, 5)


def test_job_cancelled_in_slurm_is_an_error_and_its_container_goes(
    slurm: BatchBackend,  # noqa: F811
    docker_client,
    jid: str,
    tmp_path: Path,
) -> None:
    slurm.submit(make_spec(jid, tmp_path, ("sleep", "600")))
    wait_for(lambda: _containers(docker_client, jid), timeout=30)
    subprocess.run(["scancel", _slurm_id(slurm, jid)], check=True)
    info = finished(slurm, jid, timeout=30)
    assert info.status is JobStatus.finishedWithError
    assert info.message.startswith("cancelled")
    wait_for(lambda: not _containers(docker_client, jid), timeout=60)  # Slurm may tell first
    status = (slurm.pfcon_root / f"key-{jid}/slurm/status").read_text()
    assert "signal=TERM" in status


def test_held_job_is_not_started_and_remove_cancels_it(
    slurm_cluster,  # noqa: F811
    slurm_root: Path,  # noqa: F811
    jid: str,
    tmp_path: Path,
) -> None:
    backend = slurm_backend(slurm_root, SLURM_SBATCH_OPTIONS="--hold --comment 'from pfcon tests'")
    backend.submit(make_spec(jid, tmp_path, ("true",)))
    job_id = _slurm_id(backend, jid)
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "Comment=from pfcon tests" in shown
    info = backend.info(jid)
    assert info.status is JobStatus.notStarted
    assert info.message.startswith(f"queued in slurm as job {job_id}")
    backend.remove(jid)
    assert _squeue_state(job_id) == "CANCELLED"
    with pytest.raises(JobNotFound):
        backend.info(jid)


def test_a_job_slurm_has_forgotten_without_status_is_an_error(
    slurm: BatchBackend,  # noqa: F811
    jid: str,
) -> None:
    """Past MinJobAge and without accounting, squeue knows nothing: the files decide."""
    folder = slurm.pfcon_root / f"key-{jid}/slurm"
    folder.mkdir(parents=True)
    record = {"job_id": "99999999", "image": "img", "cmd": "true", "submitted_at": "2026-01-01T00:00:00Z"}
    (folder / "job.json").write_text(json.dumps(record))
    info = slurm.info(jid)
    assert info.status is JobStatus.finishedWithError
    assert "no longer knows job 99999999" in info.message
    (folder / "final.json").unlink()  # with SLURM_ACCOUNTING=yes, sacct is asked (none here)
    accounted = slurm_backend(slurm.pfcon_root, SLURM_ACCOUNTING="yes")
    assert "no longer knows job 99999999" in accounted.info(jid).message
    (folder / "final.json").unlink()
    (folder / "status").write_text("exit_code=0\nsignal=\noom=false\nfinished_at=2026-01-01T00:01:00Z\n")
    info = slurm.info(jid)
    assert info.status is JobStatus.finishedSuccessfully and info.timestamp == "2026-01-01T00:01:00Z"


def test_settled_state_needs_no_controller(
    slurm: BatchBackend,  # noqa: F811
    slurm_root: Path,  # noqa: F811
    jid: str,
    tmp_path: Path,
) -> None:
    slurm.submit(make_spec(jid, tmp_path, ("sh", "-c", "echo bye; exit 4")))
    assert "4" in finished(slurm, jid).message
    offline = slurm_backend(slurm_root)
    offline.environ["SLURM_CONF"] = _unreachable_conf(tmp_path)
    info = offline.info(jid)
    assert info.status is JobStatus.finishedWithError and info.message == "exited with code 4"
    assert offline.logs(jid, 1).strip() == "bye"


def _unreachable_conf(tmp_path: Path) -> str:
    """A slurm.conf naming a controller port nobody listens on."""
    text = Path("/etc/slurm/slurm.conf").read_text().replace("MessageTimeout=10", "MessageTimeout=2")
    conf = tmp_path / "unreachable-slurm.conf"
    conf.write_text(text + "\nSlurmctldPort=9\n")
    return str(conf)


def test_unreachable_controller_is_backend_unavailable(
    slurm: BatchBackend,  # noqa: F811
    jid: str,
    tmp_path: Path,
) -> None:
    slurm.submit(make_spec(jid, tmp_path, ("sleep", "30")))
    slurm.environ["SLURM_CONF"] = _unreachable_conf(tmp_path)
    started = time.monotonic()
    for call in (
        slurm.ping,
        lambda: slurm.info(jid),
        lambda: slurm.validate(make_spec("other", tmp_path, ("true",))),
    ):
        with pytest.raises(BackendUnavailable, match="does not answer"):
            call()
    with pytest.raises(BackendUnavailable):
        slurm.submit(make_spec("other", tmp_path, ("true",)))
    assert time.monotonic() - started < 20
    assert not (slurm.pfcon_root / "key-other/slurm").exists()  # a refused submit leaves nothing
    del slurm.environ["SLURM_CONF"]


def test_gpu_request_is_refused_by_slurm_and_leaves_nothing(
    slurm: BatchBackend,  # noqa: F811
    jid: str,
    tmp_path: Path,
) -> None:
    """This cluster has no GPUs: sbatch refuses --gres=gpu:1 and the error says so."""
    spec = make_spec(jid, tmp_path, ("true",), resources=Resources(1, 1000, 64, 1))
    assert "#SBATCH --gres=gpu:1" in slurm.render(spec, _files(slurm, jid))
    with pytest.raises(InvalidJob, match=r"slurm refused the job: .*(gres|GRES|generic resource)"):
        slurm.submit(spec)
    with pytest.raises(JobNotFound):
        slurm.info(jid)


def _files(backend: BatchBackend, jid: str):
    from pfcon.compute.batch.jobfiles import JobFiles

    return JobFiles.of(backend.pfcon_root, backend.node_root, jid, "slurm")


def test_bad_per_job_time_limit_is_refused(slurm: BatchBackend, jid: str, tmp_path: Path) -> None:  # noqa: F811
    spec = make_spec(jid, tmp_path, ("true",), env={"TIMELIMIT_MINUTES": "soon"})
    with pytest.raises(InvalidJob, match="TIMELIMIT_MINUTES"):
        slurm.validate(spec)


def test_unchecked_missing_image_fails_on_the_node_with_the_runtime_s_words(
    slurm_cluster,  # noqa: F811
    slurm_root: Path,  # noqa: F811
    jid: str,
    tmp_path: Path,
) -> None:
    """SLURM_CHECK_IMAGES=no (pfcon's host does not see the nodes' images): the job itself fails."""
    backend = slurm_backend(slurm_root, SLURM_CHECK_IMAGES="no")
    spec = make_spec(jid, tmp_path, ("true",), image="localhost/no-such-image:404")
    backend.validate(spec)
    backend.submit(spec)
    info = finished(backend, jid)
    assert info.status is JobStatus.finishedWithError and info.message == "exited with code 125"
    assert "No such image" in backend.logs(jid, 5)
    backend.remove(jid)


@pytest.mark.parametrize(
    "image", ["--volume=/etc:/hostetc", "-v/etc:/hostetc", "--privileged"], ids=["volume", "short", "flag"]
)
def test_an_image_that_looks_like_an_option_never_becomes_one(
    slurm_cluster,  # noqa: F811
    slurm_root: Path,  # noqa: F811
    jid: str,
    tmp_path: Path,
    image: str,
) -> None:
    """Even with the API's check bypassed and SLURM_CHECK_IMAGES=no, "--" keeps it an image name.

    The command starts with a real image, as an attacker would write it: were the option taken,
    that image would run with the host's /etc mounted and print its hostname file.
    """
    backend = slurm_backend(slurm_root, SLURM_CHECK_IMAGES="no")
    command = ("localhost/pfcon-busybox:1", "cat", "/hostetc/hostname", "/etc/hostname")
    spec = make_spec(jid, tmp_path, command, image=image)
    backend.validate(spec)
    backend.submit(spec)
    info = finished(backend, jid)
    logs = backend.logs(jid, 20)
    assert info.status is JobStatus.finishedWithError, (info, logs)
    assert "invalid reference format" in logs
    assert Path("/etc/hostname").read_text().strip() not in logs
    backend.remove(jid)


def test_the_image_check_reads_an_option_like_image_as_a_name(
    slurm: BatchBackend,  # noqa: F811
    jid: str,
    tmp_path: Path,
) -> None:
    spec = make_spec(jid, tmp_path, ("true",), image="--help")
    with pytest.raises(InvalidJob, match="not present"):
        slurm.validate(spec)
