"""docker-compose.yml and its in-network overrides: validated by Debian's docker-compose (1.29,
which checks files against the Compose specification's JSON schema), and brought up for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pfconclient.client import Client

from tests.conftest import ROOT, remove_test_containers
from tests.helpers import RUN_ID, TEST_LABEL, client_descriptors, input_tree, wait_for
from tests.image_fixtures import docker, pfcon_image, socket_gid
from tests.live import free_port

__all__ = ["pfcon_image"]  # fixture

BASE = ROOT / "docker-compose.yml"
FSLINK = ROOT / "docker-compose.fslink.yml"
SWIFT = ROOT / "docker-compose.swift.yml"
#: what the compose files read from the environment (the caller's values must not leak in)
COMPOSE_VARIABLES = {
    "PFCON_IMAGE", "PFCON_PORT", "PFCON_VOLUME_NAME", "PFCON_LOG_LEVEL", "DOCKER_GID", "DOCKER_SOCKET",
    "APPLICATION_MODE", "SECRET_KEY", "PFCON_USER", "PFCON_PASSWORD", "CONTAINER_ENV", "CONTAINER_USER",
    "JOB_LABELS", "STORAGE_ENV", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PROFILES",
}  # fmt: skip


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    subprocess.run(["bash", str(ROOT / "scripts/system-setup.sh"), "base-image"], capture_output=True)
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("docker-compose is not installed (scripts/setup.d/60-base-image.sh installs it)")


def compose(*args: str, env: dict[str, str] | None = None, files=(BASE,), timeout: float = 120):
    command = _compose_command()
    for file in files:
        command += ["-f", str(file)]
    environment = {
        k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES and not k.startswith("SWIFT_")
    }
    environment.update(env or {})
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=environment, timeout=timeout, check=False
    )


def rendered(files=(BASE,), profile: str | None = None, **env: str) -> dict:
    """The resolved configuration as JSON (``config`` validates, then prints it)."""
    import yaml  # docker-compose prints YAML; PyYAML comes with the test extras

    args = ["--profile", profile] if profile else []
    result = compose(*args, "config", env={"DOCKER_GID": "4242", **env}, files=files)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.integration
def test_base_file_is_valid_and_wires_socket_group_storebase_label_and_port() -> None:
    config = rendered()
    pfcon = config["services"]["pfcon"]
    assert pfcon["group_add"] == ["4242"]
    assert pfcon["labels"] == {"org.chrisproject.role": "pfcon"}
    assert {"published": 30005, "target": 5005} in [
        {k: int(v) for k, v in port.items() if k in ("published", "target")} for port in pfcon["ports"]
    ]
    assert "/var/run/docker.sock:/var/run/docker.sock:rw" in pfcon["volumes"]
    assert "storebase:/var/local/storeBase:rw" in pfcon["volumes"]
    env = pfcon["environment"]
    assert (env["PFCON_INNETWORK"], env["STORAGE_ENV"], env["CONTAINER_ENV"]) == (
        "false",
        "zipfile",
        "docker",
    )
    assert env["COMPUTE_VOLUME_TYPE"] == "docker_local_volume"
    assert env["VOLUME_NAME"] == config["volumes"]["storebase"]["name"] == "pfcon-storebase"
    assert env["STOREBASE_MOUNT"] == "/var/local/storeBase"


@pytest.mark.integration
def test_settings_pass_through_from_the_environment() -> None:
    env = rendered(
        CONTAINER_ENV="podman", PFCON_PORT="31000", PFCON_VOLUME_NAME="vol-x", DOCKER_SOCKET="/run/p.sock"
    )
    pfcon = env["services"]["pfcon"]
    assert pfcon["environment"]["CONTAINER_ENV"] == "podman"
    assert pfcon["environment"]["VOLUME_NAME"] == env["volumes"]["storebase"]["name"] == "vol-x"
    assert "/run/p.sock:/var/run/docker.sock:rw" in pfcon["volumes"]
    assert int(pfcon["ports"][0]["published"]) == 31000


@pytest.mark.integration
def test_socket_group_must_be_given() -> None:
    result = compose("config", env={})
    assert result.returncode != 0
    assert "DOCKER_GID" in result.stderr and "stat -c %g" in result.stderr


@pytest.mark.integration
def test_fslink_override_switches_to_in_network_fslink() -> None:
    env = rendered(files=(BASE, FSLINK))["services"]["pfcon"]["environment"]
    assert (env["PFCON_INNETWORK"], env["STORAGE_ENV"]) == ("true", "fslink")
    env = rendered(files=(BASE, FSLINK), STORAGE_ENV="filesystem")["services"]["pfcon"]["environment"]
    assert env["STORAGE_ENV"] == "filesystem"


@pytest.mark.integration
def test_swift_override_and_its_optional_server() -> None:
    config = rendered(files=(BASE, SWIFT))
    env = config["services"]["pfcon"]["environment"]
    assert (env["PFCON_INNETWORK"], env["STORAGE_ENV"]) == ("true", "swift")
    assert env["SWIFT_AUTH_URL"] == "http://swift:8080/auth/v1.0"
    # the Swift server starts only with its profile (v1's `config` lists every service)
    assert config["services"]["swift"]["profiles"] == ["swift-server"]
    assert "profiles" not in config["services"]["pfcon"]
    with_server = rendered(files=(BASE, SWIFT), profile="swift-server", SWIFT_IMAGE="site/swift:1")
    assert with_server["services"]["swift"]["image"] == "site/swift:1"


@pytest.mark.integration
def test_validation_is_real(tmp_path: Path) -> None:
    """A misspelt option is refused, so the checks above mean the files follow the schema."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(BASE.read_text().replace("    restart:", "    restrat:"))
    result = compose("config", "-q", env={"DOCKER_GID": "1"}, files=(broken,))
    assert result.returncode != 0 and "restrat" in result.stderr


@pytest.fixture
def project(docker_client) -> Iterator[dict[str, str]]:
    name = f"pfcontest{RUN_ID}"
    env = {
        "DOCKER_GID": str(socket_gid()),
        "APPLICATION_MODE": "development",
        "PFCON_PORT": f"127.0.0.1:{free_port()}",
        "PFCON_VOLUME_NAME": f"pfcon-test-{RUN_ID}",
        "JOB_LABELS": TEST_LABEL,
        "COMPOSE_PROJECT_NAME": name,
    }
    yield env
    compose("down", "-v", "--remove-orphans", env=env)
    remove_test_containers(docker_client)
    subprocess.run(["docker", "volume", "rm", "-f", env["PFCON_VOLUME_NAME"]], capture_output=True)


@pytest.mark.integration
def test_compose_up_serves_a_job_on_its_storebase_volume(
    pfcon_image: str, project: dict[str, str], tmp_path: Path, jid: str
) -> None:
    project["PFCON_IMAGE"] = pfcon_image
    up = compose("up", "-d", "--no-build", env=project)
    assert up.returncode == 0, up.stderr
    container = docker(
        "ps", "-q", "--filter", f"label=com.docker.compose.project={project['COMPOSE_PROJECT_NAME']}"
    )
    url = f"http://{project['PFCON_PORT']}/api/v1/"

    def healthy() -> bool:
        try:
            return requests.get(url + "health/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(healthy, timeout=60, interval=0.5)
    except AssertionError:
        raise AssertionError(docker("logs", container)[-3000:]) from None
    inspect = json.loads(docker("inspect", container))[0]
    assert inspect["Config"]["Labels"]["org.chrisproject.role"] == "pfcon"

    client = Client(url, Client.get_auth_token(url + "auth-token/", "pfcon", "pfcon1234"))
    assert client.get_server_info()["compute_volume_type"] == "docker_local_volume"
    outdir = tmp_path / "out"
    outdir.mkdir()
    status = client.run_job(jid, client_descriptors("cmp-"), str(input_tree(tmp_path / "in")), str(outdir))
    assert status == "finishedSuccessfully"
    assert (outdir / "nested/cmp-two.txt").read_text() == "two"
    volume = json.loads(docker("volume", "inspect", project["PFCON_VOLUME_NAME"]))[0]
    assert not (Path(volume["Mountpoint"]) / f"key-{jid}").exists()
