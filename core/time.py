"""The clock: timezone-aware UTC, the only kind of timestamp the project stores."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
