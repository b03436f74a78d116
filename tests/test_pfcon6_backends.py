"""The backend contract for pfcon 6's plugin jobs: Docker, Podman, Swarm and Slurm.

The plugin job of ``pluginjobs/`` runs on the engine like a classic job; the copy and delete
operations around it run in pfcon. On each real engine: a job that succeeds (copy, plugin,
listing), one that fails (status and logs), one cancelled while it runs (a delete job stops
it and the engine no longer holds it), then the four DELETEs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pfcon.errors import JobNotFound
from tests.helpers import TEST_LABEL, wait_for
from tests.slurm_fixtures import cancel_all, remove_slurm_containers, slurm_cluster  # noqa: F401
from tests.swarm_fixtures import remove_test_services, swarm_client_fixture  # noqa: F401
from tests.test_innetwork import Data
from tests.test_pfcon6_api import Pfcon6, plugin_form

pytestmark = pytest.mark.integration

BACKENDS = {  # CONTAINER_ENV -> the fixture that brings its engine up
    "docker": "docker_client",
    "podman": "podman_client",
    "swarm": "swarm_client",
    "slurm": "slurm_cluster",
}


@pytest.fixture(params=list(BACKENDS))
def backend_api(request, docker_client, make_settings, build_app) -> Iterator[Pfcon6]:
    name = request.param
    engine = request.getfixturevalue(BACKENDS[name])
    env = {"CONTAINER_ENV": name, "PFCON_INNETWORK": "true", "STORAGE_ENV": "fslink"}
    if name == "slurm":
        env["TIMELIMIT_MINUTES"] = "10"
    app = build_app(make_settings(**env))
    yield Pfcon6(app)
    service = app.extensions["pfcon"]
    service.starter.shutdown()  # nothing more is started while the jobs are cleaned up
    if name == "slurm":
        cancel_all(service.backend)
        remove_slurm_containers(docker_client)
    elif name == "swarm":
        remove_test_services(engine)
    else:
        for container in engine.containers.list(all=True, filters={"label": TEST_LABEL}):
            container.remove(force=True)
    build_app.close()


def _run(api: Pfcon6, data: Data, jid: str, args: list[str]) -> str:
    inputs, output = f"home/b/{jid}/in", f"home/b/{jid}/out"
    data.put({f"{inputs}/a.txt": "alpha"})
    api.post("copy", {"jid": jid, "input_dirs": inputs, "output_dir": output})
    assert api.wait("copy", jid)["status"] == "finishedSuccessfully"
    api.post("plugin", plugin_form(jid, output, args=args))
    return output


def _delete(api: Pfcon6, jid: str) -> dict:
    api.post("delete", {"jid": jid})
    done = api.wait("delete", jid, timeout=90)
    assert done["status"] == "finishedSuccessfully", done
    for kind in ("copy", "plugin", "delete"):
        api.delete(kind, jid)
    return done


def test_plugin_jobs_on_each_backend(backend_api: Pfcon6, storebase: Path, jid: str) -> None:
    api, data = backend_api, Data("fslink", storebase)
    ok, failing, cancelled = f"{jid}-ok", f"{jid}-fail", f"{jid}-cancel"

    output = _run(api, data, ok, ["--prefix", "out-"])
    assert api.wait("plugin", ok, timeout=120)["status"] == "finishedSuccessfully"
    listing = api.client.get(f"/api/v1/pluginjobs/{ok}/file/?job_output_path={output}", headers=api.auth)
    assert listing.get_json() == {"job_output_path": output, "rel_file_paths": ["out-a.txt"]}
    _delete(api, ok)

    _run(api, data, failing, ["--fail", "3"])
    failed = api.wait("plugin", failing, timeout=120)
    assert failed["status"] == "finishedWithError" and "failing on request" in failed["logs"], failed
    _delete(api, failing)

    _run(api, data, cancelled, ["--sleep", "120"])
    wait_for(lambda: api.get("plugin", cancelled)["compute"]["status"] == "started", timeout=120)
    api.post("delete", {"jid": cancelled})
    deleted = api.wait("delete", cancelled, timeout=90)
    assert deleted["status"] == "finishedSuccessfully" and "stopped its plugin job" in deleted["message"]
    plugin = api.get("plugin", cancelled)["compute"]
    assert plugin["status"] == "finishedWithError" and plugin["message"].startswith("cancelled")
    engine = api.app.extensions["pfcon"].backend
    with pytest.raises(JobNotFound):  # stopped and removed from the engine
        engine.info(cancelled)
    for kind in ("copy", "plugin", "delete"):
        api.delete(kind, cancelled)
    assert not list(storebase.glob("key-*")) and not any((storebase / ".pfcon/operations").iterdir())
