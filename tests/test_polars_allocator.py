"""Polars' allocator gives freed memory back (core.memory.tune_polars_allocator): set by importing
`pipelines`, before Polars loads, unless the environment already chose.

Each case is a fresh interpreter, since jemalloc reads its options once, when Polars loads: it
builds and drops a hundred frames of about 5 MB each, then watches its resident size for a while without
allocating anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from core.memory import POLARS_ALLOCATOR, POLARS_ALLOCATOR_ENV

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent("""
    import json, os, sys, time
    import pipelines  # what every entry point loads first
    import polars as pl

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    base = rss()
    frames = [pl.DataFrame({"a": pl.int_range(i, i + 200_000, eager=True)}).with_columns(b=pl.col("a").cast(pl.String))
              for i in range(100)]  # many mid-sized frames, as resolution's steps leave them
    held = rss()
    del frames
    lowest = held
    deadline = time.time() + float(sys.argv[1])
    while time.time() < deadline and lowest - base > 100:
        time.sleep(0.25)
        lowest = min(lowest, rss())
    print(json.dumps({"conf": os.environ.get("_RJEM_MALLOC_CONF"), "held": held - base, "after": lowest - base}))
""")


def probe(env_conf: str | None, wait: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != POLARS_ALLOCATOR_ENV}
    if env_conf is not None:
        env[POLARS_ALLOCATOR_ENV] = env_conf
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", PROBE, str(wait)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_frames_go_back_to_the_system_within_seconds() -> None:
    got = probe(None, wait=15)
    assert got["conf"].endswith(POLARS_ALLOCATOR)  # Polars puts its own defaults first; later options win
    assert got["held"] > 300  # the frames were resident
    assert got["after"] < 100, got  # and went back without any further allocation


def test_the_environments_own_choice_wins() -> None:
    """An operator's own setting is taken as it is: here one that never purges, so the freed
    frames stay resident (the tuning's background purge is not added)."""
    got = probe("background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1", wait=3)
    assert got["conf"].endswith("background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1")
    assert got["held"] > 300 and got["after"] > 0.8 * got["held"], got
