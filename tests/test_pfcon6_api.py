"""pfcon 6's API rules on the real engine: skips, ordering, idempotency, races, hazards, inputs.

The full ChRIS sequence per storage is in test_pfcon6_chris.py; here each rule of PFCON6.md
2.6-2.7 and each ChRIS hazard of 1.6 gets its own test through Flask's test client.
"""

from __future__ import annotations

import io
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from pfcon.operations.records import Operation, StoreOperationStore
from pfcon.store import open_store, prepare
from tests.api_helpers import login
from tests.helpers import job_form, wait_for
from tests.s3_fixtures import ENDPOINT, Relay, relay_fixture, s3_bucket_fixture, s3_client_fixture  # noqa: F401
from tests.swift_fixtures import swift_conn_fixture, swift_container_fixture  # noqa: F401
from tests.test_innetwork import OBJECT_STORES, Data, storage_data

pytestmark = pytest.mark.integration

API = "/api/v1"
TERMINAL = ("finishedSuccessfully", "finishedWithError", "undefined")


class Pfcon6:
    """Flask test client calls, answers checked for pfcon 6's shapes."""

    def __init__(self, app) -> None:
        self.app = app
        self.client = app.test_client()
        self.auth = login(self.client)

    def post(self, kind: str, form: dict, files: bytes | None = None, status: int = 201) -> dict:
        data = dict(form)
        if files is not None:
            data["data_file"] = (io.BytesIO(files), "data_file")
        answer = self.client.post(f"{API}/{kind}jobs/", data=data, headers=self.auth)
        assert answer.status_code == status, answer.get_json()
        body = answer.get_json()
        if status == 201:
            assert {"jid", "image", "cmd", "status", "message", "timestamp", "logs"} <= set(body["compute"])
        return body

    def get(self, kind: str, jid: str, status: int = 200) -> dict:
        answer = self.client.get(f"{API}/{kind}jobs/{jid}/", headers=self.auth)
        assert answer.status_code == status, answer.get_json()
        return answer.get_json()

    def wait(self, kind: str, jid: str, timeout: float = 60) -> dict:
        return wait_for(lambda: (c := self.get(kind, jid)["compute"])["status"] in TERMINAL and c, timeout)

    def delete(self, kind: str, jid: str) -> None:
        answer = self.client.delete(f"{API}/{kind}jobs/{jid}/", headers=self.auth)
        assert answer.status_code == 204 and answer.data == b""


def plugin_form(jid: str, output_dir: str | None = None, **overrides) -> dict:
    form = job_form(jid, memory_limit="300", **overrides)
    if output_dir:
        form["output_dir"] = output_dir
    return form


@pytest.fixture
def api6(request, make_app, storebase: Path):
    def build(storage: str, **env: str) -> tuple[Pfcon6, Data]:
        full_env, data = storage_data(request, storage, storebase, **env)
        return Pfcon6(make_app(**full_env)), data

    return build


def _copied(api: Pfcon6, data: Data, jid: str, files: dict[str, str] | None = None) -> tuple[str, str]:
    """A finished copy job of ``files`` (default one file): returns (input dir, output dir)."""
    inputs, output = f"home/u/{jid}/in", f"home/u/{jid}/out"
    data.put({f"{inputs}/{name}": body for name, body in (files or {"a.txt": "alpha"}).items()})
    api.post("copy", {"jid": jid, "input_dirs": inputs, "output_dir": output})
    assert api.wait("copy", jid)["status"] == "finishedSuccessfully"
    return inputs, output


# -- server info ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("storage", "flags"),
    [
        ("zipfile", (False, False)),
        ("filesystem", (False, False)),
        ("fslink", (True, False)),
        ("swift", (True, True)),
        ("s3", (True, True)),
    ],
)
def test_server_info_on_all_four_lists(api6, storage: str, flags: tuple[bool, bool]) -> None:
    api, _ = api6(storage)
    kinds = ("plugin", "copy", "upload", "delete")
    infos = [api.client.get(f"{API}/{kind}jobs/", headers=api.auth).get_json() for kind in kinds]
    assert all(info == infos[0] for info in infos)
    assert (infos[0]["requires_copy_job"], infos[0]["requires_upload_job"]) == flags
    assert infos[0]["server_version"] == api.app.extensions["pfcon"].settings.server_version
    classic = api.client.get(f"{API}/jobs/", headers=api.auth).get_json()
    assert "requires_copy_job" not in classic and classic["storage_env"] == storage
    if storage == "s3":
        assert infos[0]["s3_endpoint_url"] == classic["s3_endpoint_url"] == ENDPOINT


# -- skipped operations are recorded ---------------------------------------------------------
def test_skipped_operations_answer_their_records(api6, jid: str) -> None:
    api, _ = api6("zipfile")
    for kind, skipped, form in [
        ("copy", "copySkipped", {"jid": jid, "output_dir": "x/out"}),
        ("upload", "uploadSkipped", {"jid": jid, "job_output_path": "x/out"}),
        ("delete", "deleteSkipped", {"jid": jid}),
    ]:
        posted = api.post(kind, form)["compute"]
        assert (posted["status"], posted["message"], posted["timestamp"]) == (
            "finishedSuccessfully",
            skipped,
            "",
        )
        assert api.get(kind, jid)["compute"] == posted  # no endless re-POST of a 404
        api.delete(kind, jid)
        api.get(kind, jid, status=404)
    api.post("copy", {"jid": jid}, status=400)  # output_dir is required even where copy is a no-op


def test_stray_data_file_part_is_ignored_outside_zip_plugin_submits(api6, jid: str, storebase: Path) -> None:
    """pfconclient 4.0.0's CLI sends a data_file part holding its timeout with every submit."""
    api, _ = api6("zipfile")
    assert (
        api.post("copy", {"jid": jid, "output_dir": "o"}, files=b"1000")["compute"]["message"]
        == "copySkipped"
    )
    assert not list((storebase / ".pfcon-uploads").iterdir())
    api, data = api6("fslink")
    other = f"{jid}-fslink"
    _inputs, output = _copied(api, data, other)
    answer = api.post("plugin", plugin_form(other, output), files=b"1000")
    assert answer["data"] == {}
    assert api.wait("plugin", other)["status"] == "finishedSuccessfully"


# -- ordering (409) and idempotency --------------------------------------------------------------
def test_plugin_needs_its_copy_finished(api6, jid: str, storebase: Path) -> None:
    api, data = api6("fslink")
    message = api.post("plugin", plugin_form(jid, "home/u/out"), status=409)["message"]
    assert message.startswith("No copy job found")
    api.post(
        "copy", {"jid": jid, "input_dirs": "home/u/missing-link", "output_dir": "home/u/out"}, status=400
    )
    data.put({"home/u/in/a.chrislink": "home/u/nowhere"})
    api.post("copy", {"jid": jid, "input_dirs": "home/u/in", "output_dir": "home/u/out"})
    failed = api.wait("copy", jid)
    assert failed["status"] == "finishedWithError" and "does not exist" in failed["message"]
    message = api.post("plugin", plugin_form(jid, "home/u/out"), status=409)["message"]
    assert message == (
        "Copy job has not completed successfully (status: finishedWithError). Run the copy job first."
    )
    # a failed copy is done again on the next POST
    data.put({"home/u/nowhere/b.txt": "beta"})
    again = api.post("copy", {"jid": jid, "input_dirs": "home/u/in", "output_dir": "home/u/out"})["compute"]
    assert again["status"] in ("notStarted", "started", "finishedSuccessfully")
    done = api.wait("copy", jid)
    assert done["status"] == "finishedSuccessfully" and "redone" not in done["logs"]
    assert (storebase / f"key-{jid}/incoming/home_u_nowhere/b.txt").read_text() == "beta"
    api.post("plugin", plugin_form(jid, "home/u/elsewhere"), status=400)  # not the copy's output_dir


@pytest.mark.parametrize("storage", OBJECT_STORES)
def test_upload_needs_its_plugin_ended(api6, storage: str, jid: str) -> None:
    api, data = api6(storage)
    api.post("upload", {"jid": jid, "job_output_path": f"home/u/{jid}/out"}, status=409)
    _inputs, output = _copied(api, data, jid)
    api.post("plugin", plugin_form(jid, output, args=["--prefix", "out-", "--sleep", "2"]))
    message = api.post("upload", {"jid": jid, "job_output_path": output}, status=409)["message"]
    assert message.startswith("Plugin job has not completed yet (status: ")
    assert api.wait("plugin", jid)["status"] == "finishedSuccessfully"
    api.post("upload", {"jid": jid, "job_output_path": output})
    assert api.wait("upload", jid)["message"].startswith("uploaded 1 files")
    assert data.output(output) == {"out-a.txt": b"alpha"}
    unnamed = api.client.get(f"{API}/pluginjobs/{jid}/file/", headers=api.auth)  # no query: pfcon 6 zips
    assert unnamed.status_code == 200
    with zipfile.ZipFile(io.BytesIO(unnamed.data)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == {"out-a.txt": b"alpha"}


def test_s3_copy_and_upload_fail_in_an_outage_and_are_redone_after_it(api6, relay: Relay, jid: str) -> None:
    """Endpoint down: the operation ends finishedWithError naming S3; a re-POST redoes it."""
    api, data = api6("s3", S3_ENDPOINT_URL=relay.url)
    inputs, output = f"home/u/{jid}/in", f"home/u/{jid}/out"
    data.put({f"{inputs}/a.txt": "alpha"})
    copy = {"jid": jid, "input_dirs": inputs, "output_dir": output}
    relay.down()
    api.post("copy", copy)
    failed = api.wait("copy", jid)
    assert failed["status"] == "finishedWithError" and "does not answer" in failed["message"], failed
    relay.up()
    api.post("copy", copy)
    assert api.wait("copy", jid)["status"] == "finishedSuccessfully"
    api.post("plugin", plugin_form(jid, output, args=["--prefix", "out-"]))
    assert api.wait("plugin", jid)["status"] == "finishedSuccessfully"
    relay.down()
    api.post("upload", {"jid": jid, "job_output_path": output})
    failed = api.wait("upload", jid)
    assert failed["status"] == "finishedWithError" and "does not answer" in failed["message"], failed
    relay.up()
    api.post("upload", {"jid": jid, "job_output_path": output})
    assert api.wait("upload", jid)["status"] == "finishedSuccessfully"
    assert data.output(output) == {"out-a.txt": b"alpha"}


def test_an_existing_job_is_answered_as_it_is_and_a_failed_one_redone(api6, jid: str, docker_client) -> None:
    api, data = api6("fslink")
    _inputs, output = _copied(api, data, jid)
    first = api.post("copy", {"jid": jid, "input_dirs": "other", "output_dir": output})["compute"]
    assert first == api.get("copy", jid)["compute"]  # its parameters ignored, as pfcon 6 does
    failing = plugin_form(jid, output, args=["--fail", "3"])
    api.post("plugin", failing)
    assert api.wait("plugin", jid)["status"] == "finishedWithError"
    container_id = docker_client.containers.get(jid).id
    assert api.post("plugin", plugin_form(jid, output))["data"] == {}
    # polled without pause: the old container's end, which the engine feed had seen, must never
    # answer for the new run (it did, between the new start and the feed's first news of it)
    seen = []
    while not seen or seen[-1] not in TERMINAL:
        seen.append(api.get("plugin", jid)["compute"]["status"])
    assert "finishedWithError" not in seen, seen
    assert seen[-1] == "finishedSuccessfully"  # done again, new container
    assert docker_client.containers.get(jid).id != container_id
    again = api.post("plugin", failing)["compute"]
    assert again["status"] == "finishedSuccessfully"  # a finished job is answered as it is


def test_racing_posts_make_one_job(api6, jid: str) -> None:
    api, data = api6("fslink")
    data.put({f"home/u/{jid}/in/{i}.txt": str(i) for i in range(50)})
    form = {"jid": jid, "input_dirs": f"home/u/{jid}/in", "output_dir": f"home/u/{jid}/out"}
    answers: list[int] = []

    def post() -> None:
        client = api.app.test_client()
        answers.append(client.post(f"{API}/copyjobs/", data=form, headers=api.auth).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [201] * 8
    done = api.wait("copy", jid)
    assert done["status"] == "finishedSuccessfully" and done["logs"].count("queued") == 1


# -- ChRIS's hazards -----------------------------------------------------------------------------
def test_delete_cancels_a_plugin_that_has_not_started(api6, jid: str, docker_client) -> None:
    api, data = api6("fslink")
    _inputs, output = _copied(api, data, jid)
    api.app.extensions["pfcon"].starter.pause()  # accepted and queued, never started
    api.post("plugin", plugin_form(jid, output))
    api.post("delete", {"jid": jid})
    deleted = api.wait("delete", jid)
    assert deleted["status"] == "finishedSuccessfully" and "notStarted" in deleted["message"]
    plugin = api.get("plugin", jid)["compute"]
    assert plugin["status"] == "finishedWithError" and plugin["message"].startswith("cancelled")


def test_delete_overtakes_a_copy_not_yet_started_and_waits_for_one_running(
    api6, jid: str, storebase: Path
) -> None:
    api, data = api6("fslink")
    ops = api.app.extensions["pfcon-operations"]
    data.put({f"home/u/{jid}/in/a.txt": "alpha"})
    queued = ops.runner.enqueue
    ops.runner.enqueue = lambda op: queued(op) if op.kind != "copy" else _never()  # stays queued
    api.post("copy", {"jid": jid, "input_dirs": f"home/u/{jid}/in", "output_dir": f"home/u/{jid}/out"})
    api.post("delete", {"jid": jid})
    assert api.wait("delete", jid)["status"] == "finishedSuccessfully"
    copy = api.get("copy", jid)["compute"]
    assert copy["status"] == "finishedWithError" and copy["message"].startswith("cancelled")
    assert not (storebase / f"key-{jid}/incoming").exists()

    ops.runner.enqueue = queued  # a copy that runs: the delete waits for it, then removes it
    other = f"{jid}-2"
    data.put({f"home/u/{other}/in/{i}.txt": str(i) for i in range(300)})
    stage = ops.storage.stage_input

    def slow_stage(*args, **kwargs):
        time.sleep(1)
        return stage(*args, **kwargs)

    ops.storage.stage_input = slow_stage
    api.post("copy", {"jid": other, "input_dirs": f"home/u/{other}/in", "output_dir": "home/u/o2"})
    assert api.get("copy", other)["compute"]["status"] == "started"
    api.post("delete", {"jid": other})
    assert api.wait("copy", other)["status"] == "finishedSuccessfully"
    deleted = api.wait("delete", other)
    assert deleted["message"].startswith("removed the job's data: 300 files"), deleted
    assert not (storebase / f"key-{other}/incoming").exists()


def _never():
    from concurrent.futures import Future

    return Future()


def test_plus_in_the_output_path_is_matched_when_it_arrives_as_a_space(api6, jid: str) -> None:
    api, data = api6("fslink")
    inputs, output = f"home/a+b/{jid}/in", f"home/a+b/{jid}/out"
    data.put({f"{inputs}/a.txt": "alpha"})
    api.post("copy", {"jid": jid, "input_dirs": inputs, "output_dir": output})
    assert api.wait("copy", jid)["status"] == "finishedSuccessfully"
    api.post("plugin", plugin_form(jid, output))
    assert api.wait("plugin", jid)["status"] == "finishedSuccessfully"
    raw = api.client.get(f"{API}/pluginjobs/{jid}/file/?job_output_path={output}", headers=api.auth)
    assert raw.get_json() == {"job_output_path": output, "rel_file_paths": ["out-a.txt"]}
    spaced = output.replace("+", " ")
    other = api.client.get(f"{API}/pluginjobs/{jid}/file/?job_output_path={spaced}", headers=api.auth)
    assert other.status_code == 400  # a real space is another path


def test_a_plugin_the_engine_forgot_answers_its_recorded_end(api6, jid: str, docker_client) -> None:
    api, data = api6("fslink")
    _inputs, output = _copied(api, data, jid)
    api.post("plugin", plugin_form(jid, output))
    final = api.wait("plugin", jid)
    docker_client.containers.get(jid).remove(force=True)  # Kubernetes' TTL, a prune, an operator
    wait_for(lambda: api.get("plugin", jid)["compute"] == final, timeout=5)
    api.post("delete", {"jid": jid})
    assert api.wait("delete", jid)["status"] == "finishedSuccessfully"
    for kind in ("copy", "plugin", "delete"):
        api.delete(kind, jid)


# -- both APIs, one service ------------------------------------------------------------------------
def test_classic_and_pfcon6_jobs_side_by_side(api6, storebase: Path) -> None:
    api, data = api6("fslink")
    old, new = "side-classic", "side-pfcon6"
    data.put({"home/u/c/in/a.txt": "classic", "home/u/n/in/a.txt": "pfcon6"})
    slow = ["--prefix", "out-", "--sleep", "1"]
    form = job_form(old, input_dirs=["home/u/c/in"], output_dir="home/u/c/out", args=slow)
    classic = api.client.post(f"{API}/jobs/", data=form, headers=api.auth).get_json()
    assert classic["compute"]["status"] == "notstarted"  # pfcon 5.3's spelling
    api.post("copy", {"jid": new, "input_dirs": "home/u/n/in", "output_dir": "home/u/n/out"})
    assert api.wait("copy", new)["status"] == "finishedSuccessfully"
    fresh = api.post("plugin", plugin_form(new, "home/u/n/out", args=slow))["compute"]
    assert fresh["status"] == "notStarted"  # pfcon 6's spelling
    # one job, whichever API asks
    assert api.wait("plugin", old)["status"] == "finishedSuccessfully"
    assert api.wait("plugin", new)["status"] == "finishedSuccessfully"
    seen = api.client.get(f"{API}/jobs/{new}/", headers=api.auth).get_json()["compute"]
    assert seen == api.get("plugin", new)["compute"]
    assert data.output("home/u/c/out") == {"out-a.txt": b"classic"}
    assert data.output("home/u/n/out") == {"out-a.txt": b"pfcon6"}
    assert api.client.delete(f"{API}/jobs/{new}/", headers=api.auth).status_code == 204
    api.delete("plugin", old)
    assert not (storebase / f"key-{old}").exists() and not (storebase / f"key-{new}").exists()


# -- hostile inputs ---------------------------------------------------------------------------------
HOSTILE = [
    ("copy", {"jid": "../../etc", "output_dir": "o"}, "jid"),
    ("copy", {"jid": "/../x", "output_dir": "o"}, "jid"),
    ("copy", {"jid": "j" * 200, "output_dir": "o"}, "jid"),
    ("copy", {"jid": "", "output_dir": "o"}, "jid"),
    ("copy", {"jid": "J", "output_dir": "o", "cpu_limit": "lots"}, "cpu_limit"),
    # beyond what the store's columns hold: it was an OverflowError in the store, a 500
    ("copy", {"jid": "J", "output_dir": "o", "cpu_limit": str(10**30)}, "cpu_limit"),
    ("upload", {"jid": "J", "job_output_path": "o", "memory_limit": str(2**31)}, "memory_limit"),
    ("delete", {"jid": "J", "cpu_limit": str(2**31)}, "cpu_limit"),
    ("plugin", {**plugin_form("J", "o"), "memory_limit": str(2**31)}, "memory_limit"),
    ("copy", {"jid": "J", "input_dirs": "../outside", "output_dir": "o"}, "input_dirs"),
    ("copy", {"jid": "J", "input_dirs": "/etc", "output_dir": "o"}, "input_dirs"),
    ("copy", {"jid": "J", "input_dirs": "key-other/incoming", "output_dir": "o"}, "input_dirs"),
    ("copy", {"jid": "J", "input_dirs": ".pfcon/operations", "output_dir": "o"}, "input_dirs"),
    ("copy", {"jid": "J", "input_dirs": "in", "output_dir": "../../tmp/x"}, "output_dir"),
    ("copy", {"jid": "J", "input_dirs": "in", "output_dir": ".pfcon"}, "output_dir"),
    ("copy", {"jid": "J", "input_dirs": "in", "output_dir": "in/out"}, "overlap"),
    ("upload", {"jid": "J", "job_output_path": "../../etc"}, "job_output_path"),
    ("upload", {"jid": "J", "job_output_path": "a/\x00b"}, "job_output_path"),
    ("delete", {"jid": "a/../../b"}, "jid"),
    ("plugin", {**plugin_form("../x", "o")}, "jid"),
    ("plugin", {**plugin_form("J", "../../o")}, "output_dir"),
]


@pytest.mark.parametrize(("kind", "form", "fragment"), HOSTILE)
def test_hostile_fields_are_400_and_nothing_is_written(
    api6, storebase: Path, kind: str, form: dict, fragment: str
) -> None:
    api, data = api6("fslink")
    data.put({"in/a.txt": "a"})
    before = _tree(storebase)
    message = api.post(kind, form, status=400)["message"]
    assert fragment in message
    assert _tree(storebase) == before


def _tree(storebase: Path) -> list[str]:
    """Everything under storeBase but the job store's own files (SQLite's WAL comes and goes)."""
    paths = (p.relative_to(storebase).as_posix() for p in storebase.rglob("*"))
    return sorted(p for p in paths if not p.startswith(".pfcon/pfcon.db"))


def test_hostile_job_output_path_and_jid_in_urls(api6, jid: str, storebase: Path) -> None:
    api, data = api6("fslink")
    _inputs, output = _copied(api, data, jid)
    api.post("plugin", plugin_form(jid, output))
    api.wait("plugin", jid)
    for path in ("/", "..", "../..", "home/u", ".pfcon/operations", f"key-{jid}"):
        answer = api.client.get(f"{API}/pluginjobs/{jid}/file/?job_output_path={path}", headers=api.auth)
        assert answer.status_code == 400, (path, answer.get_json())
    for bad in ("..", "%2e%2e", "a%2fb"):
        assert api.client.get(f"{API}/copyjobs/{bad}/", headers=api.auth).status_code in (400, 404)
    assert (storebase / f"home/u/{jid}/in/a.txt").exists()


# -- surviving a restart -----------------------------------------------------------------------------
def test_an_operation_whose_process_died_is_redone_at_start(
    make_app, make_settings, storebase: Path, jid: str
) -> None:
    Data("fslink", storebase).put({"home/u/in/a.txt": "alpha"})
    (storebase / f"key-{jid}").mkdir()
    (storebase / f"key-{jid}/incoming").mkdir()  # a half-done copy
    (storebase / f"key-{jid}/incoming/partial").write_text("cut off")
    params = {"input_dirs": ["home/u/in"], "output_dir": "home/u/out", "cpu_limit": 1000, "memory_limit": 300}
    settings = make_settings(PFCON_INNETWORK="true", STORAGE_ENV="fslink")
    prepare(settings)
    store = open_store(settings)
    dead = f"{os.uname().nodename}:999999:1"
    StoreOperationStore(store, storebase).save(
        Operation(jid, "copy", "started", "copying", params, owner=dead)
    )
    api = Pfcon6(make_app(PFCON_INNETWORK="true", STORAGE_ENV="fslink"))
    done = api.wait("copy", jid)
    assert done["status"] == "finishedSuccessfully" and "redone from the start" in done["logs"]
    assert sorted(p.name for p in (storebase / f"key-{jid}/incoming").iterdir()) == ["a.txt"]
    row = store.live(jid, "copy")
    assert row.spec["attempt"] == 2 and row.started_at and row.finished_at and row.api == "pfcon6"
    assert store.latest(jid, "copy").id == row.id
    states = [event.state for event in store.events(row.id)]
    assert states == ["queued", "started", "finished"]
    store.close()
