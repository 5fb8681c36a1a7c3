"""Readers: one station export ("a drop") -> chunks of raw string rows, nothing lost.

Every row of a drop ends up exactly once either in a chunk's `rows` or in its `rejects`;
file-level problems raise `core.errors.SourceError` naming the file.
"""

from connectors.readers.drops import file_version, list_drops, read_drop
from connectors.readers.encoding import detect_encoding
from connectors.readers.model import ROW, ROW_HASH, Chunk, Reject

__all__ = [
    "ROW",
    "ROW_HASH",
    "Chunk",
    "Reject",
    "detect_encoding",
    "file_version",
    "list_drops",
    "read_drop",
]
