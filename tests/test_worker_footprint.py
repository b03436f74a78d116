"""A gunicorn worker loads only what serving needs: issue 16's idle footprint (≤ 150 MiB for the
whole service) has a few MiB to spare, and each library below costs 0.4 to 8 MiB in every worker
while only the master's start-up (migrations) or a rarely opened page (the API reference) uses
it (docs/performance.md, "Idle footprint")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pfcon.settings import STORE_PREPARED_ENV
from tests.helpers import TEST_LABEL

pytestmark = pytest.mark.integration  # the app checks the engine and starts its feed

LAZY = ["alembic", "mako", "apispec", "swagger_ui", "yaml"]
LOADED = f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({LAZY!r}))))"
# what the master's start-up child does: migrate the store, then say which database it prepared
PREPARE = (
    "import json, sys\n"
    "from pfcon.settings import load_settings\n"
    "from pfcon.store import prepare\n"
    "settings = load_settings()\n"
    "prepare(settings)\n"
    "print(settings.database_url)\n" + LOADED
)
# what a worker does: build the application, told the store is prepared
WORKER = "import json, sys\nimport pfcon.wsgi\n" + LOADED


def _python(code: str, env: dict[str, str], cwd: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def test_a_worker_loads_neither_migrations_nor_the_api_reference(storebase: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "STOREBASE": str(storebase),
        "APPLICATION_MODE": "development",
        "JOB_LABELS": TEST_LABEL,
    }
    env.pop(STORE_PREPARED_ENV, None)
    database_url, prepared_with = _python(PREPARE, env, tmp_path)
    assert "alembic" in json.loads(prepared_with)  # the check sees a library that is loaded

    (worker_loaded,) = _python(WORKER, {**env, STORE_PREPARED_ENV: database_url}, tmp_path)
    assert json.loads(worker_loaded) == []
