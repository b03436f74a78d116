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

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client picks its value store when first imported: this module must not import it
# at module level, or workers forked from the master would keep in-memory counters.
_created: Path | None = None


def prepare() -> Path:
    """Empty the operator's PROMETHEUS_MULTIPROC_DIR, or make a private one, and export it."""
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
    return folder


def worker_exited(pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def cleanup() -> None:
    """Remove the folder if pfcon made it (an operator's own folder is left in place)."""
    if _created is not None:
        shutil.rmtree(_created, ignore_errors=True)
