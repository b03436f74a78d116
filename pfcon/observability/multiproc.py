"""PROMETHEUS_MULTIPROC_DIR for gunicorn: made fresh in the master, dead workers marked.

prometheus_client's multiprocess mode keeps each worker's values in files under one folder;
the folder must be empty when the service starts (or old totals are summed in) and a worker
that exits must be marked dead so its live gauges are dropped. Called from
:mod:`pfcon.gunicorn_config` only, before any worker (or prometheus_client) is loaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client picks its value store when first imported: this module must not import it
# at module level (before the folder is exported), or workers would keep in-memory counters.
_created: Path | None = None
_multiprocess: Any = None  # prometheus_client.multiprocess, once prepare() made the folder


def prepare() -> Path:
    """Empty the operator's PROMETHEUS_MULTIPROC_DIR, or make a private one, and export it.

    prometheus_client is imported here, once the folder is exported, so that the workers
    gunicorn forks inherit it already in multiprocess mode (and the master marks dead workers
    without importing anything at shutdown).
    """
    global _created
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        folder = _created = Path(tempfile.mkdtemp(prefix="pfcon-metrics-"))
        os.environ[MULTIPROC_ENV] = str(folder)
    from prometheus_client import multiprocess

    global _multiprocess
    _multiprocess = multiprocess
    return folder


def worker_exited(pid: int) -> None:
    if _multiprocess is not None:
        _multiprocess.mark_process_dead(pid)


def cleanup() -> None:
    """Remove the folder if pfcon made it (an operator's own folder is left in place)."""
    if _created is not None:
        shutil.rmtree(_created, ignore_errors=True)
