"""How a source is named to people: in batches, summaries and error messages."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from connectors.config import SourceConfig


def source_ref(source: SourceConfig, base_dir: Path) -> str:
    """A file's resolved path, or a SQL source's URL (password hidden) and table."""
    if source.kind == "sql":
        url = sa.make_url(source.url or "")
        return f"{url.render_as_string(hide_password=True)}#{source.table}"
    path = Path(source.path or "")
    return str(path if path.is_absolute() else base_dir / path)
