"""How much one request may make the feed API read, and how many run at once: a light module (no FastAPI), so that the CLI
can offer these limits as options without importing the server."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

from core.errors import EnteronceError

LIMIT_ENV = {"max_body_bytes": "ENTERONCE_API_MAX_BODY_BYTES",
             "max_header_bytes": "ENTERONCE_API_MAX_HEADER_BYTES",
             "max_headers": "ENTERONCE_API_MAX_HEADERS",
             "threads": "ENTERONCE_API_THREADS",
             "page_cache_mb": "ENTERONCE_API_PAGE_CACHE_MB"}


@dataclass(frozen=True)
class ApiLimits:
    """What one request may make the server read.

    `max_header_bytes` bounds the request line and headers together; `enteronce serve` and
    BackgroundServer hand it to uvicorn's protocol (`uvicorn_options()`: httptools with a bound,
    feeds/http_protocol.py), which stops reading a request head past it (431), and the middleware
    checks it again for servers started otherwise.
    The default leaves room for the longest legitimate request, a records lookup of 200 ids.

    `threads` is how many requests do their blocking work (a feed page built on demand, any page
    on a warehouse across a network, the front desk's entries) at once, in worker threads; the
    others wait their turn in the event loop (a prepared page on SQLite is served by the loop). The work is mostly CPU under one GIL,
    so twenty threads at once only take turns more often: under 20 clients, 8 threads instead of
    anyio's 40 cut a feed page's p99 by a quarter to a third (README). More suit a warehouse across
    a slow network, or many slow pages built on demand, which would otherwise hold every thread.

    `page_cache_mb` is how much of the prepared feed pages' blocks each worker process keeps in
    memory (least recently used out first): a page then reads only their keys from the warehouse.
    """

    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    threads: int = 8
    page_cache_mb: int = 256

    def __post_init__(self) -> None:
        for f in dataclass_fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EnteronceError(f"API limit {f.name} must be a positive integer, got {value!r}")
        if self.max_header_bytes < 4096:
            raise EnteronceError(f"API limit max_header_bytes must be at least 4096, got {self.max_header_bytes}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ApiLimits":
        """The defaults, overridden by ENTERONCE_API_MAX_BODY_BYTES, _MAX_HEADER_BYTES, _MAX_HEADERS,
        _THREADS and _PAGE_CACHE_MB."""
        environ = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name, var in LIMIT_ENV.items():
            raw = environ.get(var, "").strip()
            if raw:
                if not raw.isdigit():
                    raise EnteronceError(f"{var} must be a positive integer, got {raw!r}")
                values[name] = int(raw)
        return cls(**values)

    def environ(self) -> dict[str, str]:
        """These limits as the environment variables `from_env` reads (for worker processes)."""
        return {var: str(getattr(self, name)) for name, var in LIMIT_ENV.items()}

    def uvicorn_options(self) -> dict[str, Any]:
        """uvicorn settings that bound the request head in the parser itself: httptools, whose
        protocol here stops reading an incomplete head past `max_header_bytes` (431)."""
        from feeds.http_protocol import bounded_httptools

        return {"http": bounded_httptools(self.max_header_bytes)}
