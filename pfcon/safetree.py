"""Walk, read and delete trees a job wrote, without ever following a link it planted.

A job's output is written by untrusted code, possibly while pfcon reads it: any name, any
depth, any permission, folders swapped for symlinks mid-walk. Every storage reads output
through this module (the zip stream, the in-network listings, Swift/S3 uploads, fslink
copies) and every delete goes through :func:`remove_tree`, so the rules live in one place:

- **fd-relative, no-follow on every component.** Folders are opened with ``O_NOFOLLOW |
  O_DIRECTORY`` relative to their parent's descriptor, files with ``O_NOFOLLOW | O_NONBLOCK``
  and checked to be regular with ``fstat``: a component swapped for a symlink fails to open
  instead of leading out, a FIFO never blocks a reader.
- **Iterative, O(1) descriptors.** The walk holds one folder open at a time and climbs back
  with ``..``, checking the device and inode it expects (a folder moved meanwhile ends that
  part of the walk with a logged reason). :func:`remove_tree` flattens the tree (each
  subfolder is renamed to the top before it is emptied), so any depth is deleted with three
  descriptors and no recursion.
- **Names.** A name that is not valid UTF-8 is read as Latin-1 (every byte one character, so
  it never fails; ``caf\\xe9.txt`` written by a Latin-1 tool becomes ``café.txt``). If that
  form collides with a sibling's name the entry is skipped with a logged reason.
- **Depth.** Walks used for outputs stop at :data:`MAX_DEPTH` folders below the root (deeper
  entries are skipped with a logged reason); deletes have no bound.
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_DEPTH = 128
"""Folders below an output's root that are read; deeper entries are left out (logged)."""

FILE, DIR, OTHER = "file", "dir", "other"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

log = logging.getLogger(__name__)


class TreeChanged(OSError):
    """A folder the walk was inside was moved or replaced while it was read."""


def display_name(name: str) -> str:
    """The name as clients see it: UTF-8 as is, any other byte string read as Latin-1."""
    if name.isascii():
        return name
    raw = os.fsencode(name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(frozen=True)
class Entry:
    """One entry met by :func:`walk`; ``dir_fd`` is valid only until the walk moves on."""

    dir_fd: int
    name: str  # as on disk (undecodable bytes surrogate-escaped): for *at() calls
    parts: tuple[str, ...]  # display names from the root down to this entry
    kind: str  # FILE, DIR or OTHER (symlinks, FIFOs, sockets, devices)
    names: tuple[str, ...] = ()  # on-disk names from the root down to this entry

    @property
    def path(self) -> str:
        """The display path relative to the root, ``/``-separated."""
        return "/".join(self.parts)


@dataclass
class _Level:
    ident: tuple[int, int]
    names: tuple[str, ...]  # on-disk names from the root
    parts: tuple[str, ...]
    entries: Iterator[tuple[str, str, str]]


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_dir(follow_symlinks=False):
        return DIR
    return FILE if entry.is_file(follow_symlinks=False) else OTHER


def list_dir(fd: int, where: str = "", rename: bool = False) -> list[tuple[str, str, str]]:
    """(display name, on-disk name, kind) of a folder's entries, sorted, one per display name.

    With ``rename``, an entry whose name is not UTF-8 is renamed on disk to its display name
    (never over an existing entry), so a path listed to a client is a path it can open.
    """
    with os.scandir(fd) as scan:
        found = sorted((display_name(e.name), e.name, _kind(e)) for e in scan)
    if rename:
        found = [_renamed(fd, item, where) if item[0] != item[1] else item for item in found]
    unique: list[tuple[str, str, str]] = []
    for item in found:  # sorted: a clash is two neighbours, one of them UTF-8 (kept)
        if not unique or unique[-1][0] != item[0]:
            unique.append(item)
            continue
        dropped = item if unique[-1][0] == unique[-1][1] else unique[-1]
        unique[-1] = item if dropped is unique[-1] else unique[-1]
        log.warning("skipping %r in %r: its name read as Latin-1 is taken", dropped[1], where or ".")
    return unique


def _renamed(fd: int, item: tuple[str, str, str], where: str) -> tuple[str, str, str]:
    shown, name, kind = item
    try:
        if kind == DIR:
            try:
                os.stat(shown, dir_fd=fd, follow_symlinks=False)
                return item  # taken: list_dir drops this one with a logged reason
            except FileNotFoundError:
                os.rename(name, shown, src_dir_fd=fd, dst_dir_fd=fd)
        else:  # a hard link never replaces an existing name
            os.link(name, shown, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
            os.unlink(name, dir_fd=fd)
    except OSError as error:
        log.warning("could not rename %r in %r to %r: %s", name, where or ".", shown, error)
        return item
    log.info("renamed %r in %r to %r (not UTF-8; read as Latin-1)", name, where or ".", shown)
    return shown, shown, kind


def open_dir(name: str | os.PathLike[str], dir_fd: int | None = None) -> int:
    """Open a folder without following a symlink at its last component."""
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def open_root(path: str | os.PathLike[str]) -> int:
    """Open an output's root folder; its own path is pfcon's, but it must not be a link."""
    return open_dir(path)


def open_regular(dir_fd: int, name: str) -> tuple[int, os.stat_result] | None:
    """Open a regular file for reading, or ``None`` if it is gone, a link or anything else."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        log.warning("skipping %r: %s", name, error.strerror)
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info


def walk(
    root_fd: int,
    max_depth: int | None = MAX_DEPTH,
    on_error: Callable[[Entry, OSError], None] | None = None,
    rename: bool = False,
    too_deep: Callable[[Entry], None] | None = None,
) -> Iterator[Entry]:
    """Every entry under the open folder ``root_fd``, depth first, sorted, pre-order.

    A folder is yielded before its content. ``root_fd`` stays the caller's; the walk opens at
    most two more descriptors. A folder that cannot be opened (permissions, swapped for a
    link) is reported to ``on_error`` (default: logged) and its content skipped. ``rename``:
    see :func:`list_dir`. A folder deeper than ``max_depth`` goes to ``too_deep`` (default:
    logged and skipped; it may raise to refuse the tree instead).
    """
    report = on_error or _log_skip
    ident = _ident(os.fstat(root_fd))
    levels = [_Level(ident, (), (), iter(list_dir(root_fd, rename=rename)))]
    cur = os.dup(root_fd)
    try:
        while levels:
            level = levels[-1]
            item = next(level.entries, None)
            if item is None:
                levels.pop()
                if levels:
                    cur = _climb(cur, root_fd, levels[-1])
                    if cur < 0:
                        return
                continue
            shown, name, kind = item
            entry = Entry(cur, name, (*level.parts, shown), kind, (*level.names, name))
            if kind != DIR:
                yield entry
                continue
            if max_depth is not None and len(entry.parts) > max_depth:
                (too_deep or _log_too_deep)(entry)
                continue
            yield entry
            try:
                child = open_dir(name, dir_fd=cur)
            except OSError as error:
                report(entry, error)
                continue
            try:
                info = os.fstat(child)
                entries = list_dir(child, entry.path, rename)
            except OSError as error:
                os.close(child)
                report(entry, error)
                continue
            os.close(cur)
            cur = child
            levels.append(_Level(_ident(info), entry.names, entry.parts, iter(entries)))
    finally:
        if cur >= 0:
            os.close(cur)


def _ident(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _climb(cur: int, root_fd: int, parent: _Level) -> int:
    """Descriptor of ``parent`` from its child ``cur`` (closed); -1 if the tree was changed.

    ``..`` is the cheap way up; it needs search permission on the child and must be the
    folder the walk came from. Otherwise the parent is reached again from the root.
    """
    try:
        up = open_dir("..", dir_fd=cur)
    except OSError:
        up = -1
    finally:
        os.close(cur)
    if up >= 0 and _ident(os.fstat(up)) == parent.ident:
        return up
    if up >= 0:
        os.close(up)
    try:
        return _reopen(root_fd, parent)
    except OSError:
        log.warning("stopping the walk at %s: the folder was moved while it was read", parent.parts)
        return -1


def _reopen(root_fd: int, level: _Level) -> int:
    fd = os.dup(root_fd)
    for name in level.names:
        try:
            child = open_dir(name, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    if _ident(os.fstat(fd)) != level.ident:
        os.close(fd)
        raise TreeChanged("not the folder the walk left")
    return fd


def _log_too_deep(entry: Entry) -> None:
    log.warning("skipping %s...: deeper than %d folders", entry.path[:200], len(entry.parts) - 1)


def _log_skip(entry: Entry, error: OSError) -> None:
    log.warning("skipping folder %s: %s", entry.path, error.strerror or error)


# -- delete ----------------------------------------------------------------------------------
def chmod_dir(dir_fd: int, name: str, mode: int) -> None:
    """chmod a folder without following a link (Python 3.11 has no ``fchmodat`` no-follow).

    ``O_PATH`` needs no permission on the folder itself, and ``O_NOFOLLOW | O_DIRECTORY``
    refuses a symlink; the chmod then goes through the descriptor's ``/proc`` entry.
    """
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete the folder ``path`` and everything in it, whatever its depth and permissions.

    Each subfolder is renamed to the top (a fresh name in ``path`` itself) before it is
    emptied, so no descriptor chain or recursion grows with depth. Folders a job left without
    read, write or search permission are given ``0o700`` first (pfcon owns them when jobs run
    as its uid). Symlinks are removed, never followed.
    """
    parent_path, base = os.path.split(os.path.abspath(path))
    parent = open_dir(parent_path)
    try:
        root = _open_for_delete(parent, base)
        try:
            _empty(root, root, top=True)
        finally:
            os.close(root)
        os.rmdir(base, dir_fd=parent)
    finally:
        os.close(parent)


def _empty(fd: int, root: int, top: bool) -> None:
    """Empty folder ``fd``; its subfolders are emptied in turn from the top of ``root``."""
    queue: list[str] = []
    _unlink_all(fd, root, queue, top)
    while queue:
        name = queue.pop()
        try:
            child = _open_for_delete(root, name)
        except FileNotFoundError:
            continue
        try:
            _unlink_all(child, root, queue, top=False)
        finally:
            os.close(child)
        os.rmdir(name, dir_fd=root)


def _open_up(dir_fd: int, name: str) -> bool:
    """Give a folder of our own ``0o700``; False if it is another user's (EPERM)."""
    try:
        chmod_dir(dir_fd, name, 0o700)
    except PermissionError:
        return False
    return True


def _open_for_delete(parent: int, name: str) -> int:
    try:
        return open_dir(name, dir_fd=parent)
    except PermissionError:
        chmod_dir(parent, name, 0o700)
        return open_dir(name, dir_fd=parent)


def _unlink_all(fd: int, root: int, queue: list[str], top: bool) -> None:
    """Unlink the files of folder ``fd`` and queue its subfolders (moved to the top of ``root``).

    A read-only folder of our own is opened up (``0o700``) on the first refusal, once.
    """
    opened = False
    while True:
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    _remove_entry(fd, root, entry, queue, top)
            return
        except PermissionError:
            if opened:
                raise
            os.chmod(fd, 0o700)
            opened = True


def _remove_entry(fd: int, root: int, entry: os.DirEntry[str], queue: list[str], top: bool) -> None:
    name = entry.name
    try:
        if not entry.is_dir(follow_symlinks=False):
            os.unlink(name, dir_fd=fd)
        elif top:
            if name not in queue:
                queue.append(name)
        else:
            fresh = f".pfcon-rm-{uuid.uuid4().hex}"
            try:
                os.rename(name, fresh, src_dir_fd=fd, dst_dir_fd=root)
            except PermissionError:  # moving a folder rewrites its "..": it must be writable
                if not _open_up(fd, name):
                    os.rmdir(name, dir_fd=fd)  # another user's: fine if it is empty
                    return
                os.rename(name, fresh, src_dir_fd=fd, dst_dir_fd=root)
            queue.append(fresh)
    except FileNotFoundError:
        pass
