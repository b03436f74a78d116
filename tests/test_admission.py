"""The admission queue on real dockerd and Podman: capacity read back from the engine while
jobs run, the documented order, backfill, fair share, 400s, restart, delete, vanishing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pfcon.app import close_app
from pfcon.settings import load_settings
from tests.api_helpers import login, submit, wait_started, wait_terminal
from tests.conftest import Apps, remove_test_containers
from tests.helpers import TEST_IMAGE, TEST_LABEL, EngineSampler, job_form, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def queue_app(engine, storebase: Path, build_app: Apps) -> Iterator[Any]:
    """Apps on ``engine`` with the queue on and the given capacity (a fresh app = a restart)."""

    def build(**env: Any) -> Any:
        base = {
            "APPLICATION_MODE": "development",
            "STOREBASE": str(storebase),
            "JOB_LABELS": TEST_LABEL,
            "CONTAINER_ENV": engine.name,
        }
        return build_app(load_settings({**base, **{k: str(v) for k, v in env.items()}}))

    yield build
    build_app.close()  # no scheduler may start a job after its containers went
    remove_test_containers(engine.client)


class LimitSampler(EngineSampler):
    """Which job containers run at once, and the peaks of their limits."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.peak_cpus = self.peak_memory_mib = 0.0
        self.peak_count = 0

    def sample(self, running: list[Any]) -> set[str]:
        host = [c.attrs.get("HostConfig") or {} for c in running]
        self.peak_cpus = max(self.peak_cpus, sum(h.get("NanoCpus") or 0 for h in host) / 1e9)
        self.peak_memory_mib = max(self.peak_memory_mib, sum(h.get("Memory") or 0 for h in host) / 2**20)
        self.peak_count = max(self.peak_count, len(running))
        return {c.name for c in running}


def _job(prefix: str, sleep: float, cpus: float, memory_mib: int, auid: str = "cube") -> dict[str, Any]:
    jid = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return job_form(
        jid,
        args=["--sleep", str(sleep), "--prefix", "out-"],
        cpu_limit=str(round(cpus * 1000)),
        memory_limit=str(memory_mib),
        auid=auid,
    )


def _submit_all(client, auth, forms: list[dict[str, Any]]) -> list[str]:
    for form in forms:
        answer = submit(client, auth, form, {"a.txt": form["jid"]})
        assert answer.status_code == 201, answer.get_json()
    return [form["jid"] for form in forms]


def _history(client, auth, jid: str) -> dict[str, Any]:
    answer = client.get(f"/api/v1/history/{jid}/", headers=auth)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def _admitted(client, auth, jid: str) -> datetime:
    """When the queue took the job (its ``admitted`` event): starts then follow the engine's pace."""
    events = _history(client, auth, jid)["events"]
    return datetime.fromisoformat(next(e["at"] for e in events if e["message"].startswith("admitted:")))


def _assert_admitted_in_order(client, auth, jids: list[str]) -> None:
    admitted = [_admitted(client, auth, jid) for jid in jids]
    assert admitted == sorted(admitted), list(zip(jids, admitted, strict=True))


def _message(client, auth, jid: str) -> str:
    return client.get(f"/api/v1/jobs/{jid}/", headers=auth).get_json()["compute"]["message"]


def _says(client, auth, jid: str, start: str = "", end: str = "") -> str:
    """The job's message once the scheduler's next pass wrote it (it follows each change)."""
    return wait_for(
        lambda: (text := _message(client, auth, jid)).startswith(start) and text.endswith(end) and text,
        timeout=20,
    )


def _queue(client, auth) -> dict[str, Any]:
    return client.get("/api/v1/jobs/", headers=auth).get_json()["queue"]


def test_never_more_at_once_than_fits_and_all_finish_in_order(queue_app, engine) -> None:
    app = queue_app(PFCON_CAPACITY_CPUS=2, PFCON_CAPACITY_MEMORY_MIB=1024)
    client = app.test_client()
    auth = login(client)
    forms = [_job("fit", 2, 1, 384) for _ in range(5)]  # 5 CPUs, 1920 MiB asked; 2 CPUs, 1 GiB held
    with LimitSampler(engine.client) as sampler:
        jids = _submit_all(client, auth, forms)
        wait_for(lambda: _queue(client, auth)["running"] == 2, timeout=30)
        queue = _queue(client, auth)
        assert queue["capacity"] == {"cpus": 2.0, "memory_mib": 1024, "gpus": 0}
        assert queue["queued"] == 3 and queue["free"]["cpus"] == 0.0
        _says(client, auth, jids[4], "queued: 2 ahead; needs 1 CPU, 384 MiB; free 0 CPUs, 256 MiB")
        for jid in jids:
            assert (
                wait_terminal(client, auth, jid, timeout=120)["compute"]["status"] == "finishedSuccessfully"
            )
    assert sampler.peak_count == 2 and sampler.peak_cpus <= 2.0 and sampler.peak_memory_mib <= 1024
    _assert_admitted_in_order(client, auth, jids)
    waits = [_history(client, auth, jid)["wait_seconds"] for jid in jids]
    assert waits[4] > waits[0] + 2  # the history records each job's wait
    assert _queue(client, auth)["free_share"] == {"cpu": 1.0, "memory": 1.0, "gpu": 1.0}


def test_backfill_only_where_it_cannot_delay_the_head(queue_app, engine) -> None:
    """A holds most memory; B (the head) waits for it; C fits beside B's reservation and
    starts first; D would take a CPU B needs, so it waits behind B."""
    app = queue_app(PFCON_CAPACITY_CPUS=4, PFCON_CAPACITY_MEMORY_MIB=1024)
    client = app.test_client()
    auth = login(client)
    a = _submit_all(client, auth, [_job("bfa", 5, 1, 768)])[0]
    wait_started(client, auth, a)
    b, c, d = _submit_all(
        client, auth, [_job("bfb", 1, 2, 512), _job("bfc", 10, 1, 128), _job("bfd", 1, 1, 64)]
    )
    wait_started(client, auth, c)
    _says(client, auth, b, start="queued: 0 ahead; needs 2 CPUs, 512 MiB; free 2 CPUs, 128 MiB")
    _says(client, auth, d, end="(kept for the job ahead)")
    for jid in (a, b, c, d):
        assert wait_terminal(client, auth, jid, timeout=120)["compute"]["status"] == "finishedSuccessfully"
    _assert_admitted_in_order(client, auth, [a, c, b, d])
    # the backfilled C (10 s) did not delay B: B started once A ended, while C still ran
    assert _history(client, auth, b)["started"] < _history(client, auth, c)["finished"]


def test_fair_share_between_users(queue_app, engine) -> None:
    app = queue_app(PFCON_CAPACITY_CPUS=1, PFCON_CAPACITY_MEMORY_MIB=1024, PFCON_FAIR_SHARE="yes")
    client = app.test_client()
    auth = login(client)
    pipeline = _submit_all(client, auth, [_job("alice", 4, 1, 64, auid="alice") for _ in range(3)])
    wait_started(client, auth, pipeline[0])
    bob = _submit_all(client, auth, [_job("bob", 1, 1, 64, auid="bob")])[0]
    _says(client, auth, bob, start="queued: 0 ahead;")  # before alice's queued jobs
    for jid in [*pipeline, bob]:
        assert wait_terminal(client, auth, jid, timeout=120)["compute"]["status"] == "finishedSuccessfully"
    _assert_admitted_in_order(client, auth, [pipeline[0], bob, *pipeline[1:]])
    assert _queue(client, auth)["fair_share"] is True


@pytest.mark.parametrize(
    ("field_", "value", "words"),
    [("cpu_limit", "3000", "3 CPUs"), ("memory_limit", "2048", "2 GiB"), ("gpu_limit", "1", "1 GPU")],
)
def test_a_job_bigger_than_the_capacity_is_a_400(
    queue_app, engine, field_: str, value: str, words: str
) -> None:
    app = queue_app(PFCON_CAPACITY_CPUS=2, PFCON_CAPACITY_MEMORY_MIB=1024, PFCON_CAPACITY_GPUS=0)
    client = app.test_client()
    auth = login(client)
    form = job_form(f"big-{uuid.uuid4().hex[:8]}", **{field_: value})
    answer = submit(client, auth, form, {"a.txt": "x"})
    assert answer.status_code == 400
    message = answer.get_json()["message"]
    if engine.name == "podman" and field_ == "gpu_limit":  # Podman refuses GPUs before the queue
        assert message.startswith("gpu_limit: podman cannot schedule GPUs")
    else:
        assert message.startswith(f"{field_}: the job asks for {words}, more than the whole capacity")
    assert client.get(f"/api/v1/jobs/{form['jid']}/", headers=auth).status_code == 404  # nothing kept


def test_a_restart_keeps_the_queue_and_its_order(queue_app, engine) -> None:
    first = queue_app(PFCON_CAPACITY_CPUS=1, PFCON_CAPACITY_MEMORY_MIB=1024)
    client = first.test_client()
    auth = login(client)
    jids = _submit_all(client, auth, [_job("rst", 2, 1, 64) for _ in range(4)])
    wait_started(client, auth, jids[0])
    _says(client, auth, jids[3], start="queued: 2 ahead;")
    close_app(first)  # the service stops with three jobs queued
    with LimitSampler(engine.client) as sampler:
        second = queue_app(PFCON_CAPACITY_CPUS=1, PFCON_CAPACITY_MEMORY_MIB=1024)
        client = second.test_client()
        for jid in jids:
            assert (
                wait_terminal(client, auth, jid, timeout=120)["compute"]["status"] == "finishedSuccessfully"
            )
    assert sampler.peak_count <= 1
    _assert_admitted_in_order(client, auth, jids)


def test_delete_of_queued_and_running_jobs_and_a_vanished_one(queue_app, engine) -> None:
    app = queue_app(PFCON_CAPACITY_CPUS=1, PFCON_CAPACITY_MEMORY_MIB=1024)
    client = app.test_client()
    auth = login(client)
    running, queued, third, fourth = _submit_all(
        client,
        auth,
        [_job("del", 60, 1, 64), _job("del", 1, 1, 64), _job("del", 60, 1, 64), _job("del", 1, 1, 64)],
    )
    wait_started(client, auth, running)
    with LimitSampler(engine.client) as sampler:
        assert client.delete(f"/api/v1/jobs/{queued}/", headers=auth).status_code == 204
        _says(client, auth, third, start="queued: 0 ahead;")
        assert client.get(f"/api/v1/jobs/{queued}/", headers=auth).status_code == 404
        assert client.delete(f"/api/v1/jobs/{running}/", headers=auth).status_code == 204
        wait_started(client, auth, third, timeout=15)  # handed on at once, not at the next poll
        engine.client.containers.get(third).remove(force=True)  # behind pfcon's back
        assert wait_terminal(client, auth, fourth, timeout=60)["compute"]["status"] == "finishedSuccessfully"
    assert sampler.peak_count <= 1
    vanished = client.get(f"/api/v1/jobs/{third}/", headers=auth).get_json()["compute"]
    assert vanished["status"] == "undefined" and "no longer knows this job" in vanished["message"], (
        vanished["status"],
        vanished["message"],
    )
    assert _history(client, auth, queued)["started"] is None


def test_a_queued_job_whose_image_vanished_fails_and_the_queue_goes_on(queue_app, engine) -> None:
    repository = f"localhost/pfcon-vanishing-{uuid.uuid4().hex[:8]}"
    engine.client.images.get(TEST_IMAGE).tag(repository, "1")
    doomed_image = f"{repository}:1"
    app = queue_app(PFCON_CAPACITY_CPUS=1, PFCON_CAPACITY_MEMORY_MIB=1024)
    client = app.test_client()
    auth = login(client)
    first, doomed, after = _submit_all(
        client,
        auth,
        [_job("img", 3, 1, 64), {**_job("img", 1, 1, 64), "image": doomed_image}, _job("img", 1, 1, 64)],
    )
    wait_started(client, auth, first)
    engine.client.images.remove(doomed_image)
    compute = wait_terminal(client, auth, doomed, timeout=60)["compute"]
    assert compute["status"] == "finishedWithError"
    assert compute["message"].startswith("failed to start: image: not present on the"), compute
    assert wait_terminal(client, auth, after, timeout=60)["compute"]["status"] == "finishedSuccessfully"


def test_pfcon6_plugin_jobs_wait_in_the_same_queue(make_app, storebase: Path) -> None:
    """A classic job holds the only CPU: a pfcon 6 plugin job waits behind it with the queue's
    message, starts when it ends; a pfcon 6 plugin job bigger than the capacity is a 400."""
    from tests.test_innetwork import Data
    from tests.test_pfcon6_api import Pfcon6, _copied, plugin_form

    app = make_app(PFCON_INNETWORK="true", STORAGE_ENV="fslink", PFCON_CAPACITY_CPUS="1")
    api, data = Pfcon6(app), Data("fslink", storebase)
    classic = _job("p6c", 6, 1, 64)
    classic.update(input_dirs="home/u/shared", output_dir="home/u/classic-out")
    data.put({"home/u/shared/a.txt": "x"})
    answer = api.client.post("/api/v1/jobs/", data=classic, headers=api.auth)
    assert answer.status_code == 201, answer.get_json()
    wait_started(api.client, api.auth, classic["jid"])
    jid = f"p6-{uuid.uuid4().hex[:8]}"
    _inputs, output = _copied(api, data, jid)
    api.post("plugin", plugin_form(jid, output, cpu_limit="1000"))
    wait_for(lambda: api.get("plugin", jid)["compute"]["message"].startswith("queued: 0 ahead; needs 1 CPU"))
    for listing in ("jobs", "pluginjobs", "copyjobs"):  # both APIs' server info report the queue
        queue = api.client.get(f"/api/v1/{listing}/", headers=api.auth).get_json()["queue"]
        assert queue["capacity"]["cpus"] == 1.0 and queue["queued"] == 1 and queue["running"] == 1
    assert api.wait("plugin", jid, timeout=90)["status"] == "finishedSuccessfully"
    assert _admitted(api.client, api.auth, jid) > _admitted(api.client, api.auth, classic["jid"])
    big = f"p6-{uuid.uuid4().hex[:8]}"
    _inputs, output = _copied(api, data, big)
    refused = api.post("plugin", plugin_form(big, output, cpu_limit="2000"), status=400)
    assert refused["message"].startswith("cpu_limit: the job asks for 2 CPUs, more than the whole capacity")


def test_backfill_by_run_time_estimates_from_the_history(queue_app, engine) -> None:
    """With PFCON_RUNTIME_ESTIMATES, the history says A runs ~6 s and C ~1 s: C backfills
    beside A ahead of B (the head, which needs A's CPU), because C is estimated to end before
    A does; the safe rule alone would keep C behind B (no slack: B needs every CPU)."""
    app = queue_app(PFCON_CAPACITY_CPUS=2, PFCON_CAPACITY_MEMORY_MIB=1024, PFCON_RUNTIME_ESTIMATES="yes")
    client = app.test_client()
    auth = login(client)

    def long() -> dict[str, Any]:
        return _job("esa", 6, 1, 128)

    def short() -> dict[str, Any]:
        return _job("esc", 1, 1, 128)

    for jid in _submit_all(client, auth, [long(), short()]):  # the history of both commands
        assert wait_terminal(client, auth, jid, timeout=60)["compute"]["status"] == "finishedSuccessfully"
    a = _submit_all(client, auth, [long()])[0]
    wait_started(client, auth, a)
    b, c = _submit_all(client, auth, [_job("esb", 1, 2, 128), short()])
    for jid in (a, b, c):
        assert wait_terminal(client, auth, jid, timeout=120)["compute"]["status"] == "finishedSuccessfully"
    _assert_admitted_in_order(client, auth, [a, c, b])
    # C ran beside A and ended before B started: it did not delay the head
    assert _history(client, auth, c)["finished"] <= _history(client, auth, b)["started"]
    assert _history(client, auth, a)["finished"] <= _history(client, auth, b)["started"]
