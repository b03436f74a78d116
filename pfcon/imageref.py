"""Container image references, checked against the distribution reference grammar.

An ``image`` reaches engine APIs and, on Slurm, a runtime's command line on a node: a value
such as ``--volume=/etc:/hostetc`` must never be read as an option. Every backend gets only
names of the form ``[host[:port]/]path[:tag][@algorithm:hex]`` (the grammar of
github.com/distribution/reference, which Docker, Podman and CRI-O parse): no leading ``-``,
no blanks or control characters, no URL schemes or file paths.
"""

from __future__ import annotations

import re

from pfcon.errors import InvalidInput

#: distribution/reference's NameTotalLengthMax (the name, without tag and digest)
MAX_NAME_LENGTH = 255
#: a whole reference: the name, a 128-character tag and a long digest fit well within it
MAX_REFERENCE_LENGTH = 1024

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)


def check_image(image: str) -> str:
    """Return ``image`` if it is a container reference; else :class:`InvalidInput` saying why."""
    match = REFERENCE.fullmatch(image) if len(image) <= MAX_REFERENCE_LENGTH else None
    if match is None:
        raise InvalidInput(
            f"image: {image[:300]!r} is not a container image reference "
            "([registry[:port]/]name[:tag][@digest], lower-case name, no leading '-', blanks or "
            "control characters)"
        )
    if len(match.group("name")) > MAX_NAME_LENGTH:
        raise InvalidInput(f"image: the name is longer than {MAX_NAME_LENGTH} characters")
    return image
