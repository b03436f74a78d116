"""The in-network walk-through (docs/storage.md) runs verbatim against a live pfcon, for each storage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TEST_LABEL
from tests.live import live_pfcon
from tests.swift_fixtures import swift_conn_fixture, swift_container_fixture  # noqa: F401
from tests.walkthrough import block

pytestmark = pytest.mark.integration

LINKED = ["copy-hello.txt", "home_me_lib/copy-shared.txt", "sub/copy-world.txt"]


@pytest.mark.parametrize(
    ("storage", "listing"),
    [("filesystem", ["copy-hello.txt", "sub/copy-world.txt"]), ("fslink", LINKED), ("swift", LINKED)],
)
def test_innetwork_walkthrough(
    storage: str, listing: list[str], request, docker_client, storebase: Path, tmp_path: Path
) -> None:
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    env = {"JOB_LABELS": TEST_LABEL, "PFCON_INNETWORK": "true", "STORAGE_ENV": storage}
    if storage == "swift":
        request.getfixturevalue("swift_conn")
        env["SWIFT_CONTAINER_NAME"] = request.getfixturevalue("swift_container")
    with live_pfcon(storebase, tmp_path / "pfcon.log", env) as url:
        shell_env = {
            **os.environ,
            **env,
            "PFCON_URL": url.rstrip("/"),
            "STOREBASE": str(storebase),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # the swift client
        }
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block("innetwork-walkthrough")],
            env=shell_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    submitted = json.loads(lines[0])
    assert submitted["data"]["nfiles"] == (2 if storage == "filesystem" else 3)
    assert json.loads(lines[1]) == {"job_output_path": "home/me/feed/out", "rel_file_paths": listing}
    assert lines[-1] == "delete: 204" and not (storebase / "key-demo-in").exists()
