"""The Parquet frame cache: deltas replace rows by key, and a cache out of step is rewritten."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from warehouse.frame_cache import FrameCache

SCHEMA = {"record_key": pl.String, "value": pl.Int64}


def frame(rows: dict[str, int]) -> pl.DataFrame:
    return pl.DataFrame({"record_key": list(rows), "value": list(rows.values())}, schema=SCHEMA)


def as_dict(f: pl.DataFrame) -> dict[str, int]:
    return dict(f.sort("record_key").iter_rows())


def test_deltas_replace_and_add_rows_by_key(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path / "c", key="record_key")
    base = frame({"a": 1, "b": 2})
    cache.write(base, meta=["b1"])
    cache.append(frame({"b": 20, "c": 3}), ["b1", "b2"], expect=["b1"], previous=base)
    got, meta = cache.read(SCHEMA)
    assert as_dict(got) == {"a": 1, "b": 20, "c": 3}
    assert meta == ["b1", "b2"]
    assert len(list((tmp_path / "c").glob("*.parquet"))) == 2  # base + one delta, not a rewrite


def test_a_cache_that_moved_on_is_rewritten_whole(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path / "c", key="record_key")
    cache.write(frame({"a": 1}), meta=5)
    # the caller read state 4 (say, before another run wrote 5): its delta applies to what it read
    cache.append(frame({"b": 2}), 6, expect=4, previous=frame({"z": 9}))
    got, meta = cache.read(SCHEMA)
    assert as_dict(got) == {"z": 9, "b": 2} and meta == 6
    assert len(list((tmp_path / "c").glob("*.parquet"))) == 1


def test_long_delta_chains_fold_into_a_new_base(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path / "c", key="record_key", max_deltas=3)
    current = frame({"a": 0})
    cache.write(current, meta=0)
    for i in range(1, 8):
        delta = frame({"a": i, f"k{i}": i})
        cache.append(delta, i, expect=i - 1, previous=current)
        current = pl.concat([current.join(delta.select("record_key"), on="record_key", how="anti"), delta])
        got, meta = cache.read(SCHEMA)
        assert as_dict(got) == as_dict(current) and meta == i
    assert len(list((tmp_path / "c").glob("*.parquet"))) <= 4


def test_missing_damaged_or_reshaped_cache_is_a_miss(tmp_path: Path) -> None:
    cache = FrameCache(tmp_path / "c", key="record_key")
    assert cache.read(SCHEMA) is None
    cache.write(frame({"a": 1}), meta=1)
    assert cache.read({"record_key": pl.String, "value": pl.String}) is None
    for part in (tmp_path / "c").glob("*.parquet"):
        part.write_bytes(b"not parquet")
    assert cache.read(SCHEMA) is None
