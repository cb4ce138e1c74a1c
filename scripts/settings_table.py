"""Write the settings table of docs/daemon.md from the one table in backend/settings.py.

Usage: .venv/bin/python scripts/settings_table.py [--check]. The table sits between the
``<!-- settings -->`` and ``<!-- /settings -->`` lines; tests/test_settings.py fails when it
is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from paintbridge.backend.settings import markdown_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "daemon.md"
START, END = "<!-- settings -->\n", "<!-- /settings -->\n"


def rewritten(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + markdown_table() + END + tail


if __name__ == "__main__":
    text = PAGE.read_text()
    if "--check" in sys.argv:
        sys.exit(0 if rewritten(text) == text else 1)
    PAGE.write_text(rewritten(text))
