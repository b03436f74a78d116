"""python-pfconclient 4.0.0 (pfcon 6's client, what ChRIS 7 uses), beside 3.3.0 in one suite.

Both releases install the import name ``pfconclient``, so 4.0.0 lives in a folder of its own
(``.pfconclient-4.0.0`` in the checkout, made by ``pip install --no-deps --target`` on first
use; its one dependency, requests, is already in the test environment) and runs in a
subprocess with that folder first on ``PYTHONPATH``: the library through
:mod:`tests.pfconclient4.flow`, the CLI as ``python -m pfconclient``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / ".pfconclient-4.0.0"
VERSION = "4.0.0"


def install() -> Path:
    """The folder holding pfconclient 4.0.0, installed from PyPI when it is not there yet."""
    if not (TARGET / "pfconclient" / "client.py").is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
             "--target", str(TARGET), f"python-pfconclient=={VERSION}"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    return TARGET


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(install()), str(ROOT)])}


def run_flow(**arguments: Any) -> dict[str, Any]:
    """Run :mod:`tests.pfconclient4.flow` with ``arguments``; returns what it reports."""
    command = [sys.executable, "-m", "tests.pfconclient4.flow", json.dumps(arguments)]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def cli(*args: str) -> subprocess.CompletedProcess:
    """``pfconclient ARGS`` (4.0.0's console script, as ``python -m pfconclient``)."""
    command = [sys.executable, "-m", "pfconclient", *args]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120, check=False)
