"""The on-disk layout of storeBase and safe resolution of every client-supplied path.

Layout (as FNNDSC pfcon): ``key-<jid>/incoming`` and ``key-<jid>/outgoing``; we add the job
record ``key-<jid>/job.json`` beside them (never mounted into the job).
Every job id, zip entry name, link target and object key goes through this module, which
refuses absolute paths, ``..`` and anything that resolves outside its allowed root.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from pfcon.errors import DataNotDeletable, InvalidInput, JobExists
from pfcon.safetree import DIR, Entry, open_dir, remove_tree, walk
from pfcon.settings import SettingsError

JID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
INCOMING = "incoming"
OUTGOING = "outgoing"
UPLOADS_DIR = ".pfcon-uploads"


def validate_jid(jid: str) -> str:
    """Return ``jid`` if it is a safe job id, else raise :class:`InvalidInput`."""
    if not isinstance(jid, str) or not JID_PATTERN.fullmatch(jid):
        raise InvalidInput(
            "jid: must be 1-128 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return jid


def safe_relative(path: str, what: str) -> PurePosixPath:
    """Check a client-given relative path lexically: no absolute, no ``..``, no NUL.

    Returns the normalised relative path (``a//b/./c`` -> ``a/b/c``).
    """
    return PurePosixPath(safe_relative_text(path, what))


def safe_relative_text(path: str, what: str) -> str:
    """:func:`safe_relative` as a string, without building a path object (one per zip entry)."""
    if not path or "\x00" in path or "\\" in path:
        raise InvalidInput(f"{what}: {path!r} is not a valid relative path")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if path.startswith("/") or ".." in parts:
        raise InvalidInput(f"{what}: {path!r} must be a relative path that stays inside its root")
    if not parts:
        raise InvalidInput(f"{what}: {path!r} names no file or folder")
    return "/".join(parts)


def write_atomically(path: Path, text: str) -> None:
    """Write a small state file so a reader in any process sees the old or the new one, whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # as a plain write would leave it (mkstemp makes 0600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def resolve_inside(root: Path, relative: str, what: str) -> Path:
    """Join ``relative`` to ``root`` and make sure the result, with links resolved, stays in it."""
    candidate = root / safe_relative(relative, what)
    resolved = candidate.resolve()
    real_root = root.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        raise InvalidInput(f"{what}: {relative!r} leads outside its allowed root")
    return resolved


class StoreBase:
    """pfcon's view of storeBase (STOREBASE_MOUNT) and the per-job folders in it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        """Check storeBase exists and is writable, and create its uploads folder (at start-up).

        storeBase itself is never created: a mistyped path must stop the service, not
        quietly become a new, empty storeBase.
        """
        if not self.root.is_dir():
            raise SettingsError(
                "STOREBASE_MOUNT",
                f"storeBase folder {self.root} does not exist (pfcon's view of storeBase: "
                "STOREBASE_MOUNT, or STOREBASE when pfcon runs on the host)",
            )
        try:
            self.uploads_dir.mkdir(exist_ok=True)
        except OSError as error:
            raise SettingsError(
                "STOREBASE_MOUNT", f"storeBase {self.root} is not writable: {error}"
            ) from None

    @property
    def uploads_dir(self) -> Path:
        return self.root / UPLOADS_DIR

    @staticmethod
    def job_key(jid: str) -> str:
        return f"key-{validate_jid(jid)}"

    def job_dir(self, jid: str) -> Path:
        return self.root / self.job_key(jid)

    def incoming(self, jid: str) -> Path:
        return self.job_dir(jid) / INCOMING

    def outgoing(self, jid: str) -> Path:
        return self.job_dir(jid) / OUTGOING

    def relative(self, path: Path) -> str:
        """storeBase-relative form of a path inside storeBase (what mounts are built from)."""
        return path.relative_to(self.root).as_posix()

    def claim(self, jid: str) -> Path:
        """Atomically create the job folder; a second claim of a live jid is :class:`JobExists`."""
        job_dir = self.job_dir(jid)
        try:
            job_dir.mkdir()
        except FileExistsError:
            raise JobExists(f"job {jid!r} already exists; delete it first or use another jid") from None
        return job_dir

    def has_job(self, jid: str) -> bool:
        return self.job_dir(jid).is_dir()

    def remove_job(self, jid: str) -> bool:
        """Delete the job folder; returns whether there was one.

        Any tree a job running as pfcon's uid can write is removed (any depth, names,
        permissions, links; see :func:`~pfcon.safetree.remove_tree`). A job running
        as another user can leave folders pfcon may neither write nor open up (pfcon not
        root, the job root): then nothing is deleted and the error says why, instead of a
        half-deleted folder and an I/O error.
        """
        job_dir = self.job_dir(jid)
        if not job_dir.is_dir():
            return False
        self._remove_tree(jid, job_dir)
        return True

    def remove_job_data(self, jid: str) -> list[Path]:
        """Delete the job's staged input and its output folder, keep its records; returns what went."""
        present = [p for p in (self.incoming(jid), self.outgoing(jid)) if p.is_dir()]
        for folder in present:
            self._remove_tree(jid, folder)
        return present

    def _remove_tree(self, jid: str, folder: Path) -> None:
        blocker = _undeletable_folder(folder)
        if blocker is not None:
            where, uid = blocker
            raise DataNotDeletable(
                f"job {jid!r}: {self.relative(folder)}/{where} belongs to uid {uid}, whose files "
                f"pfcon (uid {os.geteuid()}) cannot remove; nothing was deleted. Run jobs as pfcon's "
                "user (CONTAINER_USER) or remove the folder as its owner"
            )
        remove_tree(folder)


def _undeletable_folder(root: Path) -> tuple[str, int] | None:
    """(path, owner) of the first non-empty folder under ``root`` whose entries pfcon cannot unlink.

    Unlinking needs write and search permission on the folder; pfcon can grant itself both
    on folders it owns, not on another user's. The walk is fd-relative and of any depth.
    """
    euid = os.geteuid()
    if euid == 0:
        return None
    found: list[tuple[str, int]] = []

    def check(entry: Entry) -> None:
        info = os.stat(entry.name, dir_fd=entry.dir_fd, follow_symlinks=False)
        if info.st_uid == euid or found:
            return
        usable = os.access(entry.name, os.W_OK | os.X_OK, dir_fd=entry.dir_fd)
        if not usable and not _is_empty(entry):
            found.append((entry.path, info.st_uid))

    fd = open_dir(root)
    try:
        # every folder is checked when it is met, before the walk tries to open it
        for entry in walk(fd, max_depth=None, on_error=lambda _entry, _error: None):
            if entry.kind == DIR:
                check(entry)
            if found:
                return found[0]
    finally:
        os.close(fd)
    return None


def _is_empty(entry: Entry) -> bool:
    try:
        fd = open_dir(entry.name, dir_fd=entry.dir_fd)
    except OSError:
        return False  # cannot look inside: assume it holds something
    try:
        return not os.listdir(fd)
    finally:
        os.close(fd)
