"""One ``## `` section of docs/benchmarks.md, which a part of the benchmark rewrites on its
own (``--storage-only``, ``--uploads-only``, ``--api-only``) and keeps when it is skipped."""

from __future__ import annotations

import re

HOW_TO_RUN = "## How to run"


class PageSection:
    def __init__(self, heading: str) -> None:
        self._pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)

    def extract(self, page: str) -> str | None:
        found = self._pattern.search(page)
        return found.group(0).rstrip("\n") + "\n" if found else None

    def replace(self, page: str, section: str) -> str:
        """``page`` with this section replaced by ``section`` (inserted before
        "## How to run" if the page has none)."""
        if self._pattern.search(page):
            return self._pattern.sub(lambda _: section + "\n", page, count=1)
        if HOW_TO_RUN in page:
            return page.replace(HOW_TO_RUN, section + "\n" + HOW_TO_RUN, 1)
        return page.rstrip("\n") + "\n\n" + section
