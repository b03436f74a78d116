"""The curl walk-through (README.md) runs verbatim against a live pfcon and does what it says."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import TEST_LABEL
from tests.live import live_pfcon
from tests.walkthrough import block

pytestmark = pytest.mark.integration


def test_curl_walkthrough(docker_client, storebase: Path, tmp_path: Path) -> None:
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    shutil.rmtree("/tmp/pfcon-demo", ignore_errors=True)
    with live_pfcon(storebase, tmp_path / "pfcon.log", {"JOB_LABELS": TEST_LABEL}) as url:
        env = {**os.environ, "PFCON_URL": url.rstrip("/")}
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block("walkthrough")],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"status":"notstarted"' in out and '"nfiles":2' in out
    assert '"status":"finishedSuccessfully"' in out
    assert "copy-hello.txt" in out and "sub/copy-world.txt" in out
    assert out.rstrip().endswith("delete: 204")
    assert not (storebase / "key-demo-1").exists()
