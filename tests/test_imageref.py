"""The image reference grammar: what every backend may be handed as ``image``."""

from __future__ import annotations

import pytest

from pfcon.errors import InvalidInput
from pfcon.imageref import check_image

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "localhost/pfcon-busybox:1",
        "ghcr.io/fnndsc/pl-dircopy:2.1.1",
        "docker.io/fnndsc/pl-simpledsapp:2.1.0",
        "registry.example.org:5000/a/b__c/d--e:v1.0_rc-1",
        f"fnndsc/pl-dcm2niix@{DIGEST}",
        f"localhost:5000/x:latest@{DIGEST}",
        "[::1]:5000/x:1",
        "a" * 255,
    ],
)
def test_references_are_accepted(image: str) -> None:
    assert check_image(image) == image


@pytest.mark.parametrize(
    "image",
    [
        "",
        "--volume=/etc:/hostetc",
        "-v/etc:/x",
        "-busybox",
        "busybox --privileged",
        " busybox",
        "busybox\n",
        "busybox\r",
        "busybox\t--rm",
        "busybox\x00",
        "busybox\x1b[2J",
        "busybox:-x",
        "busybox:.x",
        "busybox:" + "t" * 129,
        "BusyBox",
        "docker://busybox",
        "/images/busybox.sif",
        "./busybox",
        "busybox/",
        "a//b",
        "a/-b",
        "a_-b",
        "busybox@sha256:abc",
        "bus\u00edbox",
        "busybox;rm -rf /",
        "$(id)",
        "a" * 256,
    ],
)
def test_anything_else_is_refused(image: str) -> None:
    with pytest.raises(InvalidInput, match="image"):
        check_image(image)
