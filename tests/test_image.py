"""pfcon's own image, built from the Dockerfile on the local debian:bookworm-slim and run for real.

The image serves a job end to end through python-pfconclient 3.3.0 with the Docker socket and a
storeBase bind mount (zipfile mode, the same path inside and out), runs as uid 1001, and its
HEALTHCHECK reads healthy, or unhealthy when the engine is out of reach. Everything started
here carries the session's test label and is removed afterwards.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pfconclient.client import Client

from tests.conftest import remove_test_containers
from tests.helpers import RUN_ID, TEST_LABEL, client_descriptors, input_tree, wait_for
from tests.image_fixtures import (
    SOCKET,
    host_storebase,
    pfcon_image,
    report,
    socket_gid,
)
from tests.image_fixtures import docker as _docker

__all__ = ["host_storebase", "pfcon_image"]  # fixtures

pytestmark = pytest.mark.integration


def _run_pfcon(image: str, name: str, storebase: Path, *extra: str, start_period: str = "20s") -> str:
    """docker run the image as a deployment would: socket and its group, storeBase bind mount."""
    _docker(
        "run", "-d", "--name", name, "--label", TEST_LABEL,
        *extra,
        "-v", f"{storebase}:{storebase}",
        "-e", f"STOREBASE={storebase}", "-e", f"STOREBASE_MOUNT={storebase}",
        "-e", "APPLICATION_MODE=development", "-e", f"JOB_LABELS={TEST_LABEL}",
        "--health-interval", "1s", "--health-start-period", start_period,
        "-p", "127.0.0.1::5005",
        image,
    )  # fmt: skip
    return name


def _with_socket() -> tuple[str, ...]:
    return ("-v", f"{SOCKET}:{SOCKET}", "--group-add", str(socket_gid()))


def _url(name: str) -> str:
    port = _docker("port", name, "5005/tcp").splitlines()[0].rpartition(":")[2]
    return f"http://127.0.0.1:{port}/api/v1/"


def _health(name: str) -> str:
    state = json.loads(_docker("inspect", "--format", "{{ json .State }}", name))
    if not state.get("Running"):
        raise AssertionError(f"{name} stopped: {_docker('logs', name)[-2000:]}")
    return state["Health"]["Status"]


@pytest.fixture
def containers(docker_client) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    remove_test_containers(docker_client)


def _wait_answering(url: str, name: str) -> None:
    def answers() -> bool:
        _health(name)  # fails early, with the log, if the service died
        try:
            return requests.get(url + "health/", timeout=2).status_code in (200, 503)
        except requests.RequestException:
            return False

    wait_for(answers, timeout=60)


def test_image_runs_a_job_end_to_end_as_uid_1001_and_becomes_healthy(
    pfcon_image: str, host_storebase: Path, containers: list[str], tmp_path: Path, jid: str, pytestconfig
) -> None:
    started = time.monotonic()
    name = _run_pfcon(pfcon_image, f"pfcon-image-{RUN_ID}-{jid}", host_storebase, *_with_socket())
    containers.append(name)
    url = _url(name)
    _wait_answering(url, name)

    token = Client.get_auth_token(url + "auth-token/", "pfcon", "pfcon1234")
    client = Client(url, token)
    info = client.get_server_info()
    assert (info["storage_env"], info["container_env"], info["pfcon_innetwork"]) == (
        "zipfile",
        "docker",
        False,
    )

    inputdir = input_tree(tmp_path / "in")
    outdir = tmp_path / "out"
    outdir.mkdir()
    descriptors = client_descriptors("img-")
    # run_job: submit, poll, download and unpack the output, then DELETE the job
    assert client.run_job(jid, descriptors, str(inputdir), str(outdir)) == "finishedSuccessfully"
    assert (outdir / "img-one.txt").read_text() == "one"
    assert (outdir / "nested/img-two.txt").read_text() == "two"
    # the job (run as the image's CONTAINER_USER) wrote nothing pfcon could not delete
    assert not (host_storebase / f"key-{jid}").exists()

    assert _docker("exec", name, "id", "-u") == "1001"
    assert _docker("inspect", "--format", "{{ .Config.User }}", name) == "1001:1001"
    # the API description and its reference page's files (the image keeps only those three)
    assert requests.get(url + "openapi.json", timeout=10).json()["openapi"] == "3.1.0"
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        assert requests.get(url + f"docs/assets/{asset}", timeout=10).status_code == 200, asset
    wait_for(lambda: _health(name) == "healthy", timeout=60, interval=0.5)
    report(
        pytestconfig, f"\nimage end to end: job, uid and health checked in {time.monotonic() - started:.1f} s"
    )


def test_image_health_check_fails_when_the_engine_is_out_of_reach(
    pfcon_image: str, host_storebase: Path, containers: list[str]
) -> None:
    name = _run_pfcon(
        pfcon_image, f"pfcon-image-{RUN_ID}-noengine", host_storebase,
        "-e", "DOCKER_HOST=unix:///nonexistent/docker.sock", "--health-retries", "2",
        start_period="1s",
    )  # fmt: skip
    containers.append(name)
    url = _url(name)
    _wait_answering(url, name)
    answer = requests.get(url + "health/", timeout=5)
    assert answer.status_code == 503, answer.text
    wait_for(lambda: _health(name) == "unhealthy", timeout=60, interval=0.5)


def test_image_declares_its_user_port_health_check_and_labels(pfcon_image: str) -> None:
    config = json.loads(_docker("image", "inspect", "--format", "{{ json .Config }}", pfcon_image))
    assert config["User"] == "1001:1001"
    assert "5005/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == ["pfcon", "serve"]
    assert "/api/v1/health/" in " ".join(config["Healthcheck"]["Test"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "pfcon"
    assert labels["org.opencontainers.image.version"]
    # no build tools or pip in the final stage
    tools = _docker(
        "run", "--rm", "--entrypoint", "sh", pfcon_image, "-c", "command -v pip pip3 gcc cc make || true"
    )
    assert tools == ""
