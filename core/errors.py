"""Errors that a user sees: each names the file, and where known the row and field.

One `ConfigError` for the whole project: every config file (stations.yaml, resolution.yaml,
quality.yaml, subscriptions.yaml) raises it, and the CLI shows any `EnteronceError` as one clear
message. They live in the bottom layer so that every package can raise them without depending
on another (entity resolution, a library of pure functions, must not import the ingestion layer).
"""

from __future__ import annotations


class EnteronceError(Exception):
    """Base for errors shown to users as one clear message, never a traceback."""


class ConfigError(EnteronceError):
    """A config file is missing, unreadable or does not satisfy its contract."""


class SourceError(EnteronceError):
    """A station export cannot be read as a whole (file-level problem).

    Row-level problems never raise: those rows go to quarantine with their reason.
    """

    def __init__(self, file: str, message: str, *, row: int | None = None, field: str | None = None):
        self.file = file
        self.row = row
        self.field = field
        self.reason = message
        where = file
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
