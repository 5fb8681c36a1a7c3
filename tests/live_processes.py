"""The machine's live processes, read from /proc: what tests check was left running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def live_processes() -> Iterator[tuple[int, int, list[str]]]:
    """(pid, parent pid, argv) of every live process; one that ends while being read is skipped
    (a zombie has an empty argv)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        yield int(proc.name), parent, argv


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text` (a test's folder)."""
    return [line[:300] for _, _, argv in live_processes() if text in (line := " ".join(argv))]
