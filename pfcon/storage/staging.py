"""Upload staging folders (``.pfcon-uploads/<id>``): who holds them, and sweeping the dead.

An upload in progress holds an exclusive ``flock`` on its staging folder for as long as it
lives; the kernel drops the lock when the holder dies, even by SIGKILL or an OOM kill. A
staging folder nobody holds and that has not changed for a while (so is not being created
right now) is left over by a worker that died mid-upload: the sweeper removes it, once at
start-up and then periodically, from every worker (the lock makes that safe).
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import threading
import time
from pathlib import Path

from pfcon.background import join
from pfcon.safetree import remove_tree

log = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 600.0
SETTLE_SECONDS = 60.0  # a folder younger than this may be between its mkdir and its lock


def hold_staging(folder: Path) -> int:
    """Lock ``folder`` as in use; returns the fd to close when done (closing releases it)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _abandoned(path: Path, now: float) -> bool:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return now - info.st_mtime > SETTLE_SECONDS
    if now - info.st_mtime <= SETTLE_SECONDS:
        return False
    try:
        fd = hold_staging(path)
    except (BlockingIOError, FileNotFoundError):
        return False  # a live upload holds it, or it just went
    os.close(fd)  # (a new upload never reuses a name: ids are random)
    return True


def sweep(uploads_dir: Path) -> int:
    """Remove staging folders no live upload holds; returns how many."""
    now = time.time()
    removed = 0
    try:
        children = list(uploads_dir.iterdir())
    except FileNotFoundError:
        return 0
    for path in children:
        if not _abandoned(path, now):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                remove_tree(path)
            else:
                path.unlink()
            removed += 1
        except OSError as error:
            log.warning("cannot remove left-over upload %s: %s", path, error)
    if removed:
        log.info("removed %d upload staging folder(s) left by a worker that died mid-upload", removed)
    return removed


class Sweeper:
    """Sweeps ``uploads_dir`` now and then every ``interval`` seconds, in a daemon thread."""

    def __init__(self, uploads_dir: Path, interval: float = SWEEP_EVERY_SECONDS) -> None:
        self.uploads_dir = uploads_dir
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pfcon-upload-sweeper", daemon=True)

    def start(self) -> Sweeper:
        sweep(self.uploads_dir)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sweep(self.uploads_dir)
            except Exception:  # never let the sweeper die
                log.exception("sweeping %s failed", self.uploads_dir)

    def stop(self) -> None:
        self._stop.set()
        join(self._thread)
