"""ChRIS link files (``*.chrislink``), resolved while staging input; shared by all storages.

A link file holds one path relative to a root (storeBase, an object store's container, or the
job's own input for zip uploads); a :class:`LinkSource` says how to look a target up, list it
and copy from it. Staging replaces each link by a copy of its target: a file lands beside the
link, a folder lands beside it in a folder named after the target path with ``/`` turned into
``_``. Links inside a linked folder are followed too; a target already on the chain of folders
being copied (a loop) is cut. Targets must stay inside the root and may not be a forbidden
folder (the job's output), inside one, or an ancestor of one.

Links to folders that hold links multiply what they copy (each level can double it), so
resolution runs in two phases:

1. **plan**: every link is looked up in the *original* source, never in a copy made here; a
   linked folder is listed once and its own links are planned at the copy's place. Each
   planned link, file, folder and byte is counted against :class:`~pfcon.settings.LinkLimits`
   as it is planned, so a tree that would blow up is a 413 before anything is copied;
2. **copy**: the planned files are copied from the source. A copy whose name is already taken
   (by a file of the job's input, or by another link's copy) is a 400.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Protocol

from pfcon.errors import InvalidInput, PayloadTooLarge
from pfcon.safetree import FILE, open_root, walk
from pfcon.settings import LinkLimits
from pfcon.storage.copying import copy_new_files, scan_files
from pfcon.storebase import resolve_inside, safe_relative

LINK_SUFFIX = ".chrislink"
MAX_LINK_BYTES = 4096
MAX_DEPTH = 16

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    """What a link target is: ``"file"`` (with its size) or ``"dir"``."""

    kind: str
    size: int = 0


@dataclass(frozen=True)
class SourceFile:
    """A regular file under a listed folder: its path below the folder (``/``-separated) and size."""

    relative: str
    size: int


class LinkSource(Protocol):
    """Where link targets live: a folder on disk (storeBase, a job's input) or an object store.

    Names are the source's own (``Path`` on disk, ``PurePosixPath`` object prefixes); every
    error is a domain error (:class:`InvalidInput`, ``StorageUnavailable``).
    """

    def locate(self, relative: str, what: str) -> PurePath:
        """The target's canonical name; :class:`InvalidInput` if it leaves the source's root."""

    def look(self, target: PurePath) -> Found | None:
        """What is at ``target``; ``None`` when nothing is."""

    def files(self, folder: PurePath) -> Iterator[SourceFile]:
        """The regular files under ``folder`` (link files included), in any order, lazily."""

    def read_link(self, target: PurePath) -> str:
        """The text of the link file ``target`` (through :func:`decode_link`)."""

    def fetch(self, pairs: Iterable[tuple[PurePath, Path]]) -> None:
        """Copy each source file to its destination, making folders on the way.

        A destination already there is :class:`FileExistsError` (or ``NotADirectoryError`` /
        ``IsADirectoryError`` when a folder and a file meet): it is never overwritten.
        """


@dataclass(frozen=True)
class LocalTree:
    """Link targets in a folder on disk; copies are hard links where possible (:mod:`copying`)."""

    root: Path

    def locate(self, relative: str, what: str) -> PurePath:
        return resolve_inside(self.root, relative, what)

    def look(self, target: PurePath) -> Found | None:
        try:
            info = os.stat(target)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISREG(info.st_mode):
            return Found("file", info.st_size)
        return Found("dir") if stat.S_ISDIR(info.st_mode) else None

    def files(self, folder: PurePath) -> Iterator[SourceFile]:
        try:
            fd = open_root(folder)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            for entry in walk(fd, max_depth=None):  # fd-relative, never through a symlink
                if entry.kind == FILE:
                    size = os.stat(entry.name, dir_fd=entry.dir_fd, follow_symlinks=False).st_size
                    yield SourceFile("/".join(entry.names), size)
        finally:
            os.close(fd)

    def read_link(self, target: PurePath) -> str:
        return read_link(Path(target))

    def fetch(self, pairs: Iterable[tuple[PurePath, Path]]) -> None:
        copy_new_files((os.fspath(source), os.fspath(dest)) for source, dest in pairs)


@dataclass(frozen=True)
class LinkPolicy:
    """Where link targets are looked up, what they may not point at, and how much they may copy.

    ``source`` defaults to the folder ``root``; ``forbidden`` holds names in the source's own
    terms (paths on disk, or object prefixes).
    """

    root: Path | None = None
    forbidden: tuple[PurePath, ...] = ()
    source: LinkSource | None = None
    limits: LinkLimits = field(default_factory=LinkLimits)

    def link_source(self) -> LinkSource:
        if self.source is not None:
            return self.source
        if self.root is None:
            raise ValueError("a LinkPolicy needs a root or a source")
        return LocalTree(self.root)


def is_link_file(name: str) -> bool:
    return name.endswith(LINK_SUFFIX)


def walk_files(tree: Path) -> Iterator[Path]:
    """Regular files under ``tree``; symlinks and special files are never followed or listed."""
    return (Path(entry.path) for entry in scan_files(os.fspath(tree)))


def count_data_files(tree: Path) -> int:
    """Files staged for a job, link files not counted (as ChRIS counts them)."""
    return sum(1 for entry in scan_files(os.fspath(tree)) if not is_link_file(entry.name))


def link_files(tree: Path) -> list[Path]:
    """The link files under ``tree``, sorted: resolution (and which error comes first) is
    the same whatever order the folder was read in."""
    return sorted(Path(entry.path) for entry in scan_files(os.fspath(tree)) if is_link_file(entry.name))


def read_link(link: Path) -> str:
    with link.open("rb") as handle:
        return decode_link(handle.read(MAX_LINK_BYTES + 1), link.name)


def decode_link(raw: bytes, name: str) -> str:
    """A link file's target from its first bytes (``MAX_LINK_BYTES + 1`` read at most)."""
    if len(raw) > MAX_LINK_BYTES:
        raise InvalidInput(f"link file {name!r} is too large to be a link")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidInput(f"link file {name!r} is not UTF-8 text") from None


def resolve_links(tree: Path, policy: LinkPolicy, origins: tuple[PurePath, ...] = ()) -> None:
    """Replace every link file under ``tree`` by a copy of its target.

    ``origins`` are the source folders ``tree`` was copied from: a link back to one of them
    is a loop from the start.
    """
    source = policy.link_source()
    plan = _Plan(source, policy, tree)
    links = link_files(tree)
    for link in links:
        home = link.resolve()
        plan.add(link.parent, read_link(link), link.name, origins, tuple(home.parents), depth=0)
    try:
        source.fetch(plan.pairs())
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
        taken = os.path.relpath(error.filename2 or error.filename or tree, tree)  # link(src, dest)
        raise InvalidInput(
            f"link copies: {taken!r} is already taken by another file or folder of the job's input"
        ) from None
    for link in links:
        link.unlink()


@dataclass(frozen=True)
class _Listing:
    """A linked folder, listed once: its data files, folder count, size and own links."""

    files: tuple[SourceFile, ...]
    folders: int
    size: int
    links: tuple[tuple[str, str], ...]  # (path below the folder, target text)


@dataclass(frozen=True)
class _Copy:
    source: PurePath
    dest: Path
    listing: _Listing | None  # None: a file


class _Plan:
    """Phase 1: every copy the links of one job ask for, counted against the limits."""

    def __init__(self, source: LinkSource, policy: LinkPolicy, tree: Path) -> None:
        self.source = source
        self.policy = policy
        self.tree = tree
        self.limits = policy.limits
        self.links = self.entries = self.bytes = 0
        self.copies: list[_Copy] = []
        self._dests: dict[Path, PurePath] = {}
        self._listings: dict[PurePath, _Listing] = {}
        self._found: dict[PurePath, Found | None] = {}

    def add(
        self,
        where: Path,
        text: str,
        name: str,
        chain: tuple[PurePath, ...],
        parents: tuple[PurePath, ...],
        depth: int,
    ) -> None:
        """Plan the link ``name`` (in folder ``where`` of the job's tree) pointing at ``text``."""
        target = self.source.locate(text, f"link file {name!r}")
        _check_allowed(target, text, self.policy)
        if target in chain or target in parents or depth >= MAX_DEPTH:
            log.warning("cutting link loop at %s -> %s", where / name, text)
            return
        found = self._look(target)
        if found is None:
            raise InvalidInput(f"link file {name!r} points at {text!r}, which does not exist")
        if found.kind == "file":
            if is_link_file(target.name):
                raise InvalidInput(f"link file {name!r} points at another link file, {text!r}")
            if self._claim(where / target.name, target, name):
                self._charge(entries=1, size=found.size)
                self.copies.append(_Copy(target, where / target.name, None))
            return
        dest = where / safe_relative(text, "link target").as_posix().replace("/", "_")
        if not self._claim(dest, target, name):
            return
        listing = self._listing(target)
        self._charge(entries=1 + listing.folders + len(listing.files), size=listing.size)
        self.copies.append(_Copy(target, dest, listing))
        for relative, inner in listing.links:
            home = target / relative
            place = dest / PurePosixPath(relative).parent
            self.add(place, inner, home.name, (*chain, target), tuple(home.parents), depth + 1)

    def pairs(self) -> Iterator[tuple[PurePath, Path]]:
        """Phase 2's work: (source file, destination) for every planned copy."""
        for copy in self.copies:
            if copy.listing is None:
                yield copy.source, copy.dest
                continue
            copy.dest.mkdir(parents=True, exist_ok=True)
            for item in copy.listing.files:
                yield copy.source / item.relative, copy.dest / item.relative

    # -- helpers --------------------------------------------------------------------------
    def _claim(self, dest: Path, target: PurePath, name: str) -> bool:
        """Reserve ``dest`` for ``target``; False if the same copy is already planned there."""
        planned = self._dests.get(dest)
        if planned == target:
            return False
        if planned is not None:
            taken = os.path.relpath(dest, self.tree)
            raise InvalidInput(
                f"link file {name!r}: its copy {taken!r} is already taken by another link's copy"
            )
        self.links += 1
        if self.links > self.limits.max_links:
            raise PayloadTooLarge(f"input links: more than {self.limits.max_links} links (MAX_JOB_LINKS)")
        self._dests[dest] = target
        return True

    def _charge(self, entries: int, size: int) -> None:
        self.entries += entries
        self.bytes += size
        self._check_caps()

    def _check_caps(self, entries: int = 0, size: int = 0) -> None:
        limits = self.limits
        if self.entries + entries > limits.max_entries:
            raise PayloadTooLarge(
                f"input links: their copies would make more than {limits.max_entries} files and "
                "folders (MAX_LINKED_ENTRIES)"
            )
        if self.bytes + size > limits.max_bytes:
            raise PayloadTooLarge(
                f"input links: their copies would hold more than {limits.max_bytes} bytes (MAX_LINKED_BYTES)"
            )

    def _look(self, target: PurePath) -> Found | None:
        """What is at ``target``, asked of the source once per job (a round trip to Swift)."""
        if target not in self._found:
            self._found[target] = self.source.look(target)
        return self._found[target]

    def _listing(self, folder: PurePath) -> _Listing:
        """List ``folder`` once per job, stopping as soon as it alone would break a cap."""
        known = self._listings.get(folder)
        if known is not None:
            return known
        files: list[SourceFile] = []
        links: list[tuple[str, str]] = []
        folders: set[str] = set()
        size = 0
        for item in self.source.files(folder):
            if is_link_file(item.relative):
                if self.links + len(links) >= self.limits.max_links:
                    raise PayloadTooLarge(
                        f"input links: more than {self.limits.max_links} links (MAX_JOB_LINKS)"
                    )
                links.append((item.relative, self.source.read_link(folder / item.relative)))
            else:
                files.append(item)
                size += item.size
            parent = item.relative.rpartition("/")[0]
            while parent and parent not in folders:
                folders.add(parent)
                parent = parent.rpartition("/")[0]
            self._check_caps(entries=1 + len(files) + len(folders), size=size)
        listing = _Listing(tuple(files), len(folders), size, tuple(links))
        self._listings[folder] = listing
        return listing


def _check_allowed(target: PurePath, relative: str, policy: LinkPolicy) -> None:
    for forbidden in policy.forbidden:
        real = forbidden.resolve() if isinstance(forbidden, Path) else forbidden
        if target == real or target in real.parents or real in target.parents:
            raise InvalidInput(f"link target {relative!r} is the job's output, inside it or contains it")
