"""pfcon's image for the deployment tests: built once per session from the local base."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import RUN_ID

IMAGE = f"localhost/pfcon:test-{RUN_ID}"
SOCKET = "/var/run/docker.sock"


def docker(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr.strip()}"
    return result.stdout.strip()


def report(config: pytest.Config, line: str) -> None:
    """A figure shown in the test run's output even when output is captured."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


def socket_gid() -> int:
    return os.stat(SOCKET).st_gid


@pytest.fixture(scope="session")
def pfcon_image(docker_client, pytestconfig: pytest.Config) -> Iterator[str]:
    """Build the image (base and layers cached, so a rerun takes seconds); print the figures."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/build-image.sh"), IMAGE],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    size = int(docker("image", "inspect", "--format", "{{ .Size }}", IMAGE))
    report(
        pytestconfig, f"\nimage {IMAGE}: {size / 2**20:.0f} MiB, built in {time.monotonic() - started:.1f} s"
    )
    yield IMAGE
    # the tag only: its layers stay cached for the next run under another tag
    subprocess.run(["docker", "rmi", IMAGE], capture_output=True, check=False)


@pytest.fixture
def host_storebase(tmp_path: Path) -> Iterator[Path]:
    """A storeBase pfcon (uid 1001 in its container) can write; pytest's tmp dirs are 0700."""
    path = Path(f"/var/tmp/pfcon-image-{RUN_ID}-{tmp_path.name}")
    path.mkdir(mode=0o755)
    os.chown(path, 1001, 1001)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)
