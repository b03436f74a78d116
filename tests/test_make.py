"""make.sh / unmake.sh: flags checked up front, passed through to a real dev instance (gunicorn from
the venv or pfcon's image), and the instance brought down again."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT
from tests.helpers import job_form, make_zip, wait_for
from tests.image_fixtures import docker, pfcon_image
from tests.live import free_port

__all__ = ["pfcon_image"]  # fixture


def _script(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    environment = {k: v for k, v in os.environ.items() if k != "PFCON_RUN_DIR"}
    environment.update(env or {})
    return subprocess.run(
        ["bash", str(ROOT / name), *args],
        capture_output=True,
        text=True,
        env=environment,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-x"], "unknown option -x"),
        (["-O"], "-O needs a value"),
        (["-O", "nomad"], "-O must be docker, podman, swarm, slurm or kubernetes"),
        (["-F", "fslink"], "-F fslink is an in-network storage: add -N"),
        (["-N", "-F", "zipfile"], "-N (in-network) takes -F filesystem, fslink, swift or s3"),
        (["-p", "http"], "-p must be a port number"),
        (["extra"], "unexpected argument: extra"),
    ],
)
def test_bad_flags_are_usage_errors_that_start_nothing(args: list[str], message: str, tmp_path: Path) -> None:
    result = _script("make.sh", *args, env={"PFCON_RUN_DIR": str(tmp_path / "run")})
    assert result.returncode == 2
    assert message in result.stderr and "usage: ./make.sh" in result.stderr
    assert not (tmp_path / "run").exists()


def test_help_explains_every_flag() -> None:
    result = _script("make.sh", "-h")
    assert result.returncode == 0
    for flag in (
        "-O docker|podman|swarm|slurm|kubernetes",
        "-N",
        "-F zipfile|filesystem|fslink|swift|s3",
        "-S",
        "-i",
        "-s",
    ):
        assert flag in result.stdout
    assert _script("unmake.sh", "-h").returncode == 0
    assert _script("unmake.sh", "-x").returncode == 2


class Instance:
    """One make.sh instance in its own run folder, storeBase and port; unmake.sh at the end."""

    def __init__(self, root: Path) -> None:
        self.run = root / "run"
        self.storebase = root / "storeBase"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1/"
        self.env = {"PFCON_RUN_DIR": str(self.run)}

    def make(self, *flags: str, env: dict[str, str] | None = None):
        args = ("-s", "-i", "-S", str(self.storebase), "-p", str(self.port), *flags)
        return _script("make.sh", *args, env={**self.env, **(env or {})})

    def unmake(self, *flags: str):
        return _script("unmake.sh", *flags, env=self.env)

    def info(self) -> dict:
        token = requests.post(
            self.url + "auth-token/", json={"pfcon_user": "pfcon", "pfcon_password": "pfcon1234"}, timeout=5
        ).json()["token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        return requests.get(self.url + "jobs/", headers=self.headers, timeout=5).json()

    def copy_job(self, jid: str, content: str) -> None:
        """Submit a pl-copy job (after :meth:`info` logged in) and wait for its output file."""
        answer = requests.post(
            self.url + "jobs/",
            data=job_form(jid),
            files={"data_file": ("in.zip", make_zip({"a.txt": content}))},
            headers=self.headers,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        output = self.storebase / f"key-{jid}/outgoing/out-a.txt"
        wait_for(lambda: output.exists() and output.read_text() == content, timeout=30)


@pytest.fixture
def instance(docker_client, tmp_path: Path) -> Iterator[Instance]:
    made = Instance(tmp_path)
    yield made
    made.unmake()


@pytest.mark.integration
def test_local_instance_reports_its_flags_runs_a_job_and_goes_down(instance: Instance, jid: str) -> None:
    result = instance.make("-O", "docker", "-F", "zipfile")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "storage:     zipfile (in-network: false)" in result.stdout
    info = instance.info()
    assert (info["container_env"], info["storage_env"], info["pfcon_innetwork"]) == (
        "docker",
        "zipfile",
        False,
    )
    instance.copy_job(jid, "a")
    # a second make.sh sees it running and starts nothing
    again = instance.make()
    assert again.returncode == 0 and "already running" in again.stdout

    down = instance.unmake("-N", "-F", "fslink")  # make.sh's flags are accepted by unmake.sh
    assert down.returncode == 0 and "stopped" in down.stdout, down.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(instance.url + "health/", timeout=2)
    assert not docker("ps", "-aq", "--filter", f"label=org.chrisproject.pfcon.dev={instance.run}")
    assert (instance.storebase / f"key-{jid}").exists()  # data kept without -D
    assert "removed" in instance.unmake("-D").stdout and not instance.storebase.exists()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["-O", "swarm"], {"container_env": "swarm", "storage_env": "zipfile"}),
        (["-O", "slurm"], {"container_env": "slurm"}),
        (["-N", "-F", "fslink"], {"storage_env": "fslink", "pfcon_innetwork": True}),
        (["-N", "-F", "filesystem"], {"storage_env": "filesystem", "pfcon_innetwork": True}),
        (["-N"], {"storage_env": "swift", "pfcon_innetwork": True}),  # the Swift dev server
        (["-N", "-F", "s3"], {"storage_env": "s3", "s3_endpoint_url": "http://127.0.0.1:8080"}),  # its S3 API
    ],
)
def test_flags_pass_through_to_the_service(instance: Instance, flags: list[str], expected: dict) -> None:
    result = instance.make(*flags)
    assert result.returncode == 0, result.stderr + result.stdout
    info = instance.info()
    assert {key: info[key] for key in expected} == expected


@pytest.mark.integration
def test_container_instance_runs_the_image(instance: Instance, pfcon_image: str) -> None:
    result = instance.make("-C", env={"PFCON_DEV_IMAGE": pfcon_image})
    assert result.returncode == 0, result.stderr + result.stdout
    name = (instance.run / "pfcon.container").read_text().strip()
    assert docker("inspect", "--format", "{{ .Config.Image }}", name) == pfcon_image
    assert docker("exec", name, "id", "-u") == "1001"
    info = instance.info()
    assert (info["container_env"], info["storage_env"]) == ("docker", "zipfile")
    down = instance.unmake()
    assert down.returncode == 0 and f"pfcon container {name} removed" in down.stdout
    assert not docker("ps", "-aq", "--filter", f"name=^{name}$")


def _path_without_docker(root: Path) -> str:
    """A PATH with every command of this machine but Docker's (Podman stays)."""
    bin_dir = root / "bin-without-docker"
    bin_dir.mkdir()
    for folder in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for command in Path(folder).iterdir() if Path(folder).is_dir() else ():
            link = bin_dir / command.name
            if not command.name.startswith("docker") and not link.exists():
                link.symlink_to(command)
    return str(bin_dir)


@pytest.mark.integration
def test_one_command_start_picks_podman_when_docker_is_absent(
    instance: Instance, podman_client, tmp_path: Path, jid: str
) -> None:
    result = instance.make(env={"PATH": _path_without_docker(tmp_path)})
    assert result.returncode == 0, result.stderr + result.stdout
    assert "engine:      podman" in result.stdout
    assert instance.info()["container_env"] == "podman"
    instance.copy_job(jid, "on podman")
    assert podman_client.containers.get(jid).labels["org.chrisproject.pfcon.dev"] == str(instance.run)
    down = instance.unmake()
    assert "removed 1 podman job container(s)" in down.stdout, down.stdout + down.stderr
