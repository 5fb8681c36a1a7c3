"""The read queries behind the auditors' report (quality/report), each one SQL statement over the
whole network returning a Polars frame.

Why one statement per frame: the report covers 943 stations, and a query per station would cost
943 round trips per page kind; here every aggregate (latest run per station and suite, task counts,
cluster sizes, judged precision, deliveries per subscriber) is computed by the database with GROUP BY
and window functions, and the report partitions the frames once in Polars.

The quality tables (migration 0006) and the feeds' audit log (0004) are written by other parts of the
hub and may be empty (or, in a warehouse not yet migrated to head, missing): a missing table reads
as an empty frame with the same schema, so the report says "nothing yet" instead of failing.
"""

from __future__ import annotations

import polars as pl
import sqlalchemy as sa

from warehouse import schema as s
from warehouse.bulk import read_frame
from warehouse.quality import not_superseded
from warehouse.store import Warehouse

UTC = pl.Datetime("us", "UTC")

# How many correction tasks per station and status the station page lists (counts cover all).
TASKS_LISTED = 100
# How many deliveries the access page lists.
RECENT_DELIVERIES = 100

validation_runs = s.validation_runs
validation_results = s.validation_results
station_scores = s.station_scores
correction_tasks = s.correction_tasks
batch_holds = s.batch_holds
feed_deliveries = s.feed_deliveries

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "stations": {"station_id": pl.String, "name": pl.String, "batches": pl.Int64, "rows_read": pl.Int64,
                 "rows_loaded": pl.Int64, "rows_quarantined": pl.Int64, "last_batch_at": UTC},
    "scores": {"station_id": pl.String, "entity_type": pl.String, "batch_id": pl.String, "dimension": pl.String,
               "score": pl.Float64, "computed_at": UTC, "batch_at": UTC},
    "runs": {"run_id": pl.String, "suite": pl.String, "data_asset": pl.String, "entity_type": pl.String,
             "station_id": pl.String, "batch_id": pl.String, "success": pl.Boolean, "evaluated": pl.Int64,
             "successful": pl.Int64, "started_at": UTC, "finished_at": UTC, "data_docs_path": pl.String},
    "failures": {"run_id": pl.String, "station_id": pl.String, "suite": pl.String, "data_asset": pl.String,
                 "entity_type": pl.String, "batch_id": pl.String, "expectation_id": pl.String,
                 "expectation_type": pl.String, "column_name": pl.String, "dimension": pl.String,
                 "element_count": pl.Int64, "unexpected_count": pl.Int64, "unexpected_percent": pl.Float64,
                 "observed_value": pl.String, "sample_rows": pl.String},
    "tasks": {"task_id": pl.String, "station_id": pl.String, "record_key": pl.String, "entity_type": pl.String,
              "entity_id": pl.String, "field": pl.String, "station_value": pl.String, "expected_value": pl.String,
              "reason": pl.String, "source": pl.String, "status": pl.String, "opened_at": UTC,
              "opened_batch": pl.String, "closed_at": UTC, "closed_batch": pl.String},
    "task_times": {"station_id": pl.String, "status": pl.String, "opened_at": UTC, "closed_at": UTC},
    "holds": {"batch_id": pl.String, "station_id": pl.String, "entity_type": pl.String, "reason": pl.String,
              "rate": pl.Float64, "threshold": pl.Float64, "records": pl.Int64, "held_at": UTC,
              "released_at": UTC},
    "linkage": {"entity_type": pl.String, "records": pl.Int64, "entities_active": pl.Int64,
                "entities_retired": pl.Int64, "match_pairs": pl.Int64, "review_pairs": pl.Int64,
                "pending_reviews": pl.Int64, "refused_pairs": pl.Int64},
    "refused": {"entity_type": pl.String, "left_id": pl.String, "right_id": pl.String,
                "match_probability": pl.Float64, "review_reason": pl.String},
    "cluster_sizes": {"entity_type": pl.String, "size": pl.Int64, "entities": pl.Int64},
    "judged": {"entity_type": pl.String, "decision": pl.String, "verdict": pl.String, "pairs": pl.Int64},
    "subscribers": {"subscriber_id": pl.String, "channel": pl.String, "deliveries": pl.Int64, "events": pl.Int64,
                    "entities": pl.Int64, "first_at": UTC, "last_at": UTC},
    "field_policies": {"fields": pl.String, "deliveries": pl.Int64, "entities": pl.Int64},
    "recent_deliveries": {"delivery_id": pl.Int64, "subscriber_id": pl.String, "token_id": pl.String,
                          "channel": pl.String, "kind": pl.String, "seq_from": pl.Int64, "seq_to": pl.Int64,
                          "event_count": pl.Int64, "entity_count": pl.Int64, "fields": pl.String,
                          "delivered_at": UTC},
}


def empty(name: str) -> pl.DataFrame:
    """The frame a missing table reads as."""
    return pl.DataFrame(schema=SCHEMAS[name])


def _read(conn: sa.Connection, name: str, stmt: sa.Select) -> pl.DataFrame:
    """SQLite hands back naive UTC timestamps, PostgreSQL aware ones: Polars reads both as UTC."""
    return read_frame(conn, stmt, schema=SCHEMAS[name])


def read_report_frames(store: Warehouse) -> dict[str, pl.DataFrame]:
    """Everything quality.report.build_report draws, keyed as its keyword arguments."""
    present = set(sa.inspect(store.engine).get_table_names())
    with store.engine.connect() as conn:
        frames = {
            "stations": _stations(conn),
            "linkage": _linkage(conn),
            "refused": _refused(conn),
            "cluster_sizes": _cluster_sizes(conn),
            "judged": _judged(conn),
        }
        quality = {"validation_runs", "validation_results", "station_scores", "correction_tasks", "batch_holds"}
        frames["scores"] = _scores(conn) if "station_scores" in present else empty("scores")
        if {"validation_runs", "validation_results"} <= present:
            frames["runs"], frames["failures"] = _latest_runs(conn), _failures(conn)
        else:
            frames["runs"], frames["failures"] = empty("runs"), empty("failures")
        if "correction_tasks" in present:
            frames["tasks"], frames["task_times"] = _tasks(conn), _task_times(conn)
        else:
            frames["tasks"], frames["task_times"] = empty("tasks"), empty("task_times")
        frames["holds"] = (_holds(conn, [t for t in store.record_tables.values() if t.name in present])
                           if "batch_holds" in present else empty("holds"))
        if "feed_deliveries" in present:
            frames["subscribers"] = _subscribers(conn)
            frames["field_policies"] = _field_policies(conn)
            frames["recent_deliveries"] = _recent_deliveries(conn)
        else:
            for name in ("subscribers", "field_policies", "recent_deliveries"):
                frames[name] = empty(name)
    frames["available"] = pl.DataFrame({
        "table": sorted(quality | {"feed_deliveries"}),
        "present": [t in present for t in sorted(quality | {"feed_deliveries"})],
    })
    return frames


# -- stations and batches -----------------------------------------------------------------------
def _stations(conn: sa.Connection) -> pl.DataFrame:
    st, b = s.stations, s.batches
    loaded = b.c.status == "loaded"
    stmt = (
        sa.select(
            st.c.station_id, st.c.name,
            sa.func.count(b.c.batch_id).label("batches"),
            sa.func.coalesce(sa.func.sum(b.c.rows_read), 0).label("rows_read"),
            sa.func.coalesce(sa.func.sum(sa.case((loaded, b.c.rows_loaded), else_=0)), 0).label("rows_loaded"),
            sa.func.coalesce(sa.func.sum(b.c.rows_quarantined), 0).label("rows_quarantined"),
            sa.func.max(b.c.started_at).label("last_batch_at"),
        )
        .select_from(st.outerjoin(b, b.c.station_id == st.c.station_id))
        .group_by(st.c.station_id, st.c.name)
        .order_by(st.c.station_id)
    )
    return _read(conn, "stations", stmt)


def _scores(conn: sa.Connection) -> pl.DataFrame:
    sc, b = station_scores, s.batches
    stmt = (
        sa.select(sc.c.station_id, sc.c.entity_type, sc.c.batch_id, sc.c.dimension, sc.c.score, sc.c.computed_at,
                  b.c.started_at.label("batch_at"))
        .select_from(sc.outerjoin(b, b.c.batch_id == sc.c.batch_id))
        .order_by(sc.c.station_id, sc.c.entity_type, sc.c.computed_at, sc.c.batch_id, sc.c.dimension)
    )
    return _read(conn, "scores", stmt)


# -- validation ---------------------------------------------------------------------------------
def _latest_run_ids() -> sa.Subquery:
    """The latest run per (station, suite, data asset, entity type): what the report shows as current."""
    r = validation_runs
    rank = sa.func.row_number().over(
        partition_by=(r.c.station_id, r.c.suite, r.c.data_asset, r.c.entity_type),
        order_by=(r.c.started_at.desc(), r.c.run_id.desc()),
    )
    ranked = sa.select(r.c.run_id, rank.label("rn")).subquery("ranked")
    return sa.select(ranked.c.run_id).where(ranked.c.rn == 1).subquery("latest")


def _latest_runs(conn: sa.Connection) -> pl.DataFrame:
    r, latest = validation_runs, _latest_run_ids()
    stmt = (sa.select(r.c.run_id, r.c.suite, r.c.data_asset, r.c.entity_type, r.c.station_id, r.c.batch_id,
                      r.c.success, r.c.evaluated, r.c.successful, r.c.started_at, r.c.finished_at,
                      r.c.data_docs_path)
            .join(latest, latest.c.run_id == r.c.run_id)
            .order_by(r.c.station_id, r.c.data_asset, r.c.entity_type, r.c.suite))
    return _read(conn, "runs", stmt)


def _failures(conn: sa.Connection) -> pl.DataFrame:
    """Failed expectations of the latest runs, with the station's sample rows."""
    r, v, latest = validation_runs, validation_results, _latest_run_ids()
    stmt = (sa.select(v.c.run_id, r.c.station_id, r.c.suite, r.c.data_asset, r.c.entity_type, r.c.batch_id,
                      v.c.expectation_id, v.c.expectation_type, v.c.column_name, v.c.dimension, v.c.element_count,
                      v.c.unexpected_count, v.c.unexpected_percent, v.c.observed_value, v.c.sample_rows)
            .join(r, r.c.run_id == v.c.run_id)
            .join(latest, latest.c.run_id == v.c.run_id)
            .where(v.c.success.is_(False))
            .order_by(r.c.station_id, v.c.unexpected_percent.desc(), v.c.expectation_id))
    return _read(conn, "failures", stmt)


# -- correction tasks and holds -------------------------------------------------------------------
def _tasks(conn: sa.Connection) -> pl.DataFrame:
    """The newest TASKS_LISTED tasks per station and status (the page lists these)."""
    t = correction_tasks
    rank = sa.func.row_number().over(partition_by=(t.c.station_id, t.c.status),
                                     order_by=(t.c.opened_at.desc(), t.c.task_id))
    ranked = sa.select(*t.c, rank.label("rn")).subquery("ranked")
    stmt = (sa.select(*[ranked.c[c] for c in SCHEMAS["tasks"]]).where(ranked.c.rn <= TASKS_LISTED)
            .order_by(ranked.c.station_id, ranked.c.status.desc(), ranked.c.opened_at.desc()))
    return _read(conn, "tasks", stmt)


def _task_times(conn: sa.Connection) -> pl.DataFrame:
    """Every task's open and close time, narrow: how long tasks stay open is a distribution (median,
    oldest open), which differs too much between SQLite and PostgreSQL date arithmetic to do in SQL."""
    t = correction_tasks
    return _read(conn, "task_times", sa.select(t.c.station_id, t.c.status, t.c.opened_at, t.c.closed_at)
                 .where(not_superseded(t)))


def _holds(conn: sa.Connection, record_tables: list[sa.Table]) -> pl.DataFrame:
    """Every hold with its entity type, the measured rate against its threshold (null for a batch
    whose rows do not reconcile, and in a warehouse from before migration 0008) and the records it
    keeps back from publication (counted over `record_tables`: the warehouse's, project types
    included); newest first per station."""
    from warehouse.quality import holds_select

    h = batch_holds
    columns = {c["name"] for c in sa.inspect(conn).get_columns(h.name)}
    stmt = holds_select(record_tables, with_rate={"rate", "threshold"} <= columns).order_by(None).order_by(
        h.c.station_id, h.c.held_at.desc())
    return _read(conn, "holds", stmt)


# -- linkage ------------------------------------------------------------------------------------
def _linkage(conn: sa.Connection) -> pl.DataFrame:
    e, m, p = s.entities, s.entity_membership, s.scored_pairs
    types = sa.union(sa.select(e.c.entity_type), sa.select(m.c.entity_type), sa.select(p.c.entity_type)).subquery()
    records = sa.select(m.c.entity_type, sa.func.count().label("n")).group_by(m.c.entity_type).subquery()
    ents = sa.select(
        e.c.entity_type,
        sa.func.sum(sa.case((e.c.status == "active", 1), else_=0)).label("active"),
        sa.func.sum(sa.case((e.c.status == "retired", 1), else_=0)).label("retired"),
    ).group_by(e.c.entity_type).subquery()
    pairs = sa.select(
        p.c.entity_type,
        sa.func.sum(sa.case((p.c.decision == "match", 1), else_=0)).label("match"),
        sa.func.sum(sa.case((p.c.decision == "review", 1), else_=0)).label("review"),
        sa.func.sum(sa.case((p.c.review_reason.is_not(None), 1), else_=0)).label("refused"),
    ).group_by(p.c.entity_type).subquery()
    pending = _pending_reviews().subquery()
    et = types.c.entity_type
    stmt = (
        sa.select(et, sa.func.coalesce(records.c.n, 0).label("records"),
                  sa.func.coalesce(ents.c.active, 0).label("entities_active"),
                  sa.func.coalesce(ents.c.retired, 0).label("entities_retired"),
                  sa.func.coalesce(pairs.c.match, 0).label("match_pairs"),
                  sa.func.coalesce(pairs.c.review, 0).label("review_pairs"),
                  sa.func.coalesce(pending.c.n, 0).label("pending_reviews"),
                  sa.func.coalesce(pairs.c.refused, 0).label("refused_pairs"))
        .select_from(types.outerjoin(records, records.c.entity_type == et)
                     .outerjoin(ents, ents.c.entity_type == et)
                     .outerjoin(pairs, pairs.c.entity_type == et)
                     .outerjoin(pending, pending.c.entity_type == et))
        .order_by(et)
    )
    return _read(conn, "linkage", stmt)


def _unjudged_queue() -> sa.ColumnElement[bool]:
    """A scored pair in the review queue: undecided or refused, and no reviewer judged it yet."""
    p, j = s.scored_pairs, s.judgements
    judged = sa.exists().where(j.c.entity_type == p.c.entity_type, j.c.left_id == p.c.left_id,
                               j.c.right_id == p.c.right_id)
    return sa.and_(sa.or_(p.c.decision == "review", p.c.review_reason.is_not(None)), ~judged)


def _pending_reviews() -> sa.Select:
    """Pairs waiting for a reviewer, per entity type (the review queue's size)."""
    p = s.scored_pairs
    return sa.select(p.c.entity_type, sa.func.count().label("n")).where(_unjudged_queue()).group_by(p.c.entity_type)


REFUSED_SHOWN = 200


def _refused(conn: sa.Connection) -> pl.DataFrame:
    """Pairs the model would link but the ID guard or a judgement refused, awaiting a reviewer:
    the strongest first, at most REFUSED_SHOWN (record keys and reasons only, no personal values)."""
    p = s.scored_pairs
    stmt = (sa.select(p.c.entity_type, p.c.left_id, p.c.right_id, p.c.match_probability, p.c.review_reason)
            .where(_unjudged_queue(), p.c.review_reason.is_not(None))
            .order_by(p.c.match_probability.desc(), p.c.left_id, p.c.right_id).limit(REFUSED_SHOWN))
    return _read(conn, "refused", stmt)


def _cluster_sizes(conn: sa.Connection) -> pl.DataFrame:
    m, e = s.entity_membership, s.entities
    # members counted per entity id alone (ids are unique across types), the type and status
    # joined to the counts: SQLite then counts along the entity id index instead of visiting every
    # membership row through the type index (1M records: 7.2 s -> 1.5 s)
    sizes = sa.select(m.c.entity_id, sa.func.count().label("size")).group_by(m.c.entity_id).subquery()
    stmt = (sa.select(e.c.entity_type, sizes.c.size, sa.func.count().label("entities"))
            .join(e, e.c.entity_id == sizes.c.entity_id).where(e.c.status == "active")
            .group_by(e.c.entity_type, sizes.c.size).order_by(e.c.entity_type, sizes.c.size))
    return _read(conn, "cluster_sizes", stmt)


def _judged(conn: sa.Connection) -> pl.DataFrame:
    """Reviewers' latest verdict per pair against the model's decision for that pair: the basis
    of the estimated precision (decision 'none' when the pair was judged but not scored)."""
    j, p = s.judgements, s.scored_pairs
    rank = sa.func.row_number().over(partition_by=(j.c.entity_type, j.c.left_id, j.c.right_id),
                                     order_by=j.c.judgement_id.desc())
    ranked = sa.select(j.c.entity_type, j.c.left_id, j.c.right_id, j.c.verdict, rank.label("rn")).subquery()
    decision = sa.func.coalesce(p.c.decision, "none").label("decision")
    stmt = (sa.select(ranked.c.entity_type, decision, ranked.c.verdict, sa.func.count().label("pairs"))
            .select_from(ranked.outerjoin(p, (p.c.entity_type == ranked.c.entity_type)
                                          & (p.c.left_id == ranked.c.left_id) & (p.c.right_id == ranked.c.right_id)))
            .where(ranked.c.rn == 1)
            .group_by(ranked.c.entity_type, decision, ranked.c.verdict)
            .order_by(ranked.c.entity_type, decision, ranked.c.verdict))
    return _read(conn, "judged", stmt)


# -- access (feeds' audit log) ------------------------------------------------------------------
def _subscribers(conn: sa.Connection) -> pl.DataFrame:
    d = feed_deliveries
    stmt = (sa.select(d.c.subscriber_id, d.c.channel, sa.func.count().label("deliveries"),
                      sa.func.coalesce(sa.func.sum(d.c.event_count), 0).label("events"),
                      sa.func.coalesce(sa.func.sum(d.c.entity_count), 0).label("entities"),
                      sa.func.min(d.c.delivered_at).label("first_at"), sa.func.max(d.c.delivered_at).label("last_at"))
            .group_by(d.c.subscriber_id, d.c.channel).order_by(d.c.subscriber_id, d.c.channel))
    return _read(conn, "subscribers", stmt)


def _field_policies(conn: sa.Connection) -> pl.DataFrame:
    """Deliveries grouped by their field -> masking map: few distinct maps (one per subscription's
    policy), so the report parses a handful of JSON texts instead of one per delivery. The cast to
    text matters on PostgreSQL, whose json type has no equality to group by."""
    d = feed_deliveries
    fields = sa.cast(d.c.fields, sa.Text).label("fields")
    stmt = (sa.select(fields, sa.func.count().label("deliveries"),
                      sa.func.coalesce(sa.func.sum(d.c.entity_count), 0).label("entities"))
            .group_by(fields).order_by(fields))
    return _read(conn, "field_policies", stmt)


def _recent_deliveries(conn: sa.Connection) -> pl.DataFrame:
    d = feed_deliveries
    stmt = (sa.select(d.c.delivery_id, d.c.subscriber_id, d.c.token_id, d.c.channel, d.c.kind, d.c.seq_from,
                      d.c.seq_to, d.c.event_count, d.c.entity_count, sa.cast(d.c.fields, sa.Text).label("fields"),
                      d.c.delivered_at)
            .order_by(d.c.delivered_at.desc(), d.c.delivery_id.desc()).limit(RECENT_DELIVERIES))
    return _read(conn, "recent_deliveries", stmt)
