"""A listener the CLI installs to draw progress bars for in-process runs; Dagster runs log instead."""

from __future__ import annotations

from collections.abc import Callable

_listener: Callable[[str, int], None] | None = None


def set_listener(listener: Callable[[str, int], None] | None) -> None:
    global _listener
    _listener = listener


def report(what: str, rows: int) -> None:
    if _listener is not None:
        _listener(what, rows)
