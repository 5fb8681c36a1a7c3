"""Supervision of the work (工作实时监督): how stations work through their correction tasks.

Pure Polars over the correction-task frame (task_id, station_id, status, opened_at, closed_at,
optionally reminded_at), with `now` passed in, so every figure is tested as a number:

- per station: tasks opened, closed, open now, overdue (open longer than the SLA,
  `tasks_sla_days` in quality.yaml), the median time to close, the oldest open task;
- a network ranking of stations by overdue, then open tasks;
- the trend by ISO week (tasks opened and closed per week), per station and for the network;
- which overdue tasks are due a reminder in the station's feed (never reminded, or last reminded
  longer than the SLA ago).

A task is overdue when `now` is past its `due_at` = opened_at + SLA (open exactly the SLA is not
overdue yet). A reopened task counts from its reopening (apply_tasks resets opened_at).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

UTC = pl.Datetime("us", "UTC")
DAY_US = 86_400_000_000.0
TASKS_SCHEMA = {"task_id": pl.String, "station_id": pl.String, "status": pl.String, "opened_at": UTC,
                "closed_at": UTC, "reminded_at": UTC}
SUMMARY_SCHEMA = {"station_id": pl.String, "opened": pl.Int64, "closed": pl.Int64, "open": pl.Int64,
                  "overdue": pl.Int64, "median_close_days": pl.Float64, "oldest_open_days": pl.Float64}
TREND_SCHEMA = {"station_id": pl.String, "week": pl.String, "week_start": pl.Date, "opened": pl.Int64,
                "closed": pl.Int64}
COUNTS = ("opened", "closed", "open", "overdue")


def _sla(sla_days: float) -> dt.timedelta:
    if not sla_days or sla_days <= 0:
        raise ValueError(f"tasks_sla_days must be positive, got {sla_days!r}")
    return dt.timedelta(days=float(sla_days))


def _now(now: dt.datetime) -> pl.Expr:
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    return pl.lit(now.astimezone(dt.timezone.utc), UTC)


def normalise(tasks: pl.DataFrame) -> pl.DataFrame:
    """The columns the figures read, in their types (a missing optional column as nulls); times
    as UTC."""
    if tasks.height == 0:
        return pl.DataFrame(schema=TASKS_SCHEMA)
    cols = []
    for name, dtype in TASKS_SCHEMA.items():
        if name not in tasks.columns:
            cols.append(pl.lit(None, dtype).alias(name))
        elif isinstance(dtype, pl.Datetime) and isinstance(tasks.schema[name], pl.Datetime) \
                and tasks.schema[name].time_zone is None:
            cols.append(pl.col(name).dt.replace_time_zone("UTC").cast(dtype))
        else:
            cols.append(pl.col(name).cast(dtype))
    return tasks.select(cols)


def with_due(tasks: pl.DataFrame, now: dt.datetime, sla_days: float) -> pl.DataFrame:
    """Every task with `due_at` (opened_at + SLA), `days_open` (whole days open so far, for an
    open task; to its close for a closed one) and `overdue` (open and past due)."""
    frame = normalise(tasks)
    end = pl.when(pl.col("status") == "open").then(_now(now)).otherwise(pl.col("closed_at"))
    return frame.with_columns(
        (pl.col("opened_at") + pl.lit(_sla(sla_days))).alias("due_at"),
        ((end - pl.col("opened_at")).dt.total_microseconds() / DAY_US).alias("_days"),
    ).with_columns(
        pl.col("_days").floor().cast(pl.Int64).alias("days_open"),
        ((pl.col("status") == "open") & (_now(now) > pl.col("due_at"))).fill_null(False).alias("overdue"),
    )


def overdue_tasks(tasks: pl.DataFrame, now: dt.datetime, sla_days: float) -> pl.DataFrame:
    """The open tasks past their due time, oldest first."""
    return (with_due(tasks, now, sla_days).filter(pl.col("overdue")).drop("_days")
            .sort("opened_at", "task_id"))


def reminders_due(tasks: pl.DataFrame, now: dt.datetime, sla_days: float) -> pl.DataFrame:
    """Overdue open tasks that should get a reminder in their station's feed now: never reminded
    since they (re)opened, or last reminded longer than the SLA ago. A pass within the SLA after
    a reminder sends none; one after it sends the next."""
    late = overdue_tasks(tasks, now, sla_days)
    return late.filter(pl.col("reminded_at").is_null()
                       | (_now(now) > pl.col("reminded_at") + pl.lit(_sla(sla_days))))


def station_summary(tasks: pl.DataFrame, now: dt.datetime, sla_days: float,
                    stations: list[str] | None = None) -> pl.DataFrame:
    """One row per station (those with tasks, plus `stations` with zeros): tasks opened (every
    task it was given), closed, open now, overdue, the median days a closed task took, the days
    the oldest open task has waited (SUMMARY_SCHEMA), by station id."""
    frame = with_due(tasks, now, sla_days)
    is_open, is_closed = pl.col("status") == "open", pl.col("status") == "closed"
    out = frame.group_by("station_id").agg(
        pl.len().cast(pl.Int64).alias("opened"),
        is_closed.sum().cast(pl.Int64).alias("closed"),
        is_open.sum().cast(pl.Int64).alias("open"),
        pl.col("overdue").sum().cast(pl.Int64).alias("overdue"),
        pl.col("_days").filter(is_closed).median().alias("median_close_days"),
        pl.col("_days").filter(is_open).max().alias("oldest_open_days"),
    )
    if stations:
        extra = pl.DataFrame({"station_id": stations}, schema={"station_id": pl.String})
        out = extra.join(out, on="station_id", how="full", coalesce=True)
    return (out.with_columns(pl.col(c).fill_null(0) for c in COUNTS)
            .select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA).sort("station_id"))


def ranking(summary: pl.DataFrame) -> pl.DataFrame:
    """Stations ranked for supervision: most overdue tasks first, then most open, then the oldest
    open task; `rank` 1 is the station most behind (ties share a rank: same overdue and open)."""
    ranked = summary.sort(["overdue", "open", "oldest_open_days", "station_id"],
                          descending=[True, True, True, False], nulls_last=True)
    key = pl.struct(-pl.col("overdue"), -pl.col("open"))
    return ranked.with_columns(key.rank("min").cast(pl.Int64).alias("rank")).select("rank", *summary.columns)


def network_totals(summary: pl.DataFrame, tasks: pl.DataFrame | None = None) -> dict:
    """The network's figures: tasks opened, closed, open, overdue, stations with overdue tasks, and
    the median days to close over every closed task (from `tasks`, when given; not a median of
    medians)."""
    total = {c: int(summary[c].sum()) if summary.height else 0 for c in COUNTS}
    total["stations"] = summary.height
    total["stations_overdue"] = int((summary["overdue"] > 0).sum()) if summary.height else 0
    median = None
    if tasks is not None and tasks.height:
        frame = normalise(tasks).filter(pl.col("status") == "closed")
        if frame.height:
            median = frame.select(((pl.col("closed_at") - pl.col("opened_at")).dt.total_microseconds()
                                   / DAY_US).median()).item()
    total["median_close_days"] = median
    return total


def _week(col: str) -> pl.Expr:
    return pl.col(col).dt.convert_time_zone("UTC").dt.date().dt.truncate("1w")  # Monday of the ISO week


def weekly_trend(tasks: pl.DataFrame, now: dt.datetime | None = None, *, by_station: bool = True,
                 weeks: int | None = None) -> pl.DataFrame:
    """Tasks opened and closed per ISO week (label `2026-W48`, `week_start` its Monday), per
    station (or for the network: station_id null), every week from the first task's to `now`'s
    (or the last event's) with zeros where nothing happened; `weeks` keeps only the latest ones."""
    frame = normalise(tasks)
    opened = frame.select("station_id", _week("opened_at").alias("week_start")).drop_nulls("week_start")
    closed = frame.filter(pl.col("status") == "closed").select(
        "station_id", _week("closed_at").alias("week_start")).drop_nulls("week_start")
    if opened.height == 0 and closed.height == 0:
        return pl.DataFrame(schema=TREND_SCHEMA)
    if not by_station:
        opened = opened.with_columns(pl.lit(None, pl.String).alias("station_id"))
        closed = closed.with_columns(pl.lit(None, pl.String).alias("station_id"))
    first = min(d for d in (opened["week_start"].min(), closed["week_start"].min()) if d is not None)
    last = max(d for d in (opened["week_start"].max(), closed["week_start"].max()) if d is not None)
    if now is not None:
        last = max(last, now.astimezone(dt.timezone.utc).date() - dt.timedelta(days=now.astimezone(
            dt.timezone.utc).weekday()))
    if weeks is not None:
        first = max(first, last - dt.timedelta(weeks=max(weeks, 1) - 1))
    grid = pl.DataFrame({"week_start": pl.date_range(first, last, "1w", eager=True)})
    stations = pl.concat([opened.select("station_id"), closed.select("station_id")]).unique()
    grid = stations.join(grid, how="cross")
    counts = (grid.join(opened.group_by("station_id", "week_start").agg(pl.len().alias("opened")),
                        on=["station_id", "week_start"], how="left", nulls_equal=True)
              .join(closed.group_by("station_id", "week_start").agg(pl.len().alias("closed")),
                    on=["station_id", "week_start"], how="left", nulls_equal=True))
    return (counts.with_columns(pl.col("opened", "closed").fill_null(0).cast(pl.Int64),
                                pl.col("week_start").dt.strftime("%G-W%V").alias("week"))
            .select(list(TREND_SCHEMA)).sort("station_id", "week_start", nulls_last=True))


def markdown_table(ranked: pl.DataFrame, top: int = 10) -> str:
    """The top stations of `ranking` as a Markdown table (Dagster metadata)."""
    rows = ranked.filter((pl.col("overdue") > 0) | (pl.col("open") > 0)).head(top)
    lines = ["| rank | station | overdue | open | opened | closed | median days to close | oldest open (days) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows.iter_rows(named=True):
        med = "—" if r["median_close_days"] is None else f"{r['median_close_days']:.1f}"
        old = "—" if r["oldest_open_days"] is None else f"{r['oldest_open_days']:.1f}"
        lines.append(f"| {r['rank']} | {r['station_id']} | {r['overdue']} | {r['open']} | {r['opened']} | "
                     f"{r['closed']} | {med} | {old} |")
    if not rows.height:
        lines.append("| — | no open tasks | 0 | 0 | | | | |")
    return "\n".join(lines)
