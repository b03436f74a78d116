"""The documentation site builds strictly, and the README's links into it land on something.

``mkdocs build --strict`` (with ``validation`` in mkdocs.yml set to warn) fails on a link to a
missing page or heading, a page left out of the navigation, or an absolute link. The README
lives outside the site, so its links into ``docs/`` are checked here against the built pages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.walkthrough import ROOT


class _Ids(HTMLParser):
    """Every ``id`` attribute of one HTML page: the anchors a link may name."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(value for name, value in attrs if name == "id" and value)


def _anchors(html: Path) -> set[str]:
    parser = _Ids()
    parser.feed(html.read_text())
    return parser.ids


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # the theme's end-of-life banner
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    return out


def test_every_page_is_built(site: Path) -> None:
    pages = sorted(p.relative_to(ROOT / "docs") for p in (ROOT / "docs").glob("**/*.md"))
    assert pages
    for page in pages:
        built = site / ("index.html" if page.name == "index.md" else page.with_suffix("") / "index.html")
        assert built.is_file(), f"{page} was not built"


def test_readme_links_into_docs_reach_a_page_and_heading(site: Path) -> None:
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", (ROOT / "README.md").read_text())
    assert len(links) >= 10, links
    for target, anchor in links:
        page = Path(target).relative_to("docs")
        assert (ROOT / target).is_file(), f"README links to {target}, which does not exist"
        if anchor:
            html = site / ("index.html" if page.name == "index.md" else page.with_suffix("") / "index.html")
            assert anchor in _anchors(html), f"README links to {target}#{anchor}: no such heading"
