"""ChRIS link files resolve inside their root, never at the output, and loops end."""

from __future__ import annotations

from pathlib import Path

import pytest

from pfcon.errors import InvalidInput
from pfcon.storage.links import LinkPolicy, count_data_files, resolve_links


def _write(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def test_folder_link_is_copied_under_traced_name(tmp_path: Path) -> None:
    _write(tmp_path, {"data/a/b/x.txt": "x", "data/a/b/y/z.txt": "z", "job/in/ref.chrislink": "data/a/b"})
    resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path))
    copied = tmp_path / "job/in/data_a_b"
    assert (copied / "x.txt").read_text() == "x" and (copied / "y/z.txt").read_text() == "z"
    assert not (tmp_path / "job/in/ref.chrislink").exists()
    assert count_data_files(tmp_path / "job/in") == 2


def test_file_link_lands_beside_the_link(tmp_path: Path) -> None:
    _write(tmp_path, {"data/f.txt": "F", "job/in/sub/f.chrislink": "data/f.txt\n"})
    resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path))
    assert (tmp_path / "job/in/sub/f.txt").read_text() == "F"


def test_links_inside_copies_are_followed_and_loops_cut(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "data/a/one.txt": "1",
            "data/a/to_b.chrislink": "data/b",
            "data/b/two.txt": "2",
            "data/b/back_to_a.chrislink": "data/a",
            "job/in/start.chrislink": "data/a",
        },
    )
    resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path))
    root = tmp_path / "job/in/data_a"
    assert (root / "one.txt").exists() and (root / "data_b/two.txt").exists()
    assert not list((tmp_path / "job/in").rglob("*.chrislink"))
    assert not (root / "data_b/data_a").exists()  # the loop back to data/a was cut


@pytest.mark.parametrize("target", ["../outside", "/etc/passwd", "nope/missing", ""])
def test_bad_targets_are_refused(tmp_path: Path, target: str) -> None:
    (tmp_path / "root/in").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "root/in/l.chrislink").write_text(target)
    with pytest.raises(InvalidInput):
        resolve_links(tmp_path / "root/in", LinkPolicy(root=tmp_path / "root"))


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "root/in").mkdir(parents=True)
    (tmp_path / "root/sneaky").symlink_to(tmp_path / "secret")
    (tmp_path / "root/in/l.chrislink").write_text("sneaky")
    with pytest.raises(InvalidInput, match="outside"):
        resolve_links(tmp_path / "root/in", LinkPolicy(root=tmp_path / "root"))


@pytest.mark.parametrize("target", ["job/out", "job"])
def test_links_may_not_point_at_the_output_or_its_ancestors(tmp_path: Path, target: str) -> None:
    _write(tmp_path, {"job/out/o.txt": "o", "job/in/l.chrislink": target})
    with pytest.raises(InvalidInput, match="output"):
        resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path, forbidden=(tmp_path / "job/out",)))
