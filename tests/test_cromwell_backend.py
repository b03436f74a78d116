"""The Cromwell backend against the in-test Cromwell (tests/cromwell_server.py).

The backend contract runs here where it applies honestly. The in-test Cromwell cannot run
containers, so the contract tests that look at what a container did (outputs written, the
env it saw, a read-only input, an out-of-memory kill, a missing image) are replaced by tests
of what the backend sent to Cromwell (the WDL, evaluated by miniwdl) and of how it reads what
Cromwell reports. No test pretends a job produced outputs.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from pfcon.compute import build_backend
from pfcon.compute.base import ComputeBackend, JobSpec, JobStatus, Resources
from pfcon.compute.cromwell.backend import (
    JOB_LABEL,
    REF_FILE,
    REMOVED,
    STATE_TABLE,
    CromwellBackend,
    WorkflowRef,
    failure_message,
    workflow_status,
)
from pfcon.compute.cromwell.client import CromwellClient
from pfcon.compute.cromwell.wdl import RuntimeOptions
from pfcon.compute.volumes import HostPaths
from pfcon.errors import BackendUnavailable, InvalidJob, JobExists, JobNotFound
from pfcon.settings import SettingsError, load_settings
from pfcon.storebase import StoreBase
from tests.contract import BackendContract, finished, make_spec
from tests.cromwell_server import FakeCromwell, Plan, Workflow
from tests.helpers import TEST_IMAGE, wait_for


def plan_by_command(workflow: Workflow) -> Plan:
    """How long the in-test Cromwell keeps a workflow running: a ``sleep N`` runs N seconds."""
    command = workflow.command or ""
    if "sleep" in command:
        return Plan(running=float(command.split("sleep")[-1].strip(" '")))
    return Plan()


@pytest.fixture
def cromwell(storebase: Path):
    """Cromwell's executions folder lies inside storeBase, so the backend can read the logs."""
    server = FakeCromwell(storebase / "cromwell-executions").start()
    server.planner = plan_by_command
    yield server
    server.stop()


def make_backend(cromwell: FakeCromwell, storebase: Path, timelimit: int | None = None) -> CromwellBackend:
    return CromwellBackend(
        CromwellClient(cromwell.url),
        StoreBase(storebase),
        HostPaths(str(storebase)),
        RuntimeOptions(timelimit_minutes=timelimit),
    )


class TestCromwellContract(BackendContract):
    @pytest.fixture
    def backend(self, cromwell: FakeCromwell, storebase: Path):
        backend = make_backend(cromwell, storebase, timelimit=60)
        self.cromwell = cromwell
        yield backend
        backend.close()

    def sent(self, jid: str) -> Workflow:
        return self.cromwell.by_jid(jid)

    def test_job_lifecycle(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        """What a job's workflow carries; states, logs and removal as Cromwell reports them."""
        spec = make_spec(jid, tmp_path, ("pl-copy", "--prefix", "out-", "/share/incoming", "/share/outgoing"))
        self.cromwell.planner = lambda w: Plan(stdout="copied ./data.txt\npl-copy: done\n")
        backend.validate(spec)
        submitted = backend.submit(spec)
        assert (submitted.jid, submitted.image, submitted.cmd) == (jid, TEST_IMAGE, spec.cmd)
        assert submitted.status is JobStatus.notStarted and "workflow" in submitted.message
        sent = self.sent(jid)
        assert sent.parse_error is None
        assert sent.command == "export GREETING='hello from pfcon'\n" + spec.cmd
        assert sent.runtime == {
            "docker": TEST_IMAGE,
            "cpu": 1,
            "memory": "64 MiB",
            "gpu_limit": 0,
            "number_of_workers": 1,
            "timelimit": 60,
            "incoming_dir": str(tmp_path / "incoming"),
            "outgoing_dir": str(tmp_path / "outgoing"),
            "sharedir": str(tmp_path),
        }
        assert sent.labels == {**spec.labels, JOB_LABEL: jid}
        assert sent.options == {"read_from_cache": False, "write_to_cache": False}
        info = finished(backend, jid)
        assert info.status is JobStatus.finishedSuccessfully, info.message
        assert info.timestamp and info.cmd == spec.cmd
        # the in-test Cromwell wrote these into its executions folder (it runs no container)
        assert backend.logs(jid, tail=100) == "copied ./data.txt\npl-copy: done\n"
        assert backend.logs(jid, tail=1) == "pl-copy: done\n"
        backend.remove(jid)
        assert sent.labels[JOB_LABEL] == REMOVED
        with pytest.raises(JobNotFound):
            backend.info(jid)
        with pytest.raises(JobNotFound):
            backend.remove(jid)

    def test_env_reaches_the_job(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        """The command Cromwell would run, run by a real shell here, sees the job's env."""
        backend.submit(make_spec(jid, tmp_path, ("sh", "-c", 'echo "$GREETING"')))
        result = subprocess.run(["bash", "-c", self.sent(jid).command], capture_output=True, text=True)
        assert result.stdout == "hello from pfcon\n"
        backend.remove(jid)

    def test_input_is_read_only(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        """Mounting is the Cromwell configuration's job: pfcon names each folder for it to bind."""
        backend.submit(make_spec(jid, tmp_path, ("touch", "/share/incoming/x")))
        runtime = self.sent(jid).runtime
        assert runtime["incoming_dir"] == str(tmp_path / "incoming")
        assert runtime["outgoing_dir"] == str(tmp_path / "outgoing")
        backend.remove(jid)

    def test_failing_job(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        self.cromwell.planner = lambda w: Plan(return_code=3, stderr="about to fail\n")
        backend.submit(make_spec(jid, tmp_path, ("sh", "-c", "echo about to fail >&2; exit 3")))
        info = finished(backend, jid)
        assert info.status is JobStatus.finishedWithError
        assert "exited with return code 3" in info.message and info.message.startswith("Cromwell workflow")
        assert backend.logs(jid, tail=10) == "about to fail\n"
        backend.remove(jid)

    def test_out_of_memory(self, backend: ComputeBackend, jid: str, tmp_path: Path) -> None:
        """Cromwell reports a memory kill only as its return code (137); the limit is sent."""
        self.cromwell.planner = lambda w: Plan(return_code=137)
        backend.submit(make_spec(jid, tmp_path, ("true",), resources=Resources(1, 1000, 16, 0)))
        assert self.sent(jid).runtime["memory"] == "16 MiB"
        info = finished(backend, jid)
        assert info.status is JobStatus.finishedWithError and "return code 137" in info.message
        backend.remove(jid)

    def test_missing_image_is_refused_naming_it(
        self, backend: ComputeBackend, jid: str, tmp_path: Path
    ) -> None:
        """Cromwell cannot be asked about images: its failure to pull reads finishedWithError."""
        image = "localhost/no-such-image:404"
        spec = make_spec(jid, tmp_path, ("true",), image=image)
        backend.validate(spec)  # accepted: nothing to check against
        self.cromwell.planner = lambda w: Plan(failure=f"Failed to pull image {w.runtime['docker']}")
        backend.submit(spec)
        info = finished(backend, jid)
        assert info.status is JobStatus.finishedWithError and image in info.message
        backend.remove(jid)


# -- the state table ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("Submitted", JobStatus.notStarted),
        ("On Hold", JobStatus.notStarted),
        ("Running", JobStatus.started),
        ("Aborting", JobStatus.finishedWithError),
        ("Aborted", JobStatus.finishedWithError),
        ("Succeeded", JobStatus.finishedSuccessfully),
        ("Failed", JobStatus.finishedWithError),
        ("Paused", JobStatus.undefined),
        ("", JobStatus.undefined),
    ],
)
def test_one_table_maps_every_cromwell_status(state: str, expected: JobStatus) -> None:
    status, message = workflow_status({"id": "w", "status": state})
    assert status is expected
    assert (state in STATE_TABLE) == (expected is not JobStatus.undefined)
    if expected is JobStatus.undefined:
        assert repr(state) in message


def test_failure_messages_are_flattened_in_order() -> None:
    failures = [
        {"message": "Workflow failed", "causedBy": [{"message": "Job X exited", "causedBy": []}]},
        {"message": "Another", "causedBy": [{"message": "Job X exited"}]},
    ]
    assert failure_message(failures) == "Workflow failed: Job X exited: Another"
    assert failure_message(None) == "" and failure_message([{"nope": 1}]) == ""
    status, message = workflow_status({"id": "w", "status": "Failed"})
    assert status is JobStatus.finishedWithError and message.endswith("no reason given")


# -- no waiting, and the mapping that makes it possible ---------------------------------------
def job_spec(jid: str, storebase: Path, command: tuple[str, ...] = ("sleep", "30")) -> JobSpec:
    job_dir = storebase / f"key-{jid}"
    job_dir.mkdir(exist_ok=True)
    return make_spec(jid, job_dir, command)


def test_submit_returns_at_once_and_the_id_is_kept_with_the_job(
    cromwell: FakeCromwell, storebase: Path, jid: str
) -> None:
    cromwell.query_lag = 60  # Cromwell's query index has not caught up
    backend = make_backend(cromwell, storebase)
    started = time.monotonic()
    info = backend.submit(job_spec(jid, storebase))
    assert time.monotonic() - started < 1 and info.status is JobStatus.notStarted
    workflow = cromwell.by_jid(jid)
    assert workflow.id in (storebase / f"key-{jid}" / REF_FILE).read_text()
    assert [r for r in cromwell.requests if r[0] == "POST"] == [("POST", "/api/workflows/v1")]

    # a restarted service (new backend, empty memory) finds it through the file, not the query
    cromwell.requests.clear()
    restarted = make_backend(cromwell, storebase)
    assert wait_for(lambda: restarted.info(jid).status is JobStatus.started, timeout=5)
    assert not any(path.endswith("/query") for _, path in cromwell.requests)
    restarted.remove(jid)
    assert not (storebase / f"key-{jid}" / REF_FILE).exists()


def test_without_its_file_a_job_is_found_by_label(cromwell: FakeCromwell, storebase: Path, jid: str) -> None:
    make_backend(cromwell, storebase).submit(job_spec(jid, storebase))
    (storebase / f"key-{jid}" / REF_FILE).unlink()
    other = make_backend(cromwell, storebase)
    assert other.info(jid).status in {JobStatus.notStarted, JobStatus.started}
    assert ("GET", "/api/workflows/v1/query") in cromwell.requests
    with pytest.raises(JobExists):
        other.validate(job_spec(jid, storebase))
    other.remove(jid)
    with pytest.raises(JobNotFound):
        make_backend(cromwell, storebase).info(jid)


def test_a_job_removed_by_another_process_is_gone_here_too(
    cromwell: FakeCromwell, storebase: Path, jid: str
) -> None:
    first = make_backend(cromwell, storebase)
    first.submit(job_spec(jid, storebase))
    second = make_backend(cromwell, storebase)
    second.remove(jid)
    with pytest.raises(JobNotFound):
        first.info(jid)  # its memory still had the workflow; the relabelling tells it


def test_the_jid_can_be_reused_after_removal(cromwell: FakeCromwell, storebase: Path, jid: str) -> None:
    backend = make_backend(cromwell, storebase)
    backend.submit(job_spec(jid, storebase, ("true",)))
    old = cromwell.by_jid(jid).id
    backend.remove(jid)
    backend.validate(job_spec(jid, storebase, ("true",)))
    backend.submit(job_spec(jid, storebase, ("true",)))
    assert cromwell.by_jid(jid).id != old
    assert finished(backend, jid, timeout=10).status is JobStatus.finishedSuccessfully


def test_a_running_job_is_aborted(cromwell: FakeCromwell, storebase: Path, jid: str) -> None:
    backend = make_backend(cromwell, storebase)
    backend.submit(job_spec(jid, storebase))
    workflow = cromwell.by_jid(jid)
    backend.remove(jid)
    assert workflow.aborted_at is not None
    assert wait_for(lambda: workflow.status(time.time()) == "Aborted", timeout=5)


def test_stop_aborts_and_keeps_the_workflow_the_jid_s(
    cromwell: FakeCromwell, storebase: Path, jid: str
) -> None:
    """REMOVE_JOBS=no: the workflow is aborted but keeps its label, so the job stays known."""
    backend = make_backend(cromwell, storebase)
    backend.submit(job_spec(jid, storebase))
    workflow = cromwell.by_jid(jid)
    backend.stop(jid)
    assert workflow.aborted_at is not None and workflow.labels[JOB_LABEL] == jid
    assert backend.info(jid).jid == jid


def test_a_submission_not_yet_visible_reads_not_started(
    cromwell: FakeCromwell, storebase: Path, jid: str
) -> None:
    backend = make_backend(cromwell, storebase)
    backend.submit(job_spec(jid, storebase))
    workflow = cromwell.by_jid(jid)
    del cromwell.workflows[workflow.id]  # Cromwell has not written its metadata yet
    info = backend.info(jid)
    assert info.status is JobStatus.notStarted and "not yet visible" in info.message


# -- logs -------------------------------------------------------------------------------------
def test_logs_outside_storebase_are_reported_unavailable(tmp_path: Path, storebase: Path, jid: str) -> None:
    server = FakeCromwell(tmp_path / "elsewhere").start()
    server.planner = lambda w: Plan(stdout="secret\n")
    try:
        backend = make_backend(server, storebase)
        backend.submit(job_spec(jid, storebase, ("true",)))
        finished(backend, jid, timeout=10)
        logs = backend.logs(jid, tail=10)
        assert logs.startswith("logs unavailable") and "outside storeBase" in logs and "secret" not in logs
    finally:
        server.stop()


def test_logs_through_a_symlink_out_of_storebase_are_not_read(
    cromwell: FakeCromwell, storebase: Path, tmp_path: Path, jid: str
) -> None:
    (tmp_path / "outside.txt").write_text("secret\n")
    cromwell.executions.mkdir(parents=True, exist_ok=True)
    backend = make_backend(cromwell, storebase)
    backend.submit(job_spec(jid, storebase, ("true",)))
    finished(backend, jid, timeout=10)
    stdout = Path(cromwell.metadata(cromwell.by_jid(jid))["calls"]["ChRISJob.plugin_instance"][0]["stdout"])
    stdout.unlink()
    stdout.symlink_to(tmp_path / "outside.txt")
    assert "secret" not in backend.logs(jid, tail=10)


def test_long_logs_are_tailed(cromwell: FakeCromwell, storebase: Path, jid: str) -> None:
    lines = [f"line {i}\n" for i in range(200_000)]
    cromwell.planner = lambda w: Plan(stdout="".join(lines))
    backend = make_backend(cromwell, storebase)
    backend.submit(job_spec(jid, storebase, ("true",)))
    finished(backend, jid, timeout=10)
    assert backend.logs(jid, tail=3) == "".join(lines[-3:])
    assert backend.logs(jid, tail=0) == ""


# -- Cromwell's error answers -----------------------------------------------------------------
def test_cromwell_errors_become_domain_errors(cromwell: FakeCromwell, storebase: Path, jid: str) -> None:
    backend = make_backend(cromwell, storebase)
    spec = job_spec(jid, storebase)
    cromwell.fail_with = (500, "Cromwell's database is down")
    for call in (backend.ping, lambda: backend.submit(spec), lambda: backend.info(jid)):
        with pytest.raises(BackendUnavailable, match="database is down"):
            call()
    cromwell.fail_with = (400, "Error(s): something about the submission")
    with pytest.raises(InvalidJob, match="something about the submission"):
        backend.submit(spec)
    cromwell.fail_with = None
    cromwell.stop()
    with pytest.raises(BackendUnavailable, match="does not answer"):
        backend.info(jid)


def test_validate_refuses_what_cromwell_cannot_do(cromwell: FakeCromwell, storebase: Path, jid: str) -> None:
    backend = make_backend(cromwell, storebase)
    for overrides, field in [
        ({"user": "1000:1000"}, "CONTAINER_USER"),
        ({"image": "two words"}, "image"),
        ({"image": ""}, "image"),
        ({"env": {"NOT-A-NAME": "x"}}, "env"),
        ({"resources": Resources(2000, 1000, 64, 0)}, "number_of_workers"),
    ]:
        spec = make_spec(jid, storebase, ("true",), **overrides)
        with pytest.raises(InvalidJob, match=field):
            backend.validate(spec)
    assert cromwell.workflows == {}


# -- settings -----------------------------------------------------------------------------------
BASE = {"APPLICATION_MODE": "development", "STOREBASE": "/sb", "CONTAINER_ENV": "cromwell"}


def test_settings_read_only_when_chosen() -> None:
    ignored = load_settings({"STOREBASE": "/sb", "APPLICATION_MODE": "development", "CROMWELL_URL": "nope"})
    assert ignored.cromwell.url is None
    url = "https://cromwell.example:8000/"
    chosen = load_settings({**BASE, "CROMWELL_URL": url, "TIMELIMIT_MINUTES": "90"})
    assert chosen.cromwell.url == "https://cromwell.example:8000" and chosen.cromwell.timelimit_minutes == 90
    assert load_settings({**BASE, "CROMWELL_URL": "http://c"}).cromwell.timelimit_minutes is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CROMWELL_URL", ""),
        ("CROMWELL_URL", "cromwell:8000"),
        ("CROMWELL_URL", "ftp://cromwell"),
        ("CROMWELL_URL", "http://"),
        ("CROMWELL_URL", "http://cromwell:99999"),
        ("CROMWELL_URL", "http://cromwell/?x=1"),
        ("TIMELIMIT_MINUTES", "0"),
        ("TIMELIMIT_MINUTES", "an hour"),
    ],
)
def test_bad_cromwell_settings_name_the_variable(variable: str, value: str) -> None:
    env = {**BASE, "CROMWELL_URL": "http://cromwell:8000", variable: value}
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert error.value.variable == variable


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"CONTAINER_USER": "1000:1000"}, "CONTAINER_USER"),
        ({"SHM_SIZE": "64"}, "SHM_SIZE"),
        ({"COMPUTE_VOLUME_TYPE": "docker_local_volume", "STOREBASE": ""}, "COMPUTE_VOLUME_TYPE"),
    ],
)
def test_what_cromwell_cannot_honour_stops_the_service(extra: dict[str, str], variable: str) -> None:
    settings = load_settings({**BASE, "CROMWELL_URL": "http://127.0.0.1:9", **extra})
    with pytest.raises(SettingsError) as error:
        build_backend(settings)
    assert error.value.variable == variable


def test_building_the_backend_makes_no_network_call() -> None:
    settings = load_settings({**BASE, "CROMWELL_URL": "http://127.0.0.1:9"})  # nothing listens
    backend, volumes = build_backend(settings)
    assert backend.name == "cromwell" and volumes.root == "/sb"
    with pytest.raises(BackendUnavailable):
        backend.ping()


def test_a_label_lookup_never_overwrites_what_a_submission_recorded(
    cromwell: FakeCromwell, storebase: Path, jid: str
) -> None:
    """A status poll that found the workflow by label while the submission was finishing."""
    backend = make_backend(cromwell, storebase)
    spec = job_spec(jid, storebase)
    query = backend.client.query_label

    def query_while_the_submission_finishes(key: str, value: str):
        results = query(key, value)
        if results:  # the starter thread records the workflow it just submitted
            backend._remember(jid, WorkflowRef(results[0]["id"], spec.image, spec.cmd, time.time()))
        return results

    make_backend(cromwell, storebase).submit(spec)
    (storebase / f"key-{jid}" / REF_FILE).unlink()  # not written yet by the submitting thread
    backend.client.query_label = query_while_the_submission_finishes
    assert backend.info(jid).cmd == spec.cmd


def test_an_abort_refused_for_another_reason_is_not_ignored(
    cromwell: FakeCromwell, storebase: Path, jid: str
) -> None:
    backend = make_backend(cromwell, storebase)
    backend.submit(job_spec(jid, storebase))
    workflow = cromwell.by_jid(jid)
    original = cromwell.abort
    cromwell.abort = lambda w: (400, {"status": "fail", "message": "Error(s): abort is not allowed"})
    try:
        with pytest.raises(InvalidJob, match="abort is not allowed"):
            backend.remove(jid)
    finally:
        cromwell.abort = original
    assert workflow.labels[JOB_LABEL] == jid  # still pfcon's job, still findable
    backend.remove(jid)
    assert workflow.aborted_at is not None and workflow.labels[JOB_LABEL] == REMOVED
