"""The shared synthetic fixtures (tests/fixtures): deterministic from the seed, and filed under
the entity type the caller names, else the registry's first type, never a name written into them."""

from __future__ import annotations

import polars as pl
import pytest

from core.entity_types import load_entity_types
from fixtures import default_entity_type
from fixtures.feed_outbox import Outbox, bulk_outbox, bulk_tasks, person
from fixtures.report_warehouse import synthetic_network

JURISDICTIONS = {"s0001": ["500103001"], "s0002": ["500103002", "500104001"]}


def test_the_default_type_is_the_registrys_first() -> None:
    assert default_entity_type().name == load_entity_types().names[0]


def _types(frames: dict[str, pl.DataFrame]) -> set[str]:
    return {v for name, f in frames.items() if "entity_type" in f.columns and name != "change_events"
            for v in f["entity_type"].unique()}


@pytest.mark.parametrize("name", [None, "organisation"])
def test_report_warehouse_takes_the_callers_type(name: str | None) -> None:
    etype = load_entity_types().get(name) if name else default_entity_type()
    rows = synthetic_network(3, 2, records_per_station=12, seed=4, entity_type=name)
    assert _types(rows) == {etype.name}
    assert set(rows["validation_runs"]["suite"]) == {f"{etype.name}_raw", f"{etype.name}_standardised"}
    assert rows["entities"]["entity_id"].str.starts_with(etype.id_prefix).all()
    assert rows["entity_membership"].height == 3 * 12
    # same seed, same warehouse; another seed, another one
    again = synthetic_network(3, 2, records_per_station=12, seed=4, entity_type=name)
    assert all(rows[k].equals(again[k]) for k in rows)
    assert not rows["station_scores"].equals(synthetic_network(3, 2, records_per_station=12, seed=5,
                                                                entity_type=name)["station_scores"])


@pytest.mark.parametrize("name", [None, "organisation"])
def test_bulk_outbox_takes_the_callers_type(name: str | None) -> None:
    etype = load_entity_types().get(name) if name else default_entity_type()
    frames = bulk_tasks(bulk_outbox(JURISDICTIONS, events=200, entity_type=name), tasks=20, entity_type=name)
    events = frames["change_events"]
    assert events["seq"].to_list() == list(range(1, events.height + 1))
    assert set(events["entity_type"]) == {etype.name, "correction_task"}
    assert _types({k: v for k, v in frames.items() if k != "change_events"}) == {etype.name}
    assert frames["golden_records"]["entity_id"].str.starts_with(etype.id_prefix).all()
    assert frames["golden_records"].height == frames["entity_membership"].height == 200 - int(200 * 0.35)
    tasks = events.filter(pl.col("entity_type") == "correction_task")
    assert tasks["after"].str.json_path_match("$.record_entity_type").unique().to_list() == [etype.name]


def test_outbox_files_records_under_its_type_unless_told_otherwise() -> None:
    out = Outbox(entity_type="organisation")
    out.create("O1", person("张三", "500103001001"), ["s0001:1"])
    out.create("P1", person("李四", "500103001002"), ["s0001:2"], entity_type=default_entity_type().name)
    out.correction_task("t1", "s0001", "s0001:1", "phone", "1", "2", entity_id="O1")
    frames = out.frames()
    assert dict(frames["golden_records"].select("entity_id", "entity_type").iter_rows()) == {
        "O1": "organisation", "P1": default_entity_type().name}
    assert frames["correction_tasks"]["entity_type"].to_list() == ["organisation"]
    assert Outbox().entity_type == default_entity_type().name
