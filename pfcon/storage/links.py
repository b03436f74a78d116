"""ChRIS link files (``*.chrislink``), resolved while staging input; shared by all storages.

A link file holds one path relative to a root (storeBase, a Swift container, or the job's
own input for zip uploads); a :class:`LinkSource` says how to look a target up and copy it.
Staging replaces it by a copy of its target: a file lands beside the link, a folder
lands beside it in a folder named after the target path with ``/`` turned into ``_``. Links
inside a copied folder are followed too; a target already on the chain of folders being
copied (a loop) is cut. Targets must stay inside the root and may not be a forbidden folder
(the job's output), inside one, or an ancestor of one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Protocol

from pfcon.errors import InvalidInput
from pfcon.storage.copying import copy_file, copy_tree, scan_files
from pfcon.storebase import resolve_inside, safe_relative

LINK_SUFFIX = ".chrislink"
MAX_LINK_BYTES = 4096
MAX_DEPTH = 16

log = logging.getLogger(__name__)


class LinkSource(Protocol):
    """Where link targets live: a folder on disk (storeBase, a job's input) or a Swift container."""

    def locate(self, relative: str, what: str) -> PurePath:
        """The target's canonical name; :class:`InvalidInput` if it leaves the source's root."""

    def kind(self, target: PurePath) -> str | None:
        """``"file"``, ``"dir"`` or ``None`` when nothing is there."""

    def fetch_file(self, target: PurePath, dest: Path) -> None:
        """Put a copy of the file ``target`` at ``dest``."""

    def fetch_tree(self, target: PurePath, dest: Path) -> None:
        """Put a copy of the folder ``target`` at ``dest`` (link files in it included)."""


@dataclass(frozen=True)
class LocalTree:
    """Link targets in a folder on disk; copies are hard links where possible (:mod:`copying`)."""

    root: Path

    def locate(self, relative: str, what: str) -> PurePath:
        return resolve_inside(self.root, relative, what)

    def kind(self, target: PurePath) -> str | None:
        path = Path(target)
        return "file" if path.is_file() else "dir" if path.is_dir() else None

    def fetch_file(self, target: PurePath, dest: Path) -> None:
        copy_file(Path(target), dest)

    def fetch_tree(self, target: PurePath, dest: Path) -> None:
        copy_tree(Path(target), dest)


@dataclass(frozen=True)
class LinkPolicy:
    """Where link targets are looked up and what they may not point at.

    ``source`` defaults to the folder ``root``; ``forbidden`` holds names in the source's own
    terms (paths on disk, or object prefixes for Swift).
    """

    root: Path | None = None
    forbidden: tuple[PurePath, ...] = ()
    source: LinkSource | None = None

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
    return [Path(entry.path) for entry in scan_files(os.fspath(tree)) if is_link_file(entry.name)]


def read_link(link: Path) -> str:
    with link.open("rb") as handle:
        raw = handle.read(MAX_LINK_BYTES + 1)
    if len(raw) > MAX_LINK_BYTES:
        raise InvalidInput(f"link file {link.name!r} is too large to be a link")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidInput(f"link file {link.name!r} is not UTF-8 text") from None


def resolve_links(tree: Path, policy: LinkPolicy, origins: tuple[PurePath, ...] = ()) -> None:
    """Replace every link file under ``tree`` by a copy of its target.

    ``origins`` are the source folders ``tree`` was copied from: a link back to one of them
    is a loop from the start.
    """
    _resolve(tree, policy, policy.link_source(), chain=origins, depth=0)


def _resolve(
    tree: Path, policy: LinkPolicy, source: LinkSource, chain: tuple[PurePath, ...], depth: int
) -> None:
    for link in link_files(tree):
        relative = read_link(link)
        target = source.locate(relative, f"link file {link.name!r}")
        _check_allowed(target, relative, policy)
        if target in chain or target in link.parents or depth >= MAX_DEPTH:
            log.warning("cutting link loop at %s -> %s", link, relative)
        elif (kind := source.kind(target)) == "file":
            source.fetch_file(target, link.parent / target.name)
        elif kind == "dir":
            dest = link.parent / safe_relative(relative, "link target").as_posix().replace("/", "_")
            source.fetch_tree(target, dest)
            _resolve(dest, policy, source, (*chain, target), depth + 1)
        else:
            raise InvalidInput(f"link file {link.name!r} points at {relative!r}, which does not exist")
        link.unlink()


def _check_allowed(target: PurePath, relative: str, policy: LinkPolicy) -> None:
    for forbidden in policy.forbidden:
        real = forbidden.resolve() if isinstance(forbidden, Path) else forbidden
        if target == real or target in real.parents or real in target.parents:
            raise InvalidInput(f"link target {relative!r} is the job's output, inside it or contains it")
