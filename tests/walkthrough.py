"""Code blocks the tests run verbatim, wherever in the README or docs/ they live.

A block is marked in the Markdown as::

    <!-- NAME:start -->
    ```bash
    ...
    ```
    <!-- NAME:end -->

so a block can move between pages without its test noticing; each name must occur exactly once.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def documents() -> list[Path]:
    """The README and every documentation page."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def block(name: str) -> str:
    """The bash code of the block marked NAME; fails unless exactly one page has it."""
    pattern = re.compile(
        rf"<!-- {re.escape(name)}:start -->\n```bash\n(.*?)```\n<!-- {re.escape(name)}:end -->", re.S
    )
    found = [(page, match) for page in documents() for match in pattern.findall(page.read_text())]
    where = [str(page.relative_to(ROOT)) for page, _ in found]
    assert len(found) == 1, (
        f"code block {name!r} must be marked exactly once in README.md or docs/, found in {where}"
    )
    return found[0][1]
