"""link_type: link_only keeps cross-source pairs only, in blocking and in u estimation."""

from __future__ import annotations

import polars as pl
import pytest

from entity_resolution.blocking import candidate_pairs, prepare
from core.errors import ConfigError
from entity_resolution.config import EntitySettings
from entity_resolution.scoring import _exact_first_u, _random_pairs, estimate_u


def settings(link_type: str | None = None, source: str | None = None) -> EntitySettings:
    data: dict = {
        "blocking": {"rules": [{"name": "phone", "keys": ["phone"]}]},
        "comparisons": [{"name": "name", "column": "name", "levels": [{"kind": "exact"}]}],
        "thresholds": {"match": 0.9, "review": 0.5},
    }
    if link_type:
        data["link_type"] = link_type
    if source:
        data["source_column"] = source
    return EntitySettings.model_validate(data)


@pytest.fixture()
def two_files() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "record_key": ["a1", "a2", "a3", "b1", "b2", "b3"],
            "file": ["A", "A", "A", "B", "B", "B"],
            "phone": ["1", "1", "2", "1", "2", "3"],
            "name": ["x", "x", "y", "x", "y", "z"],
        }
    )


def pairs_of(frame: pl.DataFrame) -> set[tuple[str, str]]:
    return set(frame.select("left_id", "right_id").iter_rows())


def test_default_is_dedupe_only_and_keeps_same_source_pairs(two_files: pl.DataFrame) -> None:
    s = settings()
    assert s.link_type == "dedupe_only" and s.source_column == "station_id"
    pairs, _ = candidate_pairs(two_files, s)
    assert pairs_of(pairs) == {("a1", "a2"), ("a1", "b1"), ("a2", "b1"), ("a3", "b2")}


def test_link_only_drops_same_source_pairs(two_files: pl.DataFrame) -> None:
    s = settings("link_only", "file")
    pairs, stats = candidate_pairs(two_files, s)
    assert pairs_of(pairs) == {("a1", "b1"), ("a2", "b1"), ("a3", "b2")}
    # reduction ratio counts cross-source pairs only: 3 x 3 = 9 possible
    assert stats.row(0, named=True)["pairs"] == 3
    assert stats.row(0, named=True)["reduction_ratio"] == pytest.approx(1 - 3 / 9)


def test_link_and_dedupe_keeps_all_pairs(two_files: pl.DataFrame) -> None:
    pairs, _ = candidate_pairs(two_files, settings("link_and_dedupe", "file"))
    assert len(pairs_of(pairs)) == 4


def test_link_only_needs_the_source_column(two_files: pl.DataFrame) -> None:
    with pytest.raises(ConfigError, match="link_only"):
        prepare(two_files.drop("file"), settings("link_only", "file"))
    with pytest.raises(ValueError, match="without a source"):
        candidate_pairs(two_files.with_columns(pl.lit(None, pl.String).alias("file")), settings("link_only", "file"))
    with pytest.raises(Exception, match="source_column"):
        EntitySettings.model_validate({**settings().model_dump(), "link_type": "link_only",
                                       "source_column": "record_key"})


def test_random_pairs_cross_sources_only() -> None:
    source = pl.Series([0] * 50 + [1] * 50, dtype=pl.UInt32)
    left, right = _random_pairs(100, 10_000, 7, source)
    assert (source.gather(left) != source.gather(right)).all()
    assert 9_000 < left.len() < 11_000  # about the size asked for, despite half being filtered


def test_exact_first_u_across_sources() -> None:
    # A: x, x, y; B: x, y, z. Cross pairs 9; agreeing: (x,x) 2 + (y,y) 1 = 3.
    values = pl.Series(["x", "x", "y", "x", "y", "z"])
    source = pl.Series([0, 0, 0, 1, 1, 1], dtype=pl.UInt32)
    assert _exact_first_u(values, source) == pytest.approx(3 / 9)
    # within sources too: 15 pairs, agreeing x: 3, y: 1
    assert _exact_first_u(values) == pytest.approx(4 / 15)


def test_estimate_u_link_only_uses_cross_source_pairs(two_files: pl.DataFrame) -> None:
    s = EntitySettings.model_validate({
        **settings("link_only", "file").model_dump(),
        "comparisons": [{"name": "name", "column": "name", "levels": [{"kind": "exact"}]}],
        "estimation": {"u_sample_pairs": 1000},
    })
    u = estimate_u(two_files, s, seed=1)
    assert u["name"][0] == pytest.approx(3 / 9)
