"""Holds are loud (issue 12), on SQLite and PostgreSQL: a station's batch over
`max_invalid_id_rate` is held with its measured rate and threshold; `enteronce run` says so (station,
batch, rate against threshold, records held back, how to release) and the report's overview lists
it; its records stay out of golden records; `enteronce holds --release` then `enteronce run`
publishes them and exits 0. And the crash that followed a release: correction-task events whose
`before` is empty in the first rows and text for a reopened task, past Polars' schema inference.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from scenario_network import NEW_HOME, network_with_csv_station, write_drop
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.project import Project
from quality.corrections import CANDIDATE_SCHEMA, task_id
from quality.service import apply_tasks
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.golden import events
from warehouse.quality import QualityStore, event_frame

NOW = dt.datetime(2026, 11, 26, 8, tzinfo=dt.UTC)
THRESHOLD = 0.4


def valid_id(body17: str) -> str:
    from entity_resolution.standardise.id_numbers import id_check_char

    return body17 + pl.select(id_check_char(pl.lit(body17))).item()


def bad_check_digit(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


def row(local_id: str, **values) -> dict:
    return {"local_id": local_id, "source_updated_at": "2026-11-20 09:00:00", "address": NEW_HOME,
            "area_code": "500106001001", **values}


# -- the crash after a release --------------------------------------------------------------------
def candidate(record: str) -> dict:
    return {"task_id": task_id("s1", record, "id_number", "expectation:validity.id_number"), "station_id": "s1",
            "record_key": record, "entity_type": "person", "entity_id": None, "field": "id_number",
            "station_value": "123", "expected_value": None, "reason": "ID number fails its check digit",
            "source": "expectation", "opened_batch": "s1/residents/b1"}


def opened(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=CANDIDATE_SCHEMA).with_columns(opened_at=pl.lit(NOW))


def closing(*ids: str) -> pl.DataFrame:
    return pl.DataFrame({"task_id": list(ids), "closed_at": [NOW] * len(ids), "closed_batch": ["s1/residents/b2"] * len(ids)},
                        schema={"task_id": pl.String, "closed_at": pl.Datetime("us", "UTC"), "closed_batch": pl.String})


def test_reopened_tasks_after_many_new_ones_do_not_crash_apply_tasks(warehouse_url: str) -> None:
    qs = QualityStore(Warehouse(warehouse_url).migrate())
    back = candidate("s1:back")
    assert apply_tasks(qs, opened([back]), closing())[0] == 1
    assert apply_tasks(qs, opened([]), closing(back["task_id"]))[0] == 1  # closed: its next event has a `before`
    fresh = [candidate(f"s1:{i}") for i in range(150)]  # beyond Polars' infer_schema_length (100)
    # what apply_tasks used to build: `before` null in the first 150 rows, text in the last
    naive = [{"before": None, "seq": i} for i in range(150)] + [{"before": '{"status": "closed"}', "seq": 150}]
    with pytest.raises(pl.exceptions.ComputeError, match="infer_schema_length"):
        pl.DataFrame(naive)
    assert event_frame(naive)["before"][-1] == '{"status": "closed"}'

    written, last = apply_tasks(qs, opened([*fresh, back]), closing())
    assert written == 151 and last == 153
    with qs.engine.connect() as conn:
        reopened = conn.execute(s.change_events.select().where(s.change_events.c.seq == last)).mappings().one()
    assert reopened["op"] == "update" and reopened["entity_id"] == back["task_id"]
    assert '"status": "closed"' in reopened["before"] and '"status": "open"' in reopened["after"]


# -- hold -> release -> run, through the CLI ------------------------------------------------------
@pytest.fixture(scope="module")
def base_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return network_with_csv_station(tmp_path_factory.mktemp("holdnet"), stations=1, persons=150, seed=11)


def project_with_bad_batch(base: Path, tmp_path: Path) -> tuple[Path, set[str]]:
    """The network plus s9001's export: three of four ID numbers fail their check digit (75 %
    invalid, over max_invalid_id_rate 40 %)."""
    root = tmp_path / "proj"
    shutil.copytree(base, root)
    (root / "quality.yaml").write_text(yaml.safe_dump({"max_invalid_id_rate": THRESHOLD, "data_docs": False}),
                                       encoding="utf-8")
    bad = [row(f"H{i}", name=n, sex="女", birth_date="1990-01-01",
               id_number=bad_check_digit(valid_id(f"5001061990010100{i}")), phone=f"1360000444{i}")
           for i, n in enumerate(["甲乙", "丙丁", "戊己"])]
    write_drop(root, "s9001", [*bad, row("H9", name="庚辛", sex="男", birth_date="1975-08-11",
                                         id_number=valid_id("50010619750811003"), phone="13500009999")])
    return root, {f"s9001:H{i}" for i in (0, 1, 2, 9)}


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_hold_is_loud_then_release_and_run_publishes(base_network: Path, tmp_path: Path, warehouse_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENTERONCE_WAREHOUSE_URL", raising=False)
    root, keys = project_with_bad_batch(base_network, tmp_path)
    where = ["--config", str(root), "--warehouse", warehouse_url]

    code, out = run_cli("run", *where)
    assert code == 1, out  # a held batch fails its station's `publishable` check
    store = Warehouse(warehouse_url)
    qs = QualityStore(store)
    held = qs.held()
    assert held.height == 1
    hold = held.row(0, named=True)
    batch = hold["batch_id"]
    assert hold["station_id"] == "s9001" and hold["entity_type"] == "person" and hold["records"] == 4
    assert hold["rate"] == pytest.approx(0.75) and hold["threshold"] == pytest.approx(THRESHOLD)
    # the summary names the station, the batch, the rate against the threshold, the records and the way out
    line = next(x for x in out.splitlines() if batch in x and "held" in x and "station s9001" in x)
    assert "rate 75.0% > threshold 40.0%" in line and "4 records held back" in line, out
    assert "1 held batch(es)" in out and "enteronce holds --release BATCH" in out
    assert re.search(r"4 records \(\d+\.\d% of [\d,]+ records\) are not resolved or published", out), out
    # ... and none of its records reached resolution or golden records
    rs = store.resolution_store("person", "person_records")
    assert not keys & set(rs.membership()["record_key"])
    published = events(store, after=0).filter(pl.col("entity_type") == "person")
    assert not keys & {src["record_key"] for srcs in published["sources"] for src in srcs}
    # the report's overview lists the hold with its figures
    index = (Project.load(root, warehouse_url).data_dir / "report" / "index.html").read_text(encoding="utf-8")
    section = index[index.index('id="held"'):]
    section = section[:section.index("</section>")]
    assert "s9001" in section and batch in section and "75.0 %" in section and "40.0 %" in section
    assert re.search(r'<td class="n">4</td>', section)

    # `enteronce evaluate` counts the held records apart from quarantined rows and other entity types
    truth = root / "truth.csv"
    truth.write_text(truth.read_text(encoding="utf-8").rstrip("\n") + "\n"
                     + "".join(f"{k},PHELD{n}\n" for n, k in enumerate(sorted(keys))), encoding="utf-8")
    code, out = run_cli("evaluate", "--truth", str(truth), *where)
    assert code == 0, out
    assert re.search(r"= 4 held back by quality \(`enteronce holds`\) \+ [\d,]+ of other entity types \+ "
                     r"[\d,]+ quarantined or never loaded", out), out
    assert "4 person records in held batches are not scored" in out

    code, out = run_cli("holds", "--release", batch, *where)
    assert code == 0 and f"released {batch}" in out
    code, out = run_cli("run", *where)
    assert code == 0, out
    assert "Stations" in out and "reconciled" in out and "held batch" not in out
    assert keys <= set(rs.membership()["record_key"])
    assert qs.held().height == 0 and qs.holds()["released_at"][0] is not None
    published = events(store, after=0).filter(pl.col("entity_type") == "person")
    sources = {src["record_key"] for srcs in published["sources"] for src in srcs}
    assert keys <= sources  # published: golden records and change events name them
    # a further run changes nothing and still succeeds
    code, out = run_cli("run", *where)
    assert code == 0, out


def test_a_failing_step_still_prints_the_summary(base_network: Path, tmp_path: Path, warehouse_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails inside a run (here the quality pass, as apply_tasks did), `enteronce run`
    says what failed, prints the summary of what the warehouse holds, holds included, and exits 1."""
    monkeypatch.delenv("ENTERONCE_WAREHOUSE_URL", raising=False)
    root, _ = project_with_bad_batch(base_network, tmp_path)

    def boom(*args, **kwargs):
        raise pl.exceptions.ComputeError("could not append value: \"x\" of type: str to the builder; "
                                         "consider increasing `infer_schema_length`")

    monkeypatch.setattr("pipelines.quality_assets.quality_pass", boom)
    code, out = run_cli("run", "--config", str(root), "--warehouse", warehouse_url)
    assert code == 1, out
    assert "error:" in out and "infer_schema_length" in out and "data_quality" in out
    assert "Stations" in out and "reconciled" in out
    assert "1 held batch(es)" in out and "rate 75.0% > threshold 40.0%" in out
    assert "Traceback" not in out
