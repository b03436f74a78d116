"""ChRIS link files (``*.chrislink``), resolved while staging input; shared by all storages.

A link file holds one path relative to a root (storeBase, or the job's own input for zip
uploads). Staging replaces it by a copy of its target: a file lands beside the link, a folder
lands beside it in a folder named after the target path with ``/`` turned into ``_``. Links
inside a copied folder are followed too; a target already on the chain of folders being
copied (a loop) is cut. Targets must stay inside the root and may not be a forbidden folder
(the job's output) or an ancestor of one.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pfcon.errors import InvalidInput
from pfcon.storebase import resolve_inside

LINK_SUFFIX = ".chrislink"
MAX_LINK_BYTES = 4096
MAX_DEPTH = 16

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkPolicy:
    """Where link targets are looked up and what they may not point at."""

    root: Path
    forbidden: tuple[Path, ...] = ()


def is_link_file(name: str) -> bool:
    return name.endswith(LINK_SUFFIX)


def walk_files(tree: Path) -> Iterator[Path]:
    """Regular files under ``tree``; symlinks and special files are never followed or listed."""
    for dirpath, _dirs, files in os.walk(tree, followlinks=False):
        for name in files:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                yield path


def count_data_files(tree: Path) -> int:
    """Files staged for a job, link files not counted (as ChRIS counts them)."""
    return sum(1 for path in walk_files(tree) if not is_link_file(path.name))


def read_link(link: Path) -> str:
    with link.open("rb") as handle:
        raw = handle.read(MAX_LINK_BYTES + 1)
    if len(raw) > MAX_LINK_BYTES:
        raise InvalidInput(f"link file {link.name!r} is too large to be a link")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidInput(f"link file {link.name!r} is not UTF-8 text") from None


def resolve_links(tree: Path, policy: LinkPolicy) -> None:
    """Replace every link file under ``tree`` by a copy of its target."""
    _resolve(tree, policy, chain=(), depth=0)


def _resolve(tree: Path, policy: LinkPolicy, chain: tuple[Path, ...], depth: int) -> None:
    links = [p for p in walk_files(tree) if is_link_file(p.name)]
    for link in links:
        relative = read_link(link)
        target = resolve_inside(policy.root, relative, f"link file {link.name!r}")
        _check_allowed(target, relative, policy)
        if target in chain or target in link.parents or depth >= MAX_DEPTH:
            log.warning("cutting link loop at %s -> %s", link, relative)
        elif target.is_file():
            copy_file(target, link.parent / target.name)
        elif target.is_dir():
            dest = link.parent / relative.strip("/").replace("/", "_")
            copy_tree(target, dest)
            _resolve(dest, policy, (*chain, target), depth + 1)
        else:
            raise InvalidInput(f"link file {link.name!r} points at {relative!r}, which does not exist")
        link.unlink()


def _check_allowed(target: Path, relative: str, policy: LinkPolicy) -> None:
    for forbidden in policy.forbidden:
        real = forbidden.resolve()
        if target == real or target in real.parents:
            raise InvalidInput(f"link target {relative!r} is the job's output or contains it")


def copy_file(src: Path, dest: Path) -> None:
    """Hard-link when the filesystem allows (instant, no extra space), else copy."""
    if dest.exists():
        return
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def copy_tree(src: Path, dest: Path) -> None:
    """Copy the regular files and folders of ``src`` (symlinks and special files skipped)."""
    for dirpath, dirs, files in os.walk(src, followlinks=False):
        here = dest / Path(dirpath).relative_to(src)
        here.mkdir(parents=True, exist_ok=True)
        dirs[:] = [d for d in dirs if not Path(dirpath, d).is_symlink()]
        for name in files:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                copy_file(path, here / name)
