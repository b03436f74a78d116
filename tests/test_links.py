"""ChRIS link files resolve inside their root, never at the output, and loops end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pfcon.errors import InvalidInput, PayloadTooLarge
from pfcon.settings import LinkLimits
from pfcon.storage.links import LinkPolicy, count_data_files, resolve_links
from tests.helpers import doubling_chain


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


def test_links_to_folders_of_links_are_copied_from_the_original_and_counted(tmp_path: Path) -> None:
    _write(tmp_path, {**doubling_chain("data", 3), "job/in/start.chrislink": "data/L0"})
    resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path))
    assert count_data_files(tmp_path / "job/in") == 1 + 2 + 4 + 8
    assert (tmp_path / "job/in/data_L0/sub/data_L1/data_L2/sub/data_L3/f3.txt").read_text() == "3"
    assert not list((tmp_path / "job/in").rglob("*.chrislink"))
    assert (tmp_path / "data/L0/a.chrislink").exists()  # the source is never touched


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (LinkLimits(max_entries=100), "MAX_LINKED_ENTRIES"),
        (LinkLimits(max_links=50), "MAX_JOB_LINKS"),
        (LinkLimits(max_bytes=1000), "MAX_LINKED_BYTES"),
    ],
)
def test_amplification_is_refused_before_anything_is_copied(
    tmp_path: Path, limits: LinkLimits, message: str
) -> None:
    _write(tmp_path, {**doubling_chain("data", 20), "job/in/start.chrislink": "data/L0"})
    started = time.monotonic()
    with pytest.raises(PayloadTooLarge, match=message):
        resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path, limits=limits))
    assert time.monotonic() - started < 5
    assert [p.name for p in (tmp_path / "job/in").iterdir()] == ["start.chrislink"]


def test_a_zip_s_own_links_never_copy_resolved_copies(tmp_path: Path) -> None:
    """In a zip, targets lie in the tree being resolved: copies come from what was uploaded."""
    tree = tmp_path / "in"
    _write(tree, {**doubling_chain("d", 6), "top.chrislink": "d/L0"})
    uploaded = count_data_files(tree)
    exact = LinkLimits(max_entries=10_000)
    resolve_links(tree, LinkPolicy(root=tree, limits=exact))
    # every level's link files were resolved in place (in d/L<i>) and in every copy of it
    in_place = sum(2 * (2 ** (6 - level) - 1) for level in range(6))
    from_top = 2**7 - 1
    assert count_data_files(tree) == uploaded + in_place + from_top


def test_a_copy_whose_name_is_taken_by_a_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"data/f.txt": "new", "job/in/f.txt": "mine", "job/in/f.chrislink": "data/f.txt"})
    with pytest.raises(InvalidInput, match=r"'f\.txt' is already taken"):
        resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path))
    assert (tmp_path / "job/in/f.txt").read_text() == "mine"


def test_two_links_to_different_targets_under_one_name_are_refused(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "a/f.txt": "a",
            "b/f.txt": "b",
            "job/in/one.chrislink": "a/f.txt",
            "job/in/two.chrislink": "b/f.txt",
        },
    )
    with pytest.raises(InvalidInput, match="already taken"):
        resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path))


def test_a_folder_copy_over_a_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"data/x/f.txt": "x", "job/in/data_x": "a file", "job/in/l.chrislink": "data/x"})
    with pytest.raises(InvalidInput, match="already taken"):
        resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path))


def test_two_links_to_one_target_make_one_copy(tmp_path: Path) -> None:
    _write(tmp_path, {"a/f.txt": "a", "job/in/one.chrislink": "a/f.txt", "job/in/two.chrislink": "a/f.txt"})
    resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path))
    assert sorted(p.name for p in (tmp_path / "job/in").iterdir()) == ["f.txt"]


def test_a_link_to_a_link_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"a/x.chrislink": "a", "job/in/l.chrislink": "a/x.chrislink"})
    with pytest.raises(InvalidInput, match="another link file"):
        resolve_links(tmp_path / "job/in", LinkPolicy(root=tmp_path))
