"""uvicorn's httptools protocol with the request head bounded in the parser's loop.

httptools (llhttp, in C) parses several times faster than h11, but it buffers a header line of any
length until it ends; h11 stops at `h11_max_incomplete_event_size`. This protocol gives httptools
the same bound: while a request's head is incomplete, the bytes received since it began are
counted after each read, and past `max_head_bytes` the connection gets 431 and is closed. A head
that completes inside a read is never counted against the bound, so a body sent in the same packet
is not mistaken for a long head; the buffered head is at most the bound plus one read.
"""

from __future__ import annotations

import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_431 = b"request line and headers too large"


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, max_head_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self._head_open = True  # a new connection starts with a head
        self._head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_open and self.transport is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse()

    def _refuse(self) -> None:
        self._head_open = False
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; "
                             b"charset=utf-8\r\nconnection: close\r\ncontent-length: "
                             + str(len(_431)).encode() + b"\r\n\r\n" + _431)
        self.transport.close()


class EnvBoundedHttpToolsProtocol(BoundedHttpToolsProtocol):
    """The bound from ENTERONCE_API_MAX_HEADER_BYTES (or the default): for the uvicorn command line,
    `--http feeds.http_protocol:EnvBoundedHttpToolsProtocol`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from feeds.limits import ApiLimits

        super().__init__(*args, max_head_bytes=ApiLimits.from_env().max_header_bytes, **kwargs)


def bounded_httptools(max_head_bytes: int) -> functools.partial:
    """The protocol class for uvicorn's `http` setting (a partial: picklable for worker processes)."""
    return functools.partial(BoundedHttpToolsProtocol, max_head_bytes=max_head_bytes)
