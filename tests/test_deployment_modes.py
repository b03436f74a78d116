"""Volume modes, engine outages and start-up errors, on the real engine and real gunicorn."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import docker
import pytest
import requests

from pfcon.settings import load_settings
from tests.api_helpers import login, submit, wait_terminal
from tests.conftest import Engine
from tests.helpers import TEST_IMAGE, TEST_LABEL, TEST_LABELS, job_form, make_zip
from tests.live import live_pfcon

pytestmark = pytest.mark.integration


@pytest.fixture
def volume(engine: Engine):
    """A named volume on each Docker-API engine in turn (``CONTAINER_ENV`` names the engine)."""
    vol = engine.client.volumes.create(f"pfcon-test-{uuid.uuid4().hex[:8]}", labels=TEST_LABELS)
    yield vol
    for container in engine.client.containers.list(all=True, filters={"volume": vol.name}):
        container.remove(force=True)
    vol.remove(force=True)


def _run_one_job(app, jid: str) -> bytes:
    client = app.test_client()
    auth = login(client)
    assert submit(client, auth, job_form(jid), {"in.txt": "through a volume"}).status_code == 201
    assert wait_terminal(client, auth, jid)["compute"]["status"] == "finishedSuccessfully"
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/v1/jobs/{jid}/file/", headers=auth).data)) as archive:
        data = archive.read("out-in.txt")
    assert client.delete(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 204
    return data


def _volume_env(volume, engine: Engine, **extra: str) -> dict[str, str]:
    return {
        "APPLICATION_MODE": "development",
        "CONTAINER_ENV": engine.name,
        "COMPUTE_VOLUME_TYPE": "docker_local_volume",
        "STOREBASE_MOUNT": volume.attrs["Mountpoint"],  # pfcon runs on the host here
        "JOB_LABELS": TEST_LABEL,
        **extra,
    }


def test_docker_local_volume_by_name(volume, engine: Engine, build_app, jid: str) -> None:
    app = build_app(load_settings(_volume_env(volume, engine, VOLUME_NAME=volume.name)))
    assert _run_one_job(app, jid) == b"through a volume"


def test_docker_local_volume_discovered_from_the_labelled_container(
    volume, engine: Engine, build_app, jid: str
) -> None:
    """pfcon finds the volume mounted at STOREBASE_MOUNT in the container labelled PFCON_SELECTOR."""
    selector = f"org.chrisproject.role=pfcon-test-{uuid.uuid4().hex[:6]}"
    key, value = selector.split("=")
    mountpoint = volume.attrs["Mountpoint"]
    engine.client.containers.run(
        TEST_IMAGE, ["sleep", "60"], detach=True, labels={key: value, **TEST_LABELS},
        mounts=[docker.types.Mount(target=mountpoint, source=volume.name, type="volume")],
    )  # fmt: skip
    app = build_app(load_settings(_volume_env(volume, engine, PFCON_SELECTOR=selector)))
    assert app.extensions["pfcon"].volumes.root == mountpoint
    assert _run_one_job(app, jid) == b"through a volume"


def test_missing_volume_stops_the_service_naming_the_variable(storebase, tmp_path: Path) -> None:
    env = {
        "APPLICATION_MODE": "development",
        "COMPUTE_VOLUME_TYPE": "docker_local_volume",
        "VOLUME_NAME": "pfcon-no-such-volume",
        "STOREBASE_MOUNT": str(storebase),
        "PFCON_BIND": "127.0.0.1:0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pfcon"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert (
        "pfcon: configuration error: VOLUME_NAME: docker volume 'pfcon-no-such-volume' does not exist"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CONTAINER_ENV": "lxc"}, "CONTAINER_ENV"),
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SHM_SIZE": "big"}, "SHM_SIZE"),
    ],
)
def test_bad_configuration_stops_serve_and_check_with_one_line(env: dict, variable: str, storebase) -> None:
    base = {"PATH": "/usr/bin:/bin", "PFCON_USER": "u", "PFCON_PASSWORD": "p", "SECRET_KEY": "k" * 40}
    base.update({"STOREBASE": str(storebase), **env})
    for command in (["-m", "pfcon"], ["-c", "from pfcon.cli import main; main(['check'])"]):
        result = subprocess.run(
            [sys.executable, *command], env=base, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2
        assert result.stderr.startswith(f"pfcon: configuration error: {variable}: ")
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "variable"),
    [({"PFCON_WORKERS": "abc"}, "PFCON_WORKERS"), ({"PFCON_BIND": "nowhere"}, "PFCON_BIND")],
)
def test_bad_serving_configuration_stops_gunicorn_with_one_line(env: dict, variable: str, storebase) -> None:
    base = {"PATH": "/usr/bin:/bin", "APPLICATION_MODE": "development", "STOREBASE": str(storebase), **env}
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:pfcon.gunicorn_config",
        "pfcon.wsgi:application",
    ]
    result = subprocess.run(command, env=base, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"pfcon: configuration error: {variable}: ")


def test_check_command_pings_the_engine(storebase) -> None:
    env = {"PATH": "/usr/bin:/bin", "APPLICATION_MODE": "development", "STOREBASE": str(storebase)}
    result = subprocess.run(
        [sys.executable, "-c", "from pfcon.cli import main; main(['check'])"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"engine": "docker ' in result.stdout and '"pfcon_password": "***"' in result.stdout


def test_engine_outage_is_503_and_leaves_nothing(storebase, jid: str, monkeypatch, build_app) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    app = build_app(load_settings({"APPLICATION_MODE": "development", "STOREBASE": str(storebase)}))
    client = app.test_client()
    health = client.get("/api/v1/health/")
    assert health.status_code == 503 and "does not answer" in health.get_json()["message"]
    auth = login(client)
    answer = submit(client, auth, job_form(jid), {"a": "1"})
    assert answer.status_code == 503 and "docker" in answer.get_json()["message"]
    assert sorted(p.name for p in storebase.iterdir()) == [".pfcon", ".pfcon-uploads"]
    assert not any((storebase / ".pfcon-uploads").iterdir())
    # the store knows there is no such job; a DELETE must still ask the engine
    assert client.get(f"/api/v1/jobs/{jid}/", headers=auth).status_code == 404
    answer = client.delete(f"/api/v1/jobs/{jid}/", headers=auth)
    assert answer.status_code == 503 and answer.is_json


def test_plain_gunicorn_entry_point_serves_with_guarded_threaded_workers(
    docker_client, storebase, tmp_path
) -> None:
    """``gunicorn pfcon.wsgi:application`` (pfcon's entry point) picks up gunicorn.conf.py."""
    log = tmp_path / "gunicorn.log"
    with live_pfcon(storebase, log, command=("-m", "gunicorn", "pfcon.wsgi:application")) as url:
        assert requests.get(url + "health/", timeout=5).json()["health"] == "OK"
    text = log.read_text()
    assert "Using worker: pfcon.serving.GuardedThreadWorker" in text and text.count("Booting worker") == 2


@pytest.fixture
def tiny_storebase(tmp_path: Path):
    """A 2 MiB tmpfs storeBase (needs root to mount, as CI has)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], check=False
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def tiny_app(tiny_storebase: Path, build_app):
    """Apps on the tiny storeBase, closed (their job store is open there) before it is unmounted."""
    base = {"APPLICATION_MODE": "development", "STOREBASE": str(tiny_storebase)}
    return lambda **env: build_app(load_settings({**base, **env}))


def test_storebase_full_while_receiving_is_507_and_keeps_nothing(
    docker_client, tiny_storebase, tiny_app, jid
) -> None:
    client = tiny_app().test_client()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("big.bin", os.urandom(5 * 1024 * 1024))
    form = {**job_form(jid), "data_file": (io.BytesIO(buffer.getvalue()), "in.zip")}
    answer = client.post(
        "/api/v1/jobs/", data=form, headers=login(client), content_type="multipart/form-data"
    )
    assert answer.status_code == 507 and "no space left" in answer.get_json()["message"]
    assert sorted(p.name for p in tiny_storebase.iterdir()) == [".pfcon", ".pfcon-uploads"]
    assert not any((tiny_storebase / ".pfcon-uploads").iterdir())


@pytest.mark.parametrize(
    ("env", "files"),
    [
        # a small upload whose one file does not fit: written by the request's thread
        ({"MAX_ZIP_RATIO": "5000"}, lambda: {"zeros.bin": bytes(5 * 1024 * 1024)}),
        # many small files (~6 MiB on tmpfs): created by the extractor's threads
        ({}, lambda: {f"d{i % 20}/f{i}.bin": b"pfcon" * 600 for i in range(1500)}),
    ],
    ids=["one-large-file", "small-files-on-threads"],
)
def test_storebase_full_while_extracting_is_507_and_keeps_nothing(
    docker_client, tiny_storebase, tiny_app, jid, env, files
) -> None:
    """The disk fills while extracting, not receiving: the upload itself fits."""
    client = tiny_app(**env).test_client()
    upload = make_zip(files())
    assert len(upload) < 512 * 1024  # the upload itself would fit
    form = {**job_form(jid), "data_file": (io.BytesIO(upload), "in.zip")}
    answer = client.post(
        "/api/v1/jobs/", data=form, headers=login(client), content_type="multipart/form-data"
    )
    assert answer.status_code == 507 and "no space left" in answer.get_json()["message"]
    assert sorted(p.name for p in tiny_storebase.iterdir()) == [".pfcon", ".pfcon-uploads"]
    assert not any((tiny_storebase / ".pfcon-uploads").iterdir())
