"""The contract every compute backend passes on a real engine (after Toil's batch-system tests).

A subclass provides the ``backend`` fixture; everything else is shared: submit -> run ->
status -> logs -> outputs -> remove, failing jobs, out-of-memory, a missing image, vanished
and duplicate jobs. A new backend is done when this class passes against its engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pfcon.compute.base import ComputeBackend, JobSpec, JobStatus, Mount, Resources
from pfcon.errors import InvalidJob, JobExists, JobNotFound
from tests.helpers import TEST_IMAGE, TEST_LABELS, wait_for


def make_spec(jid: str, workdir: Path, command: tuple[str, ...], **overrides) -> JobSpec:
    incoming, outgoing = workdir / "incoming", workdir / "outgoing"
    incoming.mkdir(exist_ok=True)
    outgoing.mkdir(exist_ok=True)
    fields = {
        "jid": jid,
        "image": TEST_IMAGE,
        "command": command,
        "env": {"GREETING": "hello from pfcon"},
        "resources": Resources(number_of_workers=1, cpu_millicores=500, memory_mib=64, gpus=0),
        "mounts": (
            Mount(str(incoming), "/share/incoming", read_only=True),
            Mount(str(outgoing), "/share/outgoing", read_only=False),
        ),
        "labels": TEST_LABELS,
    }
    fields.update(overrides)
    return JobSpec(**fields)


def limits_spec(jid: str, workdir: Path, script: str) -> JobSpec:
    """A job with every setting an engine must apply and a test reads back: 1.5 CPUs, 96 MiB,
    user 12345:23456, 32 MiB of /dev/shm, HOME=/tmp and a label ``site=bch``; runs ``script``."""
    return make_spec(
        jid,
        workdir,
        ("sh", "-c", script),
        resources=Resources(1, 1500, 96, 0),
        user="12345:23456",
        shm_size_mib=32,
        env={"HOME": "/tmp"},
        labels={**TEST_LABELS, "site": "bch"},
    )


def finished(backend: ComputeBackend, jid: str, timeout: float = 60):
    return wait_for(lambda: (info := backend.info(jid)).status.terminal and info, timeout=timeout)


class BackendContract:
    @pytest.fixture
    def backend(self) -> ComputeBackend:
        raise NotImplementedError

    def test_ping_names_the_engine(self, backend: ComputeBackend) -> None:
        assert backend.name in backend.ping()

    def test_job_lifecycle(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        (tmp_path / "incoming").mkdir()
        (tmp_path / "incoming/data.txt").write_text("input data")
        spec = make_spec(jid, tmp_path, ("pl-copy", "--prefix", "out-", "/share/incoming", "/share/outgoing"))
        backend.validate(spec)
        submitted = backend.submit(spec)
        assert submitted.jid == jid and submitted.image == TEST_IMAGE
        assert submitted.cmd == spec.cmd
        assert submitted.engine_id, "the engine's own id for the job, recorded in the store"
        assert submitted.status in {JobStatus.notStarted, JobStatus.started, JobStatus.finishedSuccessfully}
        info = finished(backend, jid)
        assert info.status is JobStatus.finishedSuccessfully, info.message
        assert info.timestamp
        logs = backend.logs(jid, tail=100)
        assert "copied ./data.txt" in logs and logs.rstrip().endswith("pl-copy: done")
        assert backend.logs(jid, tail=1).strip() == "pl-copy: done"
        assert (tmp_path / "outgoing/out-data.txt").read_text() == "input data"
        backend.remove(jid)
        with pytest.raises(JobNotFound):
            backend.info(jid)
        with pytest.raises(JobNotFound):
            backend.remove(jid)

    def test_running_job_reads_started(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        backend.submit(make_spec(jid, tmp_path, ("sleep", "30")))
        assert wait_for(lambda: backend.info(jid).status is JobStatus.started, timeout=20)
        backend.remove(jid)

    def test_stop_ends_a_running_job_and_keeps_it(
        self, backend: ComputeBackend, jid: str, tmp_path: Path
    ) -> None:
        """What DELETE does with REMOVE_JOBS=no before the job's data goes."""
        backend.submit(make_spec(jid, tmp_path, ("sleep", "300")))
        assert wait_for(lambda: backend.info(jid).status is JobStatus.started, timeout=30)
        backend.stop(jid)
        assert finished(backend, jid, timeout=30).status is JobStatus.finishedWithError
        backend.stop(jid)  # a stopped job stops again without fuss
        backend.remove(jid)

    def test_env_reaches_the_job(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        backend.submit(make_spec(jid, tmp_path, ("sh", "-c", 'echo "$GREETING"')))
        finished(backend, jid)
        assert backend.logs(jid, tail=10).strip() == "hello from pfcon"
        backend.remove(jid)

    def test_input_is_read_only(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        backend.submit(make_spec(jid, tmp_path, ("touch", "/share/incoming/x")))
        assert finished(backend, jid).status is JobStatus.finishedWithError
        assert not (tmp_path / "incoming/x").exists()
        backend.remove(jid)

    def test_failing_job(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        backend.submit(make_spec(jid, tmp_path, ("sh", "-c", "echo about to fail; exit 3")))
        info = finished(backend, jid)
        assert info.status is JobStatus.finishedWithError
        assert "3" in info.message
        assert "about to fail" in backend.logs(jid, tail=10)
        backend.remove(jid)

    def test_out_of_memory(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"
        spec = make_spec(jid, tmp_path, ("sh", "-c", hog), resources=Resources(1, 1000, 16, 0))
        backend.submit(spec)
        info = finished(backend, jid)
        assert info.status is JobStatus.finishedWithError, info
        assert "out of memory" in info.message, (info.message, backend.logs(jid, 20))  # say why, if not
        backend.remove(jid)

    def test_missing_image_is_refused_naming_it(
        self, backend: ComputeBackend, jid: str, tmp_path: Path
    ) -> None:
        spec = make_spec(jid, tmp_path, ("true",), image="localhost/no-such-image:404")
        with pytest.raises(InvalidJob, match="localhost/no-such-image:404"):
            backend.validate(spec)

    def test_duplicate_jid(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        spec = make_spec(jid, tmp_path, ("sleep", "30"))
        backend.submit(spec)
        with pytest.raises(JobExists):
            backend.validate(spec)
        with pytest.raises(JobExists):
            backend.submit(spec)
        assert backend.info(jid).status in {JobStatus.notStarted, JobStatus.started}
        backend.remove(jid)

    def test_unknown_job(self, backend: ComputeBackend, jid: str) -> None:
        for call in (backend.info, backend.remove, backend.stop, lambda j: backend.logs(j, 10)):
            with pytest.raises(JobNotFound):
                call(jid)

    def test_unsupported_workers_are_refused(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        too_many = backend.capabilities.max_workers + 1
        spec = make_spec(jid, tmp_path, ("true",), resources=Resources(too_many, 1000, 64, 0))
        with pytest.raises(InvalidJob, match="number_of_workers"):
            backend.validate(spec)
