"""Names for the benchmarks' cached simulator output that change when the simulator does.

A cache keyed by size and seed alone outlives a change to the simulator (new phenomena, new
rates) or to standardisation, and a benchmark would then measure yesterday's data. The digest of
their source files goes into every cached file's name.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
_SOURCES = ("connectors/simulate", "entity_resolution/standardise")


@lru_cache(maxsize=1)
def simulator_digest() -> str:
    """Eight hex digits over the simulator's and the standardisers' source files."""
    h = hashlib.sha256()
    for folder in _SOURCES:
        for path in sorted((ROOT / folder).glob("*.py")):
            h.update(path.relative_to(ROOT).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:8]


def cached(stem: str, rows: int, seed: int, suffix: str) -> Path:
    """CACHE / "<stem>_<rows>_<seed>_<digest>.<suffix>"."""
    return CACHE / f"{stem}_{rows}_{seed}_{simulator_digest()}.{suffix}"
