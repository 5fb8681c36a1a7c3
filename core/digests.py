"""Digests of files' bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO, ContextManager, Protocol, runtime_checkable


@runtime_checkable
class Reopenable(Protocol):
    """A file opened once that hands out fresh binary readers (connectors' `DropFile`)."""

    def reader(self) -> ContextManager[BinaryIO]: ...


def file_sha256(source: str | os.PathLike[str] | BinaryIO | Reopenable) -> str:
    """SHA-256 (hex) of a file's bytes.

    `source` is a path; an object with `reader()` returning a binary file to read and close (a
    connectors `DropFile`: its bytes come from the descriptor it holds, not from the path); or
    an open binary file, read from its current position to the end and left open.
    """
    if isinstance(source, (str, os.PathLike)):
        with Path(source).open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    if isinstance(source, Reopenable):
        with source.reader() as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    return hashlib.file_digest(source, "sha256").hexdigest()
