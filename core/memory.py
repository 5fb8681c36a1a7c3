"""Handing freed memory back to the system, so a long process's resident size follows what it
holds rather than the most it ever held.

glibc's malloc keeps freed blocks in its arenas and returns only the top of its heap; SQLite's
page caches and temporary tables, and Python's objects, live there. After a large step freed a
gigabyte, the pipeline's process still counted it as resident, and the next step's own peak
came on top (measured: the whole `enteronce run` at 1M records, README "Measured: the whole
`enteronce run`"). `malloc_trim(0)` releases the free pages of every arena.

Polars allocates through its own jemalloc. Polars configures it to purge freed pages after half
a second, but jemalloc purges only while it allocates or frees, on the thread doing so, and its
"muzzy" pages (given back with MADV_FREE) still count as resident until the kernel runs short:
through resolution's many short steps a million records' frames piled up as resident memory
well past their use. `tune_polars_allocator` adds a background thread that purges on time, and
no muzzy stage (README "Polars' allocator"). jemalloc reads its options when Polars loads, so
`pipelines` calls it on import, the first thing every entry point (CLI, Dagster code location,
runner) loads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

# Polars' jemalloc reads its options from this variable when it loads (Polars puts its own
# defaults before what the variable holds; later options win). Measured on a full resolution of
# 1M person records: peak 1,610-1,640 MiB against 1,760-1,840 MiB with Polars' defaults.
POLARS_ALLOCATOR_ENV = "_RJEM_MALLOC_CONF"
POLARS_ALLOCATOR = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"


def tune_polars_allocator() -> bool:
    """Set Polars' jemalloc options for this process and its children, unless the environment
    already sets them (the operator's choice wins) or Polars is loaded already (too late to take
    effect). Whether it set them."""
    if POLARS_ALLOCATOR_ENV in os.environ or "polars" in sys.modules:
        return False
    os.environ[POLARS_ALLOCATOR_ENV] = POLARS_ALLOCATOR
    return True


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
