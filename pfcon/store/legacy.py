"""The one-time import of ``key-<jid>/job.json`` records written by pfcon before the store.

Each record becomes a job row with the state it had: accepted (started by the scheduler as
any queued job), submitted (running on the engine) or failed (its reason kept). The file is
then renamed ``job.json.imported``, so the import happens once and an older pfcon could still
be pointed at it by renaming it back.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pfcon.errors import JobExists
from pfcon.store.repository import (
    ACCEPTED,
    FINISHED,
    FINISHED_ERROR,
    NOT_STARTED,
    QUEUED,
    STARTED,
    JobStore,
)

log = logging.getLogger(__name__)

RECORD_NAME = "job.json"
IMPORTED_SUFFIX = ".imported"
#: the old record's state -> (state, status, message if it had none)
STATE_OF = {
    "accepted": (QUEUED, NOT_STARTED, "queued, waiting to be started"),
    "submitted": (STARTED, "started", ""),
    "failed": (FINISHED, FINISHED_ERROR, "failed to start"),
}


def import_records(store: JobStore, storebase_root: Path) -> int:
    """Import every old record under ``storebase_root``; returns how many became rows."""
    imported = 0
    for path in sorted(storebase_root.glob(f"key-*/{RECORD_NAME}")):
        jid = path.parent.name.removeprefix("key-")
        try:
            values, events = _row_of(jid, path)
            if store.import_row(values, events):
                imported += 1
        except JobExists:
            pass  # another replica imported it at the same moment
        path.rename(path.with_name(RECORD_NAME + IMPORTED_SUFFIX))
    if imported:
        log.info("imported %d job records written by an older pfcon", imported)
    return imported


def _row_of(jid: str, path: Path) -> tuple[dict[str, Any], list[tuple[str, str, str, datetime]]]:
    try:
        record = json.loads(path.read_text())
        state, status, default_message = STATE_OF[record["state"]]
    except (OSError, ValueError, KeyError, TypeError):
        record = {"jid": jid}
        state, status, default_message = FINISHED, FINISHED_ERROR, "the job record is unreadable"
    accepted_at = _when(record.get("accepted_at")) or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    now = datetime.now(UTC)
    spec = record.get("spec") if isinstance(record.get("spec"), dict) else None
    resources = (spec or {}).get("resources") or {}
    message = record.get("message") or default_message
    values = {
        "jid": jid,
        "kind": "plugin",
        "api": "classic",
        "state": state,
        "status": status,
        "message": message,
        "image": str(record.get("image") or ""),
        "cmd": str(record.get("cmd") or ""),
        "spec": spec,
        "container_user": (spec or {}).get("user"),
        "cpu_millicores": resources.get("cpu_millicores"),
        "memory_mib": resources.get("memory_mib"),
        "gpus": resources.get("gpus") or 0,
        "number_of_workers": resources.get("number_of_workers") or 1,
        "accepted_at": accepted_at,
        "queued_at": accepted_at if state != FINISHED else None,
        "started_at": accepted_at if state == STARTED else None,
        "finished_at": now if state == FINISHED else None,
        "updated_at": now,
    }
    events = [(ACCEPTED, NOT_STARTED, "accepted (imported from job.json)", accepted_at)]
    if state != ACCEPTED:
        events.append((state, status, message, now if state == FINISHED else accepted_at))
    return values, events


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
