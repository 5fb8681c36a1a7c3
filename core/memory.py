"""Handing freed memory back to the system, so a long process's resident size follows what it
holds rather than the most it ever held.

glibc's malloc keeps freed blocks in its arenas and returns only the top of its heap; SQLite's
page caches and temporary tables, and Python's objects, live there. After a large step freed a
gigabyte, the pipeline's process still counted it as resident, and the next step's own peak
came on top (measured: the whole `enteronce run` at 1M records, README "Measured: the whole
`enteronce run`"). `malloc_trim(0)` releases the free pages of every arena. Polars allocates
through its own jemalloc, which returns freed pages by itself after a short delay.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (musl, macOS, Windows: nothing to call)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the free pages of the C heap to the system; whether any were returned. Costs a
    walk of the heap's free blocks (milliseconds for a gigabyte): call it after large work, not
    per request."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
