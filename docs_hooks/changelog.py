"""MkDocs hook: render the repository's CHANGELOG.md as the docs' changelog page.

CHANGELOG.md stays the one source of truth; ``docs/changelog.md`` only names it, and this hook
swaps in the file's current content at build time (no plugin dependency needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_PAGE = "changelog.md"


def on_page_markdown(markdown: str, /, *, page: Any, config: Any, files: Any) -> str:
    """Replace the changelog page's body with CHANGELOG.md."""
    if page.file.src_uri != _PAGE:
        return markdown
    changelog = Path(config["config_file_path"]).parent / "CHANGELOG.md"
    return changelog.read_text(encoding="utf-8")
