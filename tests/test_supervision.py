"""Supervision of the work (工作实时监督): the figures per station and for the network (pure, with a
fixed `now`), their store query on SQLite and PostgreSQL, overdue reminders through the stations'
feeds under the same policy as any task event (scope, fields, masking, audit, mirror), the report's
Supervision page, the Dagster metadata and `enteronce supervision --json`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from test_feeds_tasks import (
    COMM,
    DOC,
    EXPECTED,
    ID_BAD,
    SUBS,
    T_B,
    T_ID,
    T_ORG,
    T_P3,
    TASK,
    golden,
    tasks,
)
from typer.testing import CliRunner

from core.errors import ConfigError
from feeds.api import BackgroundServer, create_app
from feeds.mirror import pull
from feeds.service import FeedService
from fixtures.feed_outbox import Outbox
from quality import supervision as sv
from quality.config import parse_quality
from quality.report import build_report, station_file
from quality.service import send_reminders
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.bulk import insert_frame
from warehouse.feeds import FeedStore
from warehouse.mirror import MirrorStore
from warehouse.quality import QualityStore
from warehouse.reports import read_report_frames

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday, ISO week 2026-W49
DAY = dt.timedelta(days=1)


def frame(rows: list[tuple]) -> pl.DataFrame:
    """(task_id, station_id, status, opened days ago, closed days ago | None)."""
    return pl.DataFrame(
        [{"task_id": t, "station_id": sid, "status": st, "opened_at": NOW - o * DAY,
          "closed_at": None if c is None else NOW - c * DAY} for t, sid, st, o, c in rows],
        schema={"task_id": pl.String, "station_id": pl.String, "status": pl.String,
                "opened_at": pl.Datetime("us", "UTC"), "closed_at": pl.Datetime("us", "UTC")})


TASKS = frame([
    ("a1", "sA", "open", 14, None),  # exactly the SLA: not overdue yet
    ("a2", "sA", "open", 14.001, None),  # just past it
    ("a3", "sA", "closed", 20, 18),  # 2 days to close
    ("a4", "sA", "closed", 10, 6),  # 4 days
    ("a5", "sA", "closed", 9, 0),  # 9 days
    ("b1", "sB", "open", 30, None),
    ("b2", "sB", "open", 40, None),
    ("c1", "sC", "open", 1, None),
    ("c2", "sC", "open", 2, None),
    ("c3", "sC", "open", 3, None),
])


# -- the figures ------------------------------------------------------------------------------------
def test_overdue_is_strictly_past_the_sla() -> None:
    late = sv.overdue_tasks(TASKS, NOW, 14)
    assert late["task_id"].to_list() == ["b2", "b1", "a2"]  # oldest first; a1 (exactly 14 days) is not
    a2 = late.row(2, named=True)
    assert a2["due_at"] == NOW - 0.001 * DAY and a2["days_open"] == 14 and a2["overdue"]
    assert sv.overdue_tasks(TASKS, NOW, 13.999)["task_id"].to_list() == ["b2", "b1", "a2", "a1"]
    assert sv.overdue_tasks(TASKS, NOW, 41).height == 0
    closed_long = frame([("x", "sX", "closed", 100, 1)])  # closed tasks are never overdue
    assert sv.overdue_tasks(closed_long, NOW, 14).height == 0
    with pytest.raises(ValueError, match="tasks_sla_days"):
        sv.overdue_tasks(TASKS, NOW, 0)


def test_station_summary_counts_and_median_time_to_close() -> None:
    summary = sv.station_summary(TASKS, NOW, 14, stations=["sA", "sB", "sC", "sD"])
    rows = {r["station_id"]: r for r in summary.iter_rows(named=True)}
    assert {k: rows["sA"][k] for k in ("opened", "closed", "open", "overdue")} == {
        "opened": 5, "closed": 3, "open": 2, "overdue": 1}
    assert rows["sA"]["median_close_days"] == pytest.approx(4.0)  # of 2, 4 and 9 days
    assert rows["sA"]["oldest_open_days"] == pytest.approx(14.001)
    assert (rows["sB"]["overdue"], rows["sB"]["open"], rows["sB"]["median_close_days"]) == (2, 2, None)
    assert (rows["sC"]["overdue"], rows["sC"]["open"]) == (0, 3)
    assert {k: rows["sD"][k] for k in ("opened", "closed", "open", "overdue")} == dict.fromkeys(
        ("opened", "closed", "open", "overdue"), 0)  # a station without tasks has zeros, not nulls
    totals = sv.network_totals(summary, TASKS)
    assert totals == {"opened": 10, "closed": 3, "open": 7, "overdue": 3, "stations": 4, "stations_overdue": 2,
                      "median_close_days": pytest.approx(4.0)}


def test_ranking_by_overdue_then_open() -> None:
    ranked = sv.ranking(sv.station_summary(TASKS, NOW, 14, stations=["sD"]))
    assert ranked.select("rank", "station_id").rows() == [(1, "sB"), (2, "sA"), (3, "sC"), (4, "sD")]
    # sC has more open tasks than sA, but none overdue: overdue ranks first
    ties = sv.ranking(sv.station_summary(frame([("x", "s1", "open", 1, None), ("y", "s2", "open", 2, None)]),
                                         NOW, 14))
    assert ties.select("rank", "station_id").rows() == [(1, "s2"), (1, "s1")]  # same figures, same rank
    md = sv.markdown_table(ranked, top=2)
    assert md.splitlines()[2].startswith("| 1 | sB | 2 | 2 |") and len(md.splitlines()) == 4


def test_weekly_trend_by_iso_week_with_empty_weeks() -> None:
    trend = sv.weekly_trend(TASKS, NOW, by_station=False)
    assert trend["week"].to_list() == ["2026-W43", "2026-W44", "2026-W45", "2026-W46", "2026-W47", "2026-W48",
                                       "2026-W49"]
    assert trend["week_start"][0] == dt.date(2026, 10, 19)  # a Monday
    weeks = {r["week"]: (r["opened"], r["closed"]) for r in trend.iter_rows(named=True)}
    # opened 40 days before NOW (Fri 23 Oct: W43), 30 (Mon 2 Nov: W45), 20 (W46), 14, 14.001 and 10
    # (Wed 18 to Sun 22 Nov: W47), 9 and 3 (Mon 23 to Sun 29 Nov: W48), 2 and 1 (W49, from Mon 30 Nov);
    # closed 18 days before (Sat 14 Nov: W46), 6 (W48), 0 (W49); W44 had nothing
    assert weeks == {"2026-W43": (1, 0), "2026-W44": (0, 0), "2026-W45": (1, 0), "2026-W46": (1, 1),
                     "2026-W47": (3, 0), "2026-W48": (2, 1), "2026-W49": (2, 1)}
    assert trend["opened"].sum() == TASKS.height and trend["closed"].sum() == 3
    per_station = sv.weekly_trend(TASKS, NOW, weeks=2)
    assert set(per_station["week"]) == {"2026-W48", "2026-W49"}
    assert per_station.filter(pl.col("station_id") == "sC")["opened"].to_list() == [1, 2]
    assert sv.weekly_trend(TASKS.clear(), NOW).height == 0


def test_reminders_due_once_per_sla() -> None:
    reminded = TASKS.with_columns(pl.when(pl.col("task_id") == "b1").then(pl.lit(NOW - 3 * DAY))
                                  .when(pl.col("task_id") == "b2").then(pl.lit(NOW - 15 * DAY))
                                  .otherwise(None).alias("reminded_at"))
    # b1 was reminded 3 days ago (within the SLA): not again; b2 15 days ago: again; a2 never: now
    assert sorted(sv.reminders_due(reminded, NOW, 14)["task_id"]) == ["a2", "b2"]


def test_sla_is_configured_and_validated() -> None:
    assert parse_quality({}).tasks_sla_days == 14
    assert parse_quality({"tasks_sla_days": 7}).tasks_sla_days == 7
    for bad in (0, -1, "soon"):
        with pytest.raises(ConfigError, match="tasks_sla_days"):
            parse_quality({"tasks_sla_days": bad}, source="quality.yaml")


# -- the store ---------------------------------------------------------------------------------------
def task_rows(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.with_columns(
        pl.lit("k").alias("record_key"), pl.lit("person").alias("entity_type"), pl.lit("phone").alias("field"),
        pl.lit("phone differs").alias("reason"), pl.lit("golden_disagreement").alias("source"),
        pl.lit("b/1").alias("opened_batch"),
    ).with_columns(pl.concat_str("station_id", pl.lit(":"), "task_id").alias("record_key"))


def test_store_query_reads_every_task(warehouse_url: str) -> None:
    store = Warehouse(warehouse_url).migrate()
    with store.transaction() as conn:
        insert_frame(conn, s.correction_tasks, task_rows(TASKS))
    got = QualityStore(store).supervision_tasks()
    assert got.columns == ["task_id", "station_id", "status", "opened_at", "closed_at", "reminded_at"]
    assert got.height == TASKS.height and got["reminded_at"].null_count() == TASKS.height
    assert got.sort("task_id")["opened_at"].to_list() == TASKS.sort("task_id")["opened_at"].to_list()
    assert sv.station_summary(got, NOW, 14).equals(sv.station_summary(TASKS, NOW, 14))
    assert set(QualityStore(store).supervision_tasks(["sB"])["task_id"]) == {"b1", "b2"}
    store.dispose()


def test_tasks_another_task_took_over_are_not_the_stations_work(warehouse_url: str) -> None:
    """A check's task closed because a golden-record task on the same field took its place was not
    closed by the station: it counts neither as closed nor in the time to close, here or in the report."""
    store = Warehouse(warehouse_url).migrate()
    rows = task_rows(TASKS)
    closed = rows.filter(pl.col("status") == "closed")["task_id"].to_list()
    rows = rows.with_columns(pl.when(pl.col("task_id") == closed[0]).then(pl.lit("superseded:abc"))
                             .otherwise(pl.lit(None, pl.String)).alias("closed_batch"))
    with store.transaction() as conn:
        insert_frame(conn, s.correction_tasks, rows)
    got = QualityStore(store).supervision_tasks()
    assert closed[0] not in got["task_id"].to_list() and got.height == TASKS.height - 1
    assert read_report_frames(store)["task_times"].height == TASKS.height - 1
    store.dispose()


# -- reminders through the feeds -------------------------------------------------------------------
OPENED = dt.datetime(2026, 11, 26, 8, tzinfo=UTC)  # fixtures.feed_outbox's task times (plus seconds)
CONFIG = parse_quality({"tasks_sla_days": 14})


@pytest.fixture()
def network(warehouse_url: str):
    store = Warehouse(warehouse_url).migrate()
    out = Outbox()
    golden(out)
    tasks(out)
    out.correction_task(T_P3, "sA", "sA:3", "phone", "13700000000", "13700000001", entity_id="P3",
                        area_code="500106001001", status="closed")  # closed: never reminded
    out.flush(FeedStore(store))
    yield store, out
    store.dispose()


def test_an_overdue_task_gets_one_reminder_per_sla(network) -> None:
    store, _ = network
    qs = QualityStore(store)
    assert send_reminders(qs, CONFIG, now=OPENED + 14 * DAY) == 0  # not past due yet
    first = store.max_event_seq()
    at = OPENED + 15 * DAY
    assert send_reminders(qs, CONFIG, now=at) == 5  # the open ones: T_ID, T_PHONE, T_P2, T_ORG, T_B
    ev = FeedStore(store).events(first).filter(pl.col("entity_type") == TASK)
    assert ev["seq"].to_list() == list(range(first + 1, first + 6))  # gap-free, after the outbox's last
    assert set(ev["op"]) == {"update"} and set(ev["version"]) == {2}  # the task's next version
    after = {e: json.loads(a) for e, a in zip(ev["entity_id"], ev["after"], strict=True)}
    assert T_P3 not in after
    t = after[T_ID]
    assert (t["overdue"], t["status"], t["days_open"], t["station_value"]) == (True, "open", 14, ID_BAD)
    assert t["due_at"].startswith("2026-12-10T08:00") and t["area_code"] == COMM  # routed like the task
    assert json.loads(ev["changed_fields"][0]) == ["overdue", "due_at", "days_open"]
    rows = qs.supervision_tasks()
    assert rows.filter(pl.col("status") == "open")["reminded_at"].to_list() == [at] * 5
    assert rows.filter(pl.col("task_id") == T_P3)["reminded_at"].to_list() == [None]

    for later in (at + DAY, at + 14 * DAY):  # passes within the SLA after the reminder: nothing more
        assert send_reminders(qs, CONFIG, now=later) == 0
    assert store.max_event_seq() == first + 5
    assert send_reminders(qs, CONFIG, now=at + 14.5 * DAY) == 5  # past it again: the next reminder
    assert set(FeedStore(store).events(first + 5)["version"]) == {3}


def test_reminders_pass_the_feed_policy_and_are_audited(network, tmp_path: Path) -> None:
    store, _ = network
    svc = FeedService(store, SUBS)
    first = store.max_event_seq()
    send_reminders(QualityStore(store), CONFIG, now=OPENED + 15 * DAY)
    got = {}
    for sid in EXPECTED:
        events = svc.events(sid, after=first, limit=100, channel="api", token_id=f"tok-{sid}").events
        got[sid] = {e["entity_id"]: e for e in events}
        # to whom the task goes, as any task event: scope, entity types, station; closed T_P3 not at all
        assert set(got[sid]) == EXPECTED[sid] - {T_P3}, sid
    sa_ = got["sA"][T_ID]["after"]
    assert (sa_["overdue"], sa_["days_open"], sa_["station_value"]) == (True, 14, "500103********1235")  # masked
    assert sa_["due_at"].startswith("2026-12-10") and "area_code" not in sa_ and "reminded_at" not in sa_
    assert "station_value" not in got["sA"][T_ORG]["after"]  # credit_code hidden by the officer's role
    assert got["registry"][T_ID]["after"]["station_value"] == ID_BAD  # the registrar sees ID numbers in full
    assert set(got["sB"]) == {T_B} and got["sB"][T_B]["after"]["overdue"] is True
    assert got["sA"][T_ID]["changed_fields"] == ["overdue", "due_at", "days_open"]
    log = FeedStore(store).deliveries().filter(pl.col("kind") == "events")
    fields = {r["subscriber_id"]: json.loads(r["fields"]) for r in log.iter_rows(named=True)}
    assert fields["sA"] == {"id_number": "masked", "phone": "masked", "name_norm": "full"}
    assert fields["registry"]["id_number"] == "full" and fields["sB"] == {"birth_date": "full"}
    assert "sA-plain" not in fields  # takes no tasks: nothing delivered, nothing logged
    ids = set(json.loads(log.filter(pl.col("subscriber_id") == "sA")["entity_ids"][0]))
    assert {T_ID, "P1"} <= ids  # the task and the entity it is about

    # a new subscriber's snapshot carries the open tasks' latest state: overdue
    snap = {r["entity_id"]: r for r in svc.snapshot("sA", after_entity=None, limit=100, channel="api").records
            if r["entity_type"] == TASK}
    assert snap[T_ID]["record"]["overdue"] is True and snap[T_ID]["version"] == 2


def test_the_station_mirror_keeps_the_reminded_state(network, tmp_path: Path) -> None:
    from feeds.tokens import issue_token

    store, out = network
    (tmp_path / "subscriptions.yaml").write_text(yaml.safe_dump(DOC, allow_unicode=True), encoding="utf-8")
    token = issue_token(store, "sA", "desk").token
    mirror = tmp_path / "mirror-sA.sqlite"
    with BackgroundServer(create_app(store.url, tmp_path)) as url:
        pull(mirror, url, "sA", token, page=3)
        send_reminders(QualityStore(store), CONFIG, now=OPENED + 15 * DAY)
        second = pull(mirror, url, "sA", token, page=3)
        assert second.tasks_changed == 4  # T_ID, T_PHONE, T_P2, T_ORG (T_P3 is closed, T_B is sB's)
        m = MirrorStore(mirror)
        held = {t["task_id"]: t for t in m.tasks()}
        assert held[T_ID]["version"] == 2 and held[T_ID]["status"] == "open"
        assert held[T_ID]["task"]["overdue"] is True and held[T_ID]["task"]["days_open"] == 14
        assert held[T_ID]["station_value"] == "500103********1235"
        # the station fixes the record: the task closes, and the mirror keeps that latest state
        out.seq = store.max_event_seq()
        out.correction_task(T_ID, "sA", "sA:1", "id_number", ID_BAD, None, entity_id="P1", area_code=COMM,
                            source="expectation", reason="ID number fails its check digit", status="closed")
        out.flush(FeedStore(store))
        pull(mirror, url, "sA", token, page=3)
        closed = {t["task_id"]: t for t in m.tasks()}[T_ID]
        assert closed["status"] == "closed" and closed["task"]["overdue"] is None  # the latest state
        m.dispose()


# -- the report, Dagster, the CLI ----------------------------------------------------------------------
def report_store(tmp_path: Path, *, now: dt.datetime = NOW) -> Warehouse:
    """The stations and TASKS, placed as they are to NOW relative to `now`."""
    shift = now - NOW
    tasks = TASKS.with_columns(pl.col("opened_at") + shift, pl.col("closed_at") + shift)
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    with store.transaction() as conn:
        conn.execute(s.stations.insert(), [{"station_id": sid, "name": name, "jurisdiction": [], "updated_at": NOW}
                                           for sid, name in (("sA", "解放碑派出所"), ("sB", "朝天门派出所"),
                                                             ("sC", "<b>石油路</b>"), ("sD", "无任务站"))])
        insert_frame(conn, s.correction_tasks, task_rows(tasks))
    return store


def test_report_supervision_page(tmp_path: Path) -> None:
    store = report_store(tmp_path)
    out = tmp_path / "site"
    summary = build_report(out, now=NOW, sla_days=14, **read_report_frames(store))
    assert summary.overdue_tasks == 3
    page = (out / "supervision.html").read_text(encoding="utf-8")
    text = " ".join(page.split())
    assert "Supervision of the work" in text and "longer than 14 days" in text
    assert "<b>3</b><span>overdue tasks, at 2 stations</span>" in text
    assert "<b>4.0 d</b><span>median time to close</span>" in text
    assert 'id="chart-weekly-tasks"' in page and "2026-W49" in page
    rows = page.split('<table class="ranking supervision">')[1]
    assert rows.index("朝天门派出所") < rows.index("解放碑派出所") < rows.index("&lt;b&gt;石油路&lt;/b&gt;")
    assert "无任务站" not in rows and "1 stations have had no task" in text
    assert 'href="supervision.html"' in (out / "index.html").read_text(encoding="utf-8")
    index = " ".join((out / "index.html").read_text(encoding="utf-8").split())
    assert "<b>3</b><span>overdue tasks (open over 14 days) at 2 stations</span>" in index
    station = " ".join((out / "stations" / station_file("sB")).read_text(encoding="utf-8").split())
    assert "2 overdue" in station and "rank 1 in the" in station and "2026-W44" in station
    # another SLA, other figures
    assert build_report(tmp_path / "site2", now=NOW, sla_days=35, **read_report_frames(store)).overdue_tasks == 1
    store.dispose()


def test_dagster_metadata_has_totals_and_top_stations() -> None:
    from pipelines.quality_assets import supervision_metadata

    meta = supervision_metadata(TASKS, 14, 2, now=NOW)
    assert (meta["overdue_tasks"], meta["stations_with_overdue_tasks"], meta["overdue_reminders_sent"]) == (3, 2, 2)
    assert (meta["tasks_opened_total"], meta["tasks_closed_total"]) == (10, 3)
    assert meta["median_days_to_close"].value == 4.0
    table = meta["stations_by_overdue_tasks"].md_str.splitlines()
    assert table[2].startswith("| 1 | sB | 2 | 2 |") and table[3].startswith("| 2 | sA | 1 | 2 |")


def test_cli_supervision_json(tmp_path: Path) -> None:
    from pipelines.cli import app

    # the CLI reads the real clock: the tasks are placed relative to it (fixed ones crossed the
    # SLA one after another as the days passed, and the ranking changed with the date)
    store = report_store(tmp_path, now=dt.datetime.now(UTC))
    config = tmp_path / "project"
    config.mkdir()
    (config / "stations.yaml").write_text(
        "version: 1\nstations:\n  - id: sA\n    name: 解放碑派出所\n    jurisdiction: ['500103001']\n"
        "    sources:\n      - {name: residents, entity: person, kind: csv, path: r.csv, columns: {id: local_id}}\n",
        encoding="utf-8")
    (config / "quality.yaml").write_text("tasks_sla_days: 7\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["supervision", "--json", "--config", str(config), "--warehouse", store.url])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["sla_days"] == 7 and doc["totals"]["open"] == 7 and doc["totals"]["closed"] == 3
    # every task was opened days before now: at least those past 7 days are overdue
    assert doc["totals"]["overdue"] >= 4
    assert [r["station_id"] for r in doc["stations"]][:2] == ["sB", "sA"]
    assert doc["stations"][0]["rank"] == 1 and doc["weeks"][-1]["week"].startswith("20")
    plain = CliRunner().invoke(app, ["supervision", "--sla-days", "10000", "--config", str(config),
                                     "--warehouse", store.url])
    assert plain.exit_code == 0, plain.output
    lines = plain.output.splitlines()
    assert lines[0].split("\t")[:3] == ["rank", "station", "overdue"]  # piped: tab-separated, every station
    assert sum(1 for line in lines if line.split("\t")[1:2] in (["sA"], ["sB"], ["sC"])) == 3
    assert lines[-1].startswith("overdue (open over 10000 days): 0 at 0 stations")
    store.dispose()
