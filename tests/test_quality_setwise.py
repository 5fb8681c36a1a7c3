"""Set-wise validation: many station batches through each suite in one Great Expectations run
(GxProject.validate_many, quality.service.validate_stations), with every batch's results, failing
rows, holds and tasks exactly what validating it alone gives.

GX is slow to import and to set up, so one GX project serves the frame-level tests.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from entity_resolution.entity_types import load_registry
from entity_resolution.standardise.id_numbers import id_check_char
from quality import service
from quality.config import QualityConfig
from quality.service import Outcome, parameters, validate_station, validate_stations
from quality.suites import RAW, ExpectationSpec, SuiteSpec, not_null, type_quality, unique
from quality.validate import GxProject, Validation, run_id_for
from scenario_network import NEW_HOME, Hub, network_with_csv_station
from warehouse import Warehouse
from warehouse.golden import events
from warehouse.quality import QualityStore

REGISTRY = load_registry()
PERSONS = type_quality(REGISTRY["person"]).standardised
ORGANISATIONS = type_quality(REGISTRY["organisation"]).standardised
DWELLINGS = type_quality(REGISTRY["dwelling"]).standardised

TODAY = dt.date(2026, 11, 26)
NOW = dt.datetime(2026, 11, 26, 8, tzinfo=dt.timezone.utc)
CONFIG = QualityConfig(data_docs=False)


@pytest.fixture(scope="module")
def gx(tmp_path_factory: pytest.TempPathFactory) -> GxProject:
    return GxProject(tmp_path_factory.mktemp("setwise"))


@pytest.fixture()
def gx_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The suite of every GX run from here on (ValidationDefinition.run, counted)."""
    from great_expectations.core.validation_definition import ValidationDefinition

    calls: list[str] = []
    run = ValidationDefinition.run

    def counted(self, *args, **kwargs):
        calls.append(self.name)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(ValidationDefinition, "run", counted)
    return calls


def options(suite: SuiteSpec, config: QualityConfig = CONFIG) -> dict:
    """What quality.service hands GX for a station batch of `suite`."""
    return {"parameters": parameters(config, TODAY), "samples": config.sample_rows,
            "thresholds": config.thresholds_of(suite), "min_failing_rows": config.min_failing_rows}


def assert_as_alone(gx: GxProject, batches: list[tuple[str, pl.DataFrame]], suite: SuiteSpec,
                    set_wise: list[Validation]) -> dict[str, Validation]:
    """Each batch's set-wise validation equals `validate` of the batch alone; label -> validation."""
    assert len(set_wise) == len(batches)
    for (label, frame), v in zip(batches, set_wise, strict=True):
        alone = gx.validate(frame, suite, label=label, **options(suite))
        assert_frame_equal(v.results, alone.results, check_exact=True)
        assert_frame_equal(v.failures, alone.failures, check_exact=True)
        assert (v.success, v.evaluated, v.successful) == (alone.success, alone.evaluated, alone.successful), label
        assert v.run_id == run_id_for(suite.name, label, v.started_at) and v.suite == suite
    return {label: v for (label, _), v in zip(batches, set_wise, strict=True)}


def result(v: Validation, expectation_id: str) -> dict:
    return v.results.filter(pl.col("expectation_id") == expectation_id).row(0, named=True)


def failing(v: Validation) -> dict[str, list[tuple[str, str | None]]]:
    return {e: list(zip(g["key"], g["value"], strict=True))
            for (e,), g in v.failures.group_by("expectation_id", maintain_order=True)}


# -- frames -------------------------------------------------------------------------------------
def person(station: str, key: str, **over) -> dict:
    base = {"record_key": f"{station}:{key}", "local_id": key, "name": "张伟", "sex": "M",
            "birth_date": dt.date(1990, 3, 7), "id_number": "110105199003070011", "area_code": "500103001001",
            "id_valid": True, "phone": "13812345678", "id_birth_date": dt.date(1990, 3, 7), "id_sex": "M",
            "id_issue": None}
    return {**base, **over}


PERSON_SCHEMA = {"record_key": pl.String, "local_id": pl.String, "name": pl.String, "sex": pl.String,
                 "birth_date": pl.Date, "id_number": pl.String, "area_code": pl.String, "id_valid": pl.Boolean,
                 "phone": pl.String, "id_birth_date": pl.Date, "id_sex": pl.String, "id_issue": pl.String}


def persons(*rows: dict, typed: bool = True) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=PERSON_SCHEMA if typed else None)


def person_batches() -> list[tuple[str, pl.DataFrame]]:
    """Batches of several stations with every kind of defect, and the edge cases of a split."""
    return [
        ("s1/residents/b0", persons(
            person("s1", "ok"), person("s1", "badid", id_valid=False, id_issue="check digit mismatch"),
            person("s1", "old", birth_date=dt.date(1850, 1, 1), id_birth_date=None),
            person("s1", "phone", phone="6812345"), person("s1", "dob", birth_date=dt.date(1990, 3, 8)),
            person("s1", "sex", sex="F"), person("s1", "noname", name=None), person("s1", "nophone", phone=None),
            person("s1", "dup1", local_id="dup"), person("s1", "dup2", local_id="dup"),
            person("s1", "shared"),
            person("s1", "noid", id_number=None, id_valid=None, id_birth_date=None, id_sex=None),
        )),
        # the same local ids as b0 ("shared", "dup" once): unique within this batch; built without
        # a schema, so its all-missing id_issue is a Null column
        ("s2/residents/b0", persons(person("s2", "shared"), person("s2", "x", local_id="dup"),
                                    person("s2", "y", phone=None), typed=False)),
        ("s2/residents/empty", persons()),
        ("s3/residents/b0", persons(person("s3", "blank", name=None, sex=None, birth_date=None, id_number=None,
                                           area_code=None, id_valid=None, phone=None, id_birth_date=None,
                                           id_sex=None))),  # empty-ish: one row, every value missing
        ("s3/residents/b1", persons(*(person("s3", f"p{i}", phone="6812345") for i in range(5)))),  # all fail
        ("s4/residents/b0", persons(person("s4", "bad", id_valid=False),  # 1 in 4: under min_failing_rows
                                    *(person("s4", f"ok{i}") for i in range(3)))),
        ("s4/residents/b1", persons(*(person("s4", f"r{i}", id_valid=i >= 3) for i in range(10)))),  # 3 in 10
        ("s5/residents/b0", persons(*(person("s5", f"d{i}", birth_date=None) for i in range(3)))),  # no pair kept
    ]


def organisation(station: str, key: str, **over) -> dict:
    base = {"record_key": f"{station}:{key}", "local_id": key, "name": "甲公司", "credit_code": "91500107MA5U6DY43K",
            "credit_code_valid": True, "legal_rep": "李", "phone": "13812345678", "area_code": "500107"}
    return {**base, **over}


def organisation_batches() -> list[tuple[str, pl.DataFrame]]:
    return [
        ("s1/orgs/b0", pl.DataFrame([
            organisation("s1", "U1"),
            organisation("s1", "U2", credit_code="91500107MA5U6DY43Y", credit_code_valid=False, legal_rep=None,
                         phone=None),
            organisation("s1", "U3", credit_code="9150OI07MA5U6DY43K", credit_code_valid=False),
            organisation("s1", "U4", local_id="U1", phone="023-1234"),
        ])),
        ("s2/orgs/b0", pl.DataFrame([organisation("s2", "U1"), organisation("s2", "U2", credit_code=None,
                                                                              credit_code_valid=None)])),
        ("s2/orgs/b1", pl.DataFrame([organisation("s2", "U9", area_code="5001")])),
        ("s3/orgs/b0", pl.DataFrame([organisation("s3", "U1")]).head(0)),
    ]


def dwelling(station: str, key: str, **over) -> dict:
    base = {"record_key": f"{station}:{key}", "local_id": key, "address": NEW_HOME, "addr_number": "88号",
            "owner_name": "王芳", "owner_id_number": "110105199003070011", "area_code": "500106001001",
            "owner_id_number_valid": True, "owner_phone": "13612345678", "owner_id_number_issue": None,
            "owner_id_number_upgraded": False}
    return {**base, **over}


def dwelling_batches() -> list[tuple[str, pl.DataFrame]]:
    schema = {"owner_id_number_issue": pl.String}
    return [
        ("s1/housing/b0", pl.DataFrame([
            dwelling("s1", "H1"), dwelling("s1", "H2", addr_number=None),
            dwelling("s1", "H3", owner_id_number_valid=False, owner_id_number_issue="bad check digit"),
            dwelling("s1", "H4", owner_phone="12345"), dwelling("s1", "H5", local_id="H1"),
        ], schema_overrides=schema)),
        ("s2/housing/b0", pl.DataFrame([dwelling("s2", "H1"), dwelling("s2", "H2", owner_name=None, area_code=None)],
                                       schema_overrides=schema)),
        ("s3/housing/b0", pl.DataFrame([dwelling("s3", f"H{i}", owner_id_number_valid=False) for i in range(4)],
                                       schema_overrides=schema)),
    ]


def raw(station: str, *rows: tuple[str | None, str | None]) -> pl.DataFrame:
    """Raw rows of a station: (local id, payload); record keys <station>:<local id>, "bad" for a
    local id "bad"."""
    return pl.DataFrame({
        "record_key": [f"{station}:{i}" if i != "bad" else "bad" for i, _ in rows] if rows else [],
        "local_id": [i for i, _ in rows], "row_hash": [f"h{n}" for n in range(len(rows))],
        "payload": [p for _, p in rows],
    }, schema={c: pl.String for c in ("record_key", "local_id", "row_hash", "payload")})


def raw_batches() -> list[tuple[str, pl.DataFrame]]:
    return [
        ("s1/residents/b0", raw("s1", ("1", '{"x": "1"}'), ("2", "{}"), ("2", '{"x": "3"}'), ("bad", '{"x": "4"}'),
                                ("5", None))),
        ("s2/residents/b0", raw("s2", ("1", '{"x": "1"}'), ("2", "{ }"), (None, '{"x": "2"}'))),
        ("s2/residents/b1", raw("s2")),
        ("s3/residents/b0", raw("s3", *((str(i), "{}") for i in range(6)))),
    ]


# -- the set gives what each batch alone gives ---------------------------------------------------
@pytest.mark.parametrize("suite, batches", [
    (RAW, raw_batches), (PERSONS, person_batches), (ORGANISATIONS, organisation_batches), (DWELLINGS, dwelling_batches),
], ids=["raw", "person", "organisation", "dwelling"])
def test_a_set_gives_each_batch_what_it_gets_alone_in_one_gx_run(gx: GxProject, gx_runs: list[str],
                                                                 suite: SuiteSpec, batches) -> None:
    frames = batches()
    set_wise = gx.validate_many(frames, suite, **options(suite))
    assert gx_runs == [suite.name]  # one GX run for the whole set
    got = assert_as_alone(gx, frames, suite, set_wise)
    assert len(gx_runs) == 1 + len(frames)
    # the set's runs follow the batches' order: the later batch of a station has the later run
    starts = [v.started_at for v in set_wise]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(v.finished_at >= v.started_at for v in set_wise)
    assert len({v.run_id for v in got.values()}) == len(frames)


def test_person_batches_keep_their_own_failures_pass_rates_and_tolerance(gx: GxProject, gx_runs: list[str]) -> None:
    frames = person_batches()
    got = {label: v for (label, _), v in zip(frames, gx.validate_many(frames, PERSONS, **options(PERSONS)),
                                              strict=True)}
    assert gx_runs == [PERSONS.name]
    mixed = got["s1/residents/b0"]
    assert failing(mixed) == {
        "completeness.name": [("s1:noname", None)],
        "completeness.id_number": [("s1:noid", None)],
        "validity.id_number": [("s1:badid", "False")],
        "validity.birth_date.plausible": [("s1:old", "1850-01-01")],
        "validity.phone": [("s1:phone", "6812345")],
        "consistency.birth_date": [("s1:dob", "1990-03-08 ≠ 1990-03-07")],
        "consistency.sex": [("s1:sex", "F ≠ M")],
        "uniqueness.local_id": [("s1:dup1", "dup"), ("s1:dup2", "dup")],  # shown without the batch scope
    }
    phone = result(mixed, "validity.phone")  # a missing phone is left out of the phone's pass rate
    assert (phone["element_count"], phone["unexpected_count"], phone["unexpected_percent"]) == (12, 1, 1 / 11 * 100)
    names = result(mixed, "completeness.name")  # ... but counts against completeness
    assert (names["unexpected_count"], names["unexpected_percent"]) == (1, 1 / 12 * 100)  # as GX works it out
    assert json.loads(result(mixed, "uniqueness.local_id")["sample_rows"]) == [
        {"record_key": "s1:dup1", "value": "dup"}, {"record_key": "s1:dup2", "value": "dup"}]
    # "shared" and "dup" again in another station's batch: no duplicates there
    other = got["s2/residents/b0"]
    assert other.failures.height == 0 and result(other, "uniqueness.local_id")["success"]
    empty = got["s2/residents/empty"]
    assert empty.success and result(empty, "completeness.name")["element_count"] == 0
    assert result(empty, "validity.phone")["unexpected_percent"] is None
    blank = got["s3/residents/b0"]  # every value missing: completeness fails, validity has nothing to judge
    assert {e for e in failing(blank)} == {f"completeness.{c}" for c in ("name", "sex", "birth_date", "id_number",
                                                                         "area_code")}
    assert result(blank, "validity.phone")["pass_rate"] == 1.0
    all_bad = result(got["s3/residents/b1"], "validity.phone")
    assert not all_bad["success"] and all_bad["pass_rate"] == 0.0 and not got["s3/residents/b1"].success
    tolerated = result(got["s4/residents/b0"], "validity.id_number")
    assert tolerated["success"] and json.loads(tolerated["observed_value"])["tolerated"].startswith(
        "fewer than min_failing_rows")
    three = result(got["s4/residents/b1"], "validity.id_number")
    assert not three["success"] and three["pass_rate"] == 0.7
    no_pair = result(got["s5/residents/b0"], "consistency.birth_date")  # no row with both dates: vacuously met
    assert no_pair["success"] and no_pair["unexpected_percent"] is None and no_pair["element_count"] == 3


def test_a_suite_that_cannot_be_split_is_validated_batch_by_batch(gx: GxProject, gx_runs: list[str]) -> None:
    """An aggregate expectation (the table's row count) is about the whole frame handed to GX, and
    an expectation that raises may raise on one batch only: each batch is validated alone."""
    rows = SuiteSpec("rows_records", "standardised", "any", (
        not_null("local_id", "a local id"),
        ExpectationSpec("completeness.rows", "ExpectTableRowCountToBeBetween", {"min_value": 2}, "completeness",
                        "at least two rows"),
    ))
    frames = [("a/1", raw("a", ("1", "{}"))), ("a/2", raw("a", ("1", "{}"), (None, "{}")))]
    got = assert_as_alone(gx, frames, rows, gx.validate_many(frames, rows, **options(rows)))
    assert gx_runs[:2] == [rows.name, rows.name]  # one run per batch, no set
    assert not result(got["a/1"], "completeness.rows")["success"] and result(got["a/2"], "completeness.rows")["success"]

    odd = SuiteSpec("odd_records", "standardised", "any", (
        not_null("local_id", "a local id"),
        ExpectationSpec("validity.n", "ExpectColumnValuesToBeBetween", {"column": "n", "min_value": 1}, "validity",
                        "n is at least 1"),  # text against a number: raises where a value is given
        unique("uniqueness.local_id", "local_id", "local ids are unique"),
    ))
    frames = [("b/1", pl.DataFrame({"record_key": ["b:1", "b:2"], "local_id": ["1", "2"], "n": [None, None]},
                                   schema_overrides={"n": pl.String})),
              ("b/2", pl.DataFrame({"record_key": ["b:3", "b:4"], "local_id": ["3", None], "n": ["x", "y"]}))]
    del gx_runs[:]
    got = assert_as_alone(gx, frames, odd, gx.validate_many(frames, odd, **options(odd)))
    assert gx_runs[:3] == [odd.name] * 3  # the set raised, then each batch alone
    assert result(got["b/1"], "validity.n")["success"]  # nothing to compare in b/1: no error there
    assert "error" in json.loads(result(got["b/2"], "validity.n")["observed_value"])


def test_data_pandas_would_type_differently_in_a_set_is_validated_batch_by_batch(gx: GxProject,
                                                                                gx_runs: list[str]) -> None:
    """An integer column with missing values in one batch only becomes float in pandas there
    (7 shown as 7.0): each batch alone. A unique column that is not text cannot be scoped."""
    counted = SuiteSpec("counted_records", "standardised", "any", (
        ExpectationSpec("validity.n", "ExpectColumnValuesToBeInSet", {"column": "n", "value_set": [1, 2]}, "validity",
                        "n is 1 or 2"),
    ))
    frames = [("c/1", pl.DataFrame({"record_key": ["c:1", "c:2"], "n": [7, 1]})),
              ("c/2", pl.DataFrame({"record_key": ["c:3", "c:4"], "n": [7, None]}))]
    got = assert_as_alone(gx, frames, counted, gx.validate_many(frames, counted, **options(counted)))
    assert len(gx_runs) == 4  # per batch: 2 here, 2 alone
    assert failing(got["c/1"]) == {"validity.n": [("c:1", "7")]}
    assert failing(got["c/2"]) == {"validity.n": [("c:3", "7.0")]}

    numbered = SuiteSpec("numbered_records", "standardised", "any", (unique("uniqueness.n", "n", "n is unique"),))
    frames = [("d/1", pl.DataFrame({"record_key": ["d:1", "d:2"], "n": [1, 1]})),
              ("d/2", pl.DataFrame({"record_key": ["d:3"], "n": [1]}))]
    del gx_runs[:]
    assert_as_alone(gx, frames, numbered, gx.validate_many(frames, numbered, **options(numbered)))
    assert len(gx_runs) == 4


def test_one_batch_or_none(gx: GxProject, gx_runs: list[str]) -> None:
    assert gx.validate_many([], RAW, **options(RAW)) == []
    assert gx_runs == []
    frames = raw_batches()[:1]
    assert_as_alone(gx, frames, RAW, gx.validate_many(frames, RAW, **options(RAW)))


# -- the service: validate_stations writes what validate_station per batch writes --------------------
STATIONS = ["s0001", "s0002", "s9001"]


def valid_id(body17: str) -> str:
    return body17 + pl.select(id_check_char(pl.lit(body17))).item()


def residents(ids: range, bad: set[int], *, dob_off: set[int] = frozenset()) -> list[dict]:
    """Residents of the test station: `bad` with a failing check digit, `dob_off` with a stated
    birth date a day off their ID's."""
    rows = []
    for i in ids:
        number = valid_id(f"50010619900307{i // 90}{i % 90 + 10:02d}")
        if i in bad:
            number = number[:17] + ("0" if number[17] != "0" else "1")
        rows.append({"local_id": f"L{i:03d}", "name": "张伟", "sex": "男" if i % 2 else "女",
                     "birth_date": "1990-03-08" if i in dob_off else "1990-03-07", "id_number": number,
                     "phone": f"136{i:08d}" if i % 7 else "6812345", "address": NEW_HOME, "area_code": "500106001001",
                     "source_updated_at": "2026-11-20 09:00:00"})
    return rows


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three stations ingested, nothing validated: two simulated ones (residents, organisations,
    housing) and s9001 with two drops (its second repeats local ids of its first; one holds)."""
    root = network_with_csv_station(tmp_path_factory.mktemp("setwise_net") / "net", stations=2, persons=40, seed=17)
    hub = Hub(root, f"sqlite:///{root / 'warehouse.sqlite'}")
    hub.drop(residents(range(12), bad={1}, dob_off={4}))
    for station in hub.stations.stations:
        hub.ingest(station)
    hub.drop(residents(range(6, 20), bad={8, 9, 10, 11, 12}))  # 5 of 14 invalid: held
    hub.ingest(next(s for s in hub.stations.stations if s.id == "s9001"))
    hub.store.dispose()  # its background checkpoints done before the folder is copied
    return root


def copy_of(base: Path, to: Path) -> tuple[QualityStore, GxProject]:
    shutil.copytree(base, to)
    return QualityStore(Warehouse(f"sqlite:///{to / 'warehouse.sqlite'}").migrate()), GxProject(to / "data" / "quality")


def written(store: QualityStore) -> dict[str, pl.DataFrame]:
    """What validation wrote, without run ids and clock times, in a stable order."""
    runs = store.runs()
    results = store.results(runs["run_id"].to_list()).join(runs.select("run_id", "suite", "batch_id"), on="run_id")
    clock = [c for c, t in store.tasks().schema.items() if isinstance(t, pl.Datetime)]
    outbox = events(store.store).filter(pl.col("entity_type") == "correction_task")
    return {
        "runs": runs.drop("run_id", "started_at", "finished_at").sort("suite", "batch_id"),
        "results": results.drop("run_id").sort("suite", "batch_id", "expectation_id"),
        "tasks": store.tasks().drop(clock).sort("task_id"),
        "holds": store.holds().drop("held_at").sort("batch_id"),
        "scores": store.scores().drop("computed_at").sort("station_id", "entity_type", "batch_id", "dimension"),
        "events": outbox.select("event_id", "entity_id", "op", "version").sort("event_id"),
    }


def test_validate_stations_writes_what_validating_each_batch_alone_writes(
        ingested: Path, tmp_path: Path, gx_runs: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    set_store, set_gx = copy_of(ingested, tmp_path / "set")
    pending = set_store.unvalidated_batches(None, STATIONS)
    assert set(pending["station_id"]) == set(STATIONS) and pending.height >= 8
    outcome = validate_stations(set_store, set_gx, CONFIG, STATIONS, now=NOW)
    suites = ["raw_records", *sorted({f"{t}_records" for t in pending["entity_type"]})]
    assert Counter(gx_runs) == Counter(suites)  # each suite through GX once for every station's batches

    # the reference: one station at a time, one batch per GX run (a set of one is `validate`)
    one_store, one_gx = copy_of(ingested, tmp_path / "one")
    monkeypatch.setattr(service, "SET_ROWS", 1)
    del gx_runs[:]
    alone = Outcome()
    for station in STATIONS:
        alone.absorb(validate_station(one_store, one_gx, CONFIG, station, now=NOW))
    assert len(gx_runs) == len(alone.runs) == len(outcome.runs) == 2 * pending.height  # raw + standardised

    got, want = written(set_store), written(one_store)
    for what in want:
        assert_frame_equal(got[what], want[what], check_exact=True, check_row_order=True)
    assert got["holds"].height >= 1 and got["tasks"].height >= 3 and got["events"].height == got["tasks"].height
    assert sorted(outcome.held, key=lambda h: h["batch_id"]) == sorted(alone.held, key=lambda h: h["batch_id"])
    assert (outcome.failures, outcome.tolerated) == (alone.failures, alone.tolerated)
    assert (outcome.tasks_opened, outcome.tasks_closed, outcome.events) == (
        alone.tasks_opened, alone.tasks_closed, alone.events)
    key = ("suite", "batch_id", "station_id", "entity_type", "success", "evaluated", "successful")
    assert sorted(tuple(r[k] for k in key) for r in outcome.runs) == sorted(
        tuple(r[k] for k in key) for r in alone.runs)


def test_validate_stations_writes_in_the_same_order_every_time(ingested: Path, tmp_path: Path) -> None:
    """Stations in the order given, each one's batches oldest first, suite by suite: two runs of
    the same drops write the same runs, holds and outbox events in the same order."""
    orders = []
    for name in ("first", "second"):
        store, gx = copy_of(ingested, tmp_path / name)
        outcome = validate_stations(store, gx, CONFIG, STATIONS, now=NOW)
        outbox = events(store.store).filter(pl.col("entity_type") == "correction_task").sort("seq")
        runs = store.runs()  # by start, then run id
        orders.append(([(r["suite"], r["batch_id"]) for r in outcome.runs], runs.select("suite", "batch_id").rows(),
                       [h["batch_id"] for h in outcome.held], outbox["event_id"].to_list()))
        arrived = store.batch_order().sort("started_at", "batch_id")["batch_id"].to_list()
    assert orders[0] == orders[1]
    by_outcome, by_start, _, _ = orders[0]
    assert by_start == by_outcome  # each batch's run starts after the one before it
    station_of = [b.split("/")[0] for s, b in by_outcome if s == "raw_records"]
    assert station_of == sorted(station_of, key=STATIONS.index)
    s9001 = [b for s, b in by_outcome if s == "person_records" and b.startswith("s9001/")]
    assert len(s9001) == 2 and s9001 == [b for b in arrived if b in s9001]  # oldest first


def test_samples_of_a_suite_without_complete_lists_are_its_first_failing_rows(gx: GxProject,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A golden suite (complete=False) keeps `samples` failing rows per expectation: GX is handed
    only those rows to look up (quality.validate._bound_partial_indices), and what comes back is
    the same as from GX's full list: the count of every failing row, and the first rows as samples,
    in frame order; a complete run still lists every one."""
    import quality.validate as validate

    suite = SuiteSpec("sampled_records", "golden", "any", (
        ExpectationSpec("validity.n", "ExpectColumnValuesToBeBetween", {"column": "n", "min_value": 0}, "validity",
                        "n is not negative"),
    ), key_column="entity_id")
    frame = pl.DataFrame({"entity_id": [f"P{i:05d}" for i in range(3000)],
                          "n": [-i if i % 3 else i for i in range(3000)]})
    failing = [f"P{i:05d}" for i in range(3000) if i % 3]
    listed: list[int] = []  # the failing rows handed over to be listed, per expectation and run
    by_name = validate._rows_by_name

    def counted(frame, *args, **kwargs):
        listed.append(len(frame))
        return by_name(frame, *args, **kwargs)

    monkeypatch.setattr(validate, "_rows_by_name", counted)
    sampled = gx.validate(frame, suite, label="sampled", parameters={}, samples=7, complete=False)
    complete = gx.validate(frame, suite, label="complete", parameters={}, samples=7, complete=True)
    # the sampled run listed 7 failing rows, not 2,000; the complete run every one
    assert listed == [7, len(failing)]
    row = result(sampled, "validity.n")
    assert row["unexpected_count"] == len(failing) == result(complete, "validity.n")["unexpected_count"]
    assert sampled.failures["key"].to_list() == failing[:7]
    assert complete.failures["key"].to_list() == failing


def test_gx_stores_samples_of_the_failing_rows_and_the_caller_gets_them_all(tmp_path: Path) -> None:
    """GX's stored copy of a COMPLETE result (for Data Docs) keeps the samples and the counts, not
    every failing row; the Validation enteronce works from still has every one."""
    gx = GxProject(tmp_path / "gx")
    frame = persons(*(person("s1", f"p{i}", phone="6812345") for i in range(30)), person("s1", "ok"))
    v = gx.validate_many([("s1/residents/many", frame)], PERSONS, **{**options(PERSONS), "samples": 5})[0]
    assert len(failing(v)["validity.phone"]) == 30
    assert result(v, "validity.phone")["unexpected_count"] == 30
    stored = [json.loads(p.read_text(encoding="utf-8")) for p in (tmp_path / "gx").rglob("validations/**/*.json")]
    phone = [r["result"] for d in stored for r in d["results"]
             if r["expectation_config"]["type"] == "expect_column_values_to_match_regex"
             and r["result"].get("unexpected_count") == 30]
    assert len(phone) == 1, stored
    assert len(phone[0]["unexpected_index_list"]) == len(phone[0]["partial_unexpected_list"]) == 5
    assert len(phone[0]["unexpected_list"]) == 5 and "unexpected_index_query" not in phone[0]
    # a second run through the same store is trimmed as well, and the first result object was left whole
    v2 = gx.validate_many([("s1/residents/again", frame)], PERSONS, **{**options(PERSONS), "samples": 5})[0]
    assert len(failing(v2)["validity.phone"]) == 30


def test_failing_rows_by_name_are_what_gx_lists_cell_by_cell() -> None:
    """`_rows_by_name` reads a COMPLETE result's failing rows column-wise: the same keys in the same
    order and the same values as text (GX's own loop gives numpy scalars, this plain Python ones)."""
    import math

    import numpy as np
    import pandas as pd
    from great_expectations.expectations.metrics import util

    from quality.validate import _rows_by_name

    frame = pd.DataFrame({
        "phone": ["1", None, "x", np.nan], "n": [1, 2, 3, 4], "f": [1.5, np.nan, 2.0, 3.0], "b": [True, False, True, False],
        "d": [dt.date(2020, 1, 1), None, dt.date(2021, 2, 3), pd.NaT], "name": ["张三", "", "李四", "王五"],
        "ts": pd.to_datetime(["2020-01-01", None, "2021-01-01 10:00", "2022-01-01"], format="mixed"),
        "record_key": ["s1:a", "s1:b", "s1:c", "s1:d"], "__batch": [0, 0, 1, 1]}).iloc[[0, 1, 3]]
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": ["record_key", "__batch"]}

    def text(row: dict) -> list[tuple[str, str]]:
        return [(k, "nan" if isinstance(v, float) and math.isnan(v) else str(v)) for k, v in row.items()]

    for domain in (["phone"], ["n", "f"], ["b", "d", "ts"], ["record_key"], ["name", "phone"]):
        gx_rows = util.compute_unexpected_pandas_indices(frame, domain, result_format, None,
                                                         {"table.columns": list(frame.columns)})
        assert [text(r) for r in _rows_by_name(frame, domain, result_format)] == [text(r) for r in gx_rows], domain
    # GX's other paths are left to GX
    assert _rows_by_name(frame.set_index("record_key"), ["phone"], result_format) is None
    assert _rows_by_name(frame, ["phone"], {**result_format, "exclude_unexpected_values": True}) is None
    assert _rows_by_name(frame, ["phone"], {"result_format": "COMPLETE"}) is None
