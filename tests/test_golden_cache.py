"""The golden suite's decoded records kept between runs (quality.golden_cache), on SQLite and
PostgreSQL: after drops that create, change and merge entities, the kept frame equals a full read
and decode of the active golden records, only touched entities are read again, and a cache that
cannot be trusted (of another warehouse, ahead of this one, of other fields) is rebuilt."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from entity_resolution.entity_types import load_registry
from quality.config import QualityConfig
from quality.frames import decode_golden
from quality.golden_cache import current_golden
from quality.service import validate_golden
from test_quality_pipeline import ID_A, ID_C, Network, row
from scenario_network import network_with_csv_station

PERSON = load_registry()["person"]


@pytest.fixture(scope="module")
def base_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return network_with_csv_station(tmp_path_factory.mktemp("gcnet"), stations=1, persons=120, seed=11)


class Counting:
    """The quality store, counting the golden records each keyed read hands over (None: a full read)."""

    def __init__(self, store):
        self.store, self.reads = store, []

    def active_golden(self, entity_type, entity_ids):
        frame = self.store.active_golden(entity_type, entity_ids)
        self.reads.append(None if entity_ids is None else frame.height)
        return frame

    def active_golden_parts(self, entity_type):
        self.reads.append(None)
        return self.store.active_golden_parts(entity_type)

    def __getattr__(self, name):
        return getattr(self.store, name)


def full(net: Network) -> pl.DataFrame:
    return decode_golden(pl.concat(net.qs.active_golden_parts("person")), PERSON.golden_fields, PERSON).sort("entity_id")


def test_the_kept_golden_frame_follows_every_change(base_network: Path, tmp_path: Path, warehouse_url: str) -> None:
    root = tmp_path / "net"
    shutil.copytree(base_network, root)
    net = Network(root, warehouse_url, QualityConfig(max_invalid_id_rate=0.5, data_docs=False))
    net.drop([])
    net.cycle()  # the quality pass runs the golden suite: the cache is made by a full read
    folder = net.gx.root / "golden"
    assert (folder / "person.parquet").is_file()
    assert_frame_equal(pl.read_parquet(folder / "person.parquet"), full(net))

    # new people, one of them twice (a merge of two records into one entity), and a changed phone
    a = row("A1", name="司马青青", sex="女", birth_date="1992-05-17", id_number=ID_A, phone="13600003333")
    c1 = row("C1", name="诸葛明", sex="男", birth_date="1975-08-11", id_number=ID_C, phone="13500001111")
    net.drop([a, c1])
    net.cycle()
    a2 = {**a, "phone": "13600004444", "source_updated_at": "2026-11-22 09:00:00"}
    c2 = row("C2", name="诸葛明", sex="男", birth_date="1975-08-11", id_number=ID_C, phone="13500001111")
    net.drop([a2, c2])
    for st in net.stations.stations:
        net.ingest(st)
    net.resolve_and_publish()  # no quality pass: the cache is behind

    counting = Counting(net.qs)
    kept = current_golden(counting, folder, PERSON)
    assert_frame_equal(kept, full(net))
    assert counting.reads and None not in counting.reads, "only the touched entities are read"
    assert 0 < sum(counting.reads) < kept.height
    assert kept.filter(pl.col("id_number") == ID_A)["phone"].to_list() == ["13600004444"]
    assert kept.filter(pl.col("id_number") == ID_C).height == 1

    # nothing new: nothing read
    counting.reads.clear()
    assert_frame_equal(current_golden(counting, folder, PERSON), kept)
    assert counting.reads == []

    # the golden suite's results are those of a full read
    cached_run = validate_golden(net.qs, net.gx, net.quality, "person").runs[0]
    shutil.rmtree(folder)
    fresh_run = validate_golden(net.qs, net.gx, net.quality, "person").runs[0]
    keep = ["expectation_id", "success", "element_count", "unexpected_count", "sample_rows"]
    assert_frame_equal(net.qs.results([cached_run["run_id"]]).select(keep).sort("expectation_id"),
                       net.qs.results([fresh_run["run_id"]]).select(keep).sort("expectation_id"))


def test_a_cache_that_cannot_be_trusted_is_rebuilt(base_network: Path, tmp_path: Path, warehouse_url: str) -> None:
    root = tmp_path / "net"
    shutil.copytree(base_network, root)
    net = Network(root, warehouse_url, QualityConfig(data_docs=False))
    net.drop([])
    net.cycle()
    folder = net.gx.root / "golden"
    path = folder / "person.parquet"
    truth = full(net)
    meta = pl.read_parquet_metadata(path)
    keep = {k: v for k, v in meta.items() if not k.startswith("ARROW")}

    def rewritten(frame: pl.DataFrame, **changes: str) -> list:
        frame.write_parquet(path, metadata={**keep, **changes})
        counting = Counting(net.qs)
        assert_frame_equal(current_golden(counting, folder, PERSON), truth)
        return counting.reads

    # another warehouse's (a database made anew under the same URL, its events already past the marks)
    assert rewritten(truth.slice(1), warehouse_id="0" * 32) == [None]
    # ahead of the warehouse (a restored database)
    assert rewritten(truth, event_seq=str(int(meta["event_seq"]) + 1000)) == [None]
    # made for other golden fields, or by another format, or not Parquet at all
    assert rewritten(truth.drop("phone"), fields='["name_norm"]') == [None]
    assert rewritten(truth, format="0") == [None]
    path.write_bytes(b"not parquet")
    counting = Counting(net.qs)
    assert_frame_equal(current_golden(counting, folder, PERSON), truth)
    assert counting.reads == [None]
    # and the rebuilt file is trusted again
    counting = Counting(net.qs)
    current_golden(counting, folder, PERSON)
    assert counting.reads == []
