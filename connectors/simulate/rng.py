"""Deterministic, vectorised random numbers for the simulator.

Every draw is a pure function of (seed, stream name, row index): splitmix64 over a counter, computed
with Polars integer expressions (UInt64 arithmetic wraps). Nothing depends on numpy, on Polars' own
random generator, on dict/set iteration order, on time or on Python's salted `hash()`, so the same
arguments give the same outputs on every run and machine.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import polars as pl

_U64 = pl.UInt64
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_TWO32 = 1 << 32


def stream_key(seed: int, name: str) -> int:
    """A 64-bit key for one named stream of one seed (stable across processes)."""
    digest = hashlib.blake2b(f"enteronce-sim:{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(z: pl.Expr) -> pl.Expr:
    z = (z ^ (z // (1 << 30))) * pl.lit(_M1, dtype=_U64)
    z = (z ^ (z // (1 << 27))) * pl.lit(_M2, dtype=_U64)
    return z ^ (z // (1 << 31))


class Rng:
    """Named, independent streams of vectorised draws for one seed."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    # -- raw ---------------------------------------------------------------------------------
    def bits(self, name: str, n: int) -> pl.Series:
        """n uniformly distributed UInt64 values."""
        key = stream_key(self.seed, name)
        expr = _mix(
            (pl.int_range(0, n, dtype=_U64) + pl.lit(1, dtype=_U64)) * pl.lit(_GOLDEN, dtype=_U64)
            + pl.lit(key, dtype=_U64)
        )
        return pl.select(expr.alias(name)).to_series()

    def uniform(self, name: str, n: int) -> pl.Series:
        """n floats in [0, 1)."""
        b = self.bits(name, n)
        return ((b // (1 << 11)).cast(pl.Float64) * (1.0 / (1 << 53))).alias(name)

    def below(self, name: str, n: int, bound: int | pl.Series) -> pl.Series:
        """n integers in [0, bound) (bound an int or a per-row Series, each < 2**32, >= 1)."""
        hi = self.bits(name, n) // _TWO32
        if isinstance(bound, pl.Series):
            bnd = bound.cast(_U64).clip(lower_bound=1)
        else:
            bnd = max(int(bound), 1)
        return ((hi * bnd) // _TWO32).cast(pl.Int64).alias(name)

    def integers(self, name: str, n: int, low: int | pl.Series, high: int | pl.Series) -> pl.Series:
        """n integers in [low, high) (high exclusive; per-row Series allowed)."""
        span = high - low
        if isinstance(span, pl.Series):
            span = span.cast(pl.Int64).clip(lower_bound=1)
        out = self.below(name, n, span)
        return (out + low).cast(pl.Int64).alias(name)

    def choice(self, name: str, n: int, weights: Sequence[float]) -> pl.Series:
        """n indices into `weights`, drawn with those relative weights."""
        total = float(sum(weights))
        cum, acc = [], 0.0
        for w in weights:
            acc += float(w)
            cum.append(acc / total)
        cum[-1] = 1.0
        u = self.uniform(name, n)
        idx = pl.Series(cum, dtype=pl.Float64).search_sorted(u, side="right")
        return idx.cast(pl.Int64).clip(upper_bound=len(weights) - 1).alias(name)

    def mask(self, name: str, n: int, rate: float) -> pl.Series:
        """n booleans, each True with probability `rate`."""
        if rate <= 0:
            return pl.select(pl.repeat(False, n, dtype=pl.Boolean).alias(name)).to_series()
        return (self.uniform(name, n) < rate).alias(name)

    # -- scalar ------------------------------------------------------------------------------
    def py(self, name: str) -> random.Random:
        """A Python Random for small, sequential decisions (stable for the same seed and name)."""
        return random.Random(stream_key(self.seed, name))


def weights_zipf(n: int, s: float = 1.0, offset: float = 1.5) -> list[float]:
    """Zipf-like weights for an ordered pool: the first items are the most common."""
    return [1.0 / ((i + offset) ** s) for i in range(n)]
