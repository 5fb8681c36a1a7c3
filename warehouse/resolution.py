"""What entity resolution keeps in the warehouse: runs, the model, scored pairs, judgements,
entities and membership. Reads and writes Polars frames; one transaction per run."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import polars as pl
import sqlalchemy as sa

from warehouse import schema as s
from warehouse.bulk import in_keys, insert_frame, polars_type, read_bulk, read_frame, unindexed
from warehouse.frame_cache import FrameCache, apply_delta
from core.time import utcnow
from warehouse.store import Warehouse, not_held

_EDGE_SCHEMA = {
    "left_id": pl.String, "right_id": pl.String, "match_probability": pl.Float64,
    "match_weight": pl.Float64, "decision": pl.String, "weights": pl.String, "run_seq": pl.Int64,
    "review_reason": pl.String,
}


def latest_resolution_seq(store: Warehouse, entity_type: str) -> int:
    """The seq of the entity type's latest resolution run (0 before the first): one indexed max().
    Only such a run writes the type's membership and entity changes."""
    r = s.resolution_runs
    with store.engine.connect() as conn:
        value = conn.scalar(sa.select(sa.func.max(r.c.seq)).where(r.c.entity_type == entity_type))
    return int(value or 0)


def entities_written_since(store: Warehouse, entity_type: str, after_seq: int) -> pl.Series:
    """Entities whose membership rows a resolution run wrote since `after_seq` (new records,
    records that changed content, records that moved between entities), each once, in no order."""
    m = s.entity_membership
    # distinct in Polars: SQLite's DISTINCT sorted a million ids in a temporary b-tree (3.4 s
    # of a first publication, against 0.6 s for reading them all)
    stmt = sa.select(m.c.entity_id).where(m.c.entity_type == entity_type, m.c.updated_seq > after_seq)
    with store.engine.connect() as conn:
        return read_bulk(conn, stmt, schema={"entity_id": pl.String}).to_series().unique()


class EntityTypeStore:
    """The warehouse as seen by one entity type's step (resolution, golden records)."""

    def __init__(self, store: Warehouse, entity_type: str, record_table: str):
        self.store = store
        self.entity_type = entity_type
        self.record_table = store.table_named(record_table)

    @property
    def engine(self) -> sa.Engine:
        return self.store.engine

    def latest_resolution_seq(self) -> int:
        return latest_resolution_seq(self.store, self.entity_type)

    # The membership this store handed out, and the run it reflects: a run's written rows are a
    # delta on it for the cache.
    _membership_read: tuple[pl.DataFrame, int] | None = None

    def records(self, columns: Iterable[str], *, cache_too: Iterable[str] = ()) -> pl.DataFrame:
        """Current standardised records (not held): record_key, station_id, row_hash, batch_id
        and `columns`, in that order.

        With a cache folder, the records are kept as Parquet together with the batches they
        cover; a later read fetches only the records of batches loaded since (records change
        only by new batches) and appends them to the cache, so an incremental run neither
        re-reads nor rewrites a million rows. Resolution and golden records read different
        columns of the same records: the cache holds the union of the columns asked for, and a
        reader whose columns it lacks reads them all once and widens it. `cache_too`: columns
        another step will ask for, read and cached now, though not returned.
        """
        t = self.record_table
        wanted = [c for c in dict.fromkeys(["record_key", "station_id", "row_hash", "batch_id", *columns]) if c in t.c]
        schema = {c: polars_type(t.c[c]) for c in wanted}
        station_of = self._loaded_batches()
        loaded = list(station_of)
        cache = self._cache("records")

        def usable(held: dict[str, pl.DataType], covered: object) -> bool:
            """A cached frame the records can come from: its batches all still loaded, its
            columns all still in the table, those asked for among them with their types."""
            return (covered is not None and set(covered) <= set(loaded) and all(c in t.c for c in held)
                    and all(held.get(c) == d for c, d in schema.items()))

        held = cache.schema() if cache is not None else {}
        covered = cache.meta() if held else None
        if usable(held, covered) and set(covered) == set(loaded):  # nothing new: only the columns asked for
            cached = cache.read(None, columns=wanted)
            if cached is not None and cached[1] == covered:
                return cached[0].select(wanted)
        cached = cache.read(None) if usable(held, covered) else None
        # judged as read: another process may have written the cache since the look above
        if cached is not None and usable(dict(cached[0].schema), cached[1]):
            frame, covered = cached
            held = dict(frame.schema)
            new = sorted(set(loaded) - set(covered))
            if not new:
                return frame.select(wanted)
            # every column the cache holds, so that the delta can be appended to it; by the
            # batches' stations too: a record table has no index on batch_id, so by batch alone
            # SQLite read every record of the type for a drop's few stations
            stations = sorted({station_of[b] for b in new})
            with self.engine.connect() as conn:
                fresh = read_bulk(conn, sa.select(*[t.c[c] for c in held]).where(
                    in_keys(conn, t.c.station_id, stations, table="_stations"), in_keys(conn, t.c.batch_id, new)),
                    schema=held)
            # a record in two new batches: the later load wins, as the upsert did in the table
            fresh = fresh.unique("record_key", keep="last", maintain_order=True)
            cache.append(fresh, loaded, expect=covered, previous=frame)
            return apply_delta(frame, fresh, "record_key").select(wanted)
        # a miss reads the cache's columns too (those the table still has), so that readers of
        # different columns widen the cache once instead of replacing it in turn
        every = list(dict.fromkeys(c for c in [*wanted, *cache_too, *held] if c in t.c))
        with self.engine.connect() as conn:
            frame = read_bulk(conn, sa.select(*[t.c[c] for c in every]).where(not_held(t.c.batch_id))
                              .order_by(t.c.record_key), schema={c: polars_type(t.c[c]) for c in every})
        if cache is not None:
            cache.write(frame, loaded)
        return frame.select(wanted)

    def _loaded_batches(self) -> dict[str, str]:
        """batch id -> its station, of the type's loaded batches not held."""
        b = s.batches
        with self.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(sa.select(b.c.batch_id, b.c.station_id).where(
                b.c.entity_type == self.entity_type, b.c.status == "loaded", not_held(b.c.batch_id)))}

    def _cache(self, name: str) -> FrameCache | None:
        if self.store.cache_dir is None:
            return None
        return FrameCache(self.store.cache_dir / f"{self.entity_type}-{name}", key="record_key")

    def membership(self) -> pl.DataFrame:
        """Record -> entity with the entity's creation seq; cached per resolution run of this
        type. Keyed by the type's own latest run, not the latest of any type: with the global one,
        every run of another type (a drop resolves dwellings, then persons) missed the cache and
        read the whole membership again."""
        latest = self.latest_resolution_seq()
        schema = {"record_key": pl.String, "entity_id": pl.String, "row_hash": pl.String, "since_seq": pl.Int64,
                  "entity_created_seq": pl.Int64}
        cache = self._cache("membership")
        cached = cache.read(schema) if cache is not None else None
        if cached is not None and cached[1] == latest:
            self._membership_read = (cached[0], latest)
            return cached[0]
        m, e = s.entity_membership, s.entities
        stmt = (
            sa.select(m.c.record_key, m.c.entity_id, m.c.row_hash, m.c.since_seq,
                      e.c.created_seq.label("entity_created_seq"))
            .join(e, e.c.entity_id == m.c.entity_id)
            .where(m.c.entity_type == self.entity_type)
        )
        with self.engine.connect() as conn:
            frame = read_frame(conn, stmt, schema=schema)
        if cache is not None:
            cache.write(frame, latest)
        self._membership_read = (frame, latest)
        return frame


class ResolutionStore(EntityTypeStore):
    """The warehouse side of one entity type's resolution (see entity_resolution.service)."""

    # -- reads ---------------------------------------------------------------------------------
    def model(self) -> tuple[str, str] | None:
        t = s.resolution_models
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.c.settings_hash, t.c.model).where(t.c.entity_type == self.entity_type)
            ).first()
        return (row[0], row[1]) if row else None

    def edges(self, decision: str | None = None, *, weights: bool = True) -> pl.DataFrame:
        """Stored pairs; without `weights`, the bulky per-comparison JSON is left in the table
        (clustering reads a million of these per run and needs only ids and probability)."""
        t = s.scored_pairs
        cols = [t.c.left_id, t.c.right_id, t.c.match_probability, t.c.match_weight, t.c.decision,
                *([t.c.weights] if weights else []), t.c.run_seq, t.c.review_reason]
        stmt = sa.select(*cols).where(t.c.entity_type == self.entity_type)
        if decision is not None:
            stmt = stmt.where(t.c.decision == decision)
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, schema=_EDGE_SCHEMA)

    def match_edges_touching(self, record_keys: pl.Series) -> pl.DataFrame:
        """(left_id, right_id, match_probability) of the stored match edges with an end among
        `record_keys`: what an incremental run's clustering walks from a drop's records, by the
        primary key (left) and the right-id index, never by the decision index, which holds every
        match edge of the type."""
        t = s.scored_pairs
        keys = record_keys.unique().to_list()
        schema = {"left_id": pl.String, "right_id": pl.String, "match_probability": pl.Float64}
        if not keys:
            return pl.DataFrame(schema=schema)
        cols = (t.c.left_id, t.c.right_id, t.c.match_probability)
        match = unindexed(t.c.decision) == "match"
        with self.engine.connect() as conn:
            left = read_bulk(conn, sa.select(*cols).where(t.c.entity_type == self.entity_type, match,
                                                          in_keys(conn, t.c.left_id, keys)), schema=schema)
            right = read_bulk(conn, sa.select(*cols).where(t.c.entity_type == self.entity_type, match,
                                                           in_keys(conn, t.c.right_id, keys)), schema=schema)
        return pl.concat([left, right]).unique(["left_id", "right_id"], maintain_order=True)

    def judgements(self) -> pl.DataFrame:
        """The latest verdict per pair (a later judgement overrides an earlier one)."""
        t = s.judgements
        stmt = sa.select(t.c.judgement_id, t.c.left_id, t.c.right_id, t.c.verdict, t.c.reviewer, t.c.reason,
                         t.c.judged_at).where(t.c.entity_type == self.entity_type)
        with self.engine.connect() as conn:
            frame = read_frame(conn, stmt, schema={"judgement_id": pl.Int64, "judged_at": pl.Datetime("us", "UTC")})
        return frame.sort("judgement_id").unique(["left_id", "right_id"], keep="last", maintain_order=True)

    def review_queue(self, limit: int | None = None) -> pl.DataFrame:
        """Pairs waiting for a reviewer, not yet judged: those the model could not decide and those
        it scored high but the ID guard or a reviewer's 'different' refused (review_reason says
        why). Refused pairs come first (few, and each is a conflict a person must settle; sorted
        by score they would sink below every undecided pair), then the most uncertain first."""
        t = s.scored_pairs
        stmt = sa.select(t.c.left_id, t.c.right_id, t.c.match_probability, t.c.match_weight, t.c.decision,
                         t.c.weights, t.c.run_seq, t.c.review_reason).where(
            t.c.entity_type == self.entity_type, sa.or_(t.c.decision == "review", t.c.review_reason.is_not(None)))
        with self.engine.connect() as conn:
            pairs = read_frame(conn, stmt, schema=_EDGE_SCHEMA)
        judged = self.judgements().select("left_id", "right_id")
        queue = pairs.join(judged, on=["left_id", "right_id"], how="anti").sort(
            pl.col("review_reason").is_null(), (pl.col("match_probability") - 0.5).abs(), "left_id", "right_id"
        )
        return queue if limit is None else queue.head(limit)

    def retired_ids(self) -> pl.Series:
        """Entity ids retired by merges: never to be issued again."""
        e = s.entities
        with self.engine.connect() as conn:
            ids = conn.scalars(sa.select(e.c.entity_id).where(
                e.c.entity_type == self.entity_type, e.c.status == "retired")).all()
        return pl.Series("entity_id", ids, dtype=pl.String)

    def last_run_started(self) -> dt.datetime | None:
        r = s.resolution_runs
        with self.engine.connect() as conn:
            value = conn.scalar(sa.select(sa.func.max(r.c.started_at)).where(r.c.entity_type == self.entity_type))
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite hands back naive UTC
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)

    def next_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.coalesce(sa.func.max(s.resolution_runs.c.seq), 0))) or 0) + 1

    def conflicting_entities(self, distinct_valid: list[tuple[str, str]],
                             records: pl.DataFrame | None = None) -> pl.DataFrame:
        """Active entities holding two different valid values of a distinct-valid column (e.g. two
        valid ID numbers), except where a reviewer judged two of their records the same.

        `records` (record_key and the guard columns, as entity_resolution.resolve.guard_records
        gives them): the check runs in Polars on those and the membership; needed when a flag is a
        derived column (id_trusted), which the record table does not hold."""
        m, t = s.entity_membership, self.record_table
        found = []
        if records is not None:
            members = self.membership().select("record_key", "entity_id")
            for column, flag in distinct_valid:
                valid = records.select(pl.col("record_key").cast(pl.String), column, flag).filter(
                    pl.col(flag).fill_null(False) & pl.col(column).is_not_null())
                found.append(valid.join(members, on="record_key").group_by("entity_id")
                             .agg(pl.col(column).n_unique().alias("_n")).filter(pl.col("_n") > 1).select("entity_id"))
        for column, flag in distinct_valid if records is None else ():
            stmt = (
                sa.select(m.c.entity_id)
                .join(t, t.c.record_key == m.c.record_key)
                .where(m.c.entity_type == self.entity_type, t.c[flag].is_(True))
                .group_by(m.c.entity_id)
                .having(sa.func.count(sa.distinct(t.c[column])) > 1)
            )
            with self.engine.connect() as conn:
                found.append(read_frame(conn, stmt, schema={"entity_id": pl.String}))
        conflicts = pl.concat(found).unique() if found else pl.DataFrame(schema={"entity_id": pl.String})
        if conflicts.height == 0:
            return conflicts
        same = self.judgements().filter(pl.col("verdict") == "same")
        members = self.membership().select("record_key", "entity_id")
        justified = (
            same.join(members.rename({"record_key": "left_id"}), on="left_id")
            .join(members.rename({"record_key": "right_id", "entity_id": "right_entity"}), on="right_id")
            .filter(pl.col("entity_id") == pl.col("right_entity"))
            .select("entity_id").unique()
        )
        return conflicts.join(justified, on="entity_id", how="anti").sort("entity_id")

    # -- writes --------------------------------------------------------------------------------
    def missing_records(self, record_keys: Iterable[str]) -> list[str]:
        """Those of `record_keys` that are no current record of this entity type."""
        keys = list(dict.fromkeys(record_keys))
        t = self.record_table
        with self.engine.connect() as conn:
            found = set(conn.execute(sa.select(t.c.record_key).where(t.c.record_key.in_(keys))).scalars())
        return [k for k in keys if k not in found]

    def add_judgement(self, left_id: str, right_id: str, verdict: str, reviewer: str, reason: str | None) -> None:
        """A judgement on two existing, distinct records; a typo in a key would otherwise be stored
        as a verdict about nobody and silently never apply."""
        if verdict not in {"same", "different"}:
            raise ValueError(f"verdict must be 'same' or 'different', got {verdict!r}")
        if left_id == right_id:
            raise ValueError(f"a judgement needs two different records, got {left_id!r} twice")
        missing = self.missing_records([left_id, right_id])
        if missing:
            raise ValueError(f"no {self.entity_type} record with key {', '.join(repr(k) for k in missing)}")
        left_id, right_id = sorted((left_id, right_id))
        with self.store.transaction() as conn:
            conn.execute(s.judgements.insert().values(
                entity_type=self.entity_type, left_id=left_id, right_id=right_id, verdict=verdict,
                reviewer=reviewer, reason=reason, judged_at=utcnow(),
            ))

    def save_run(
        self,
        *,
        seq: int,
        mode: str,
        records_considered: int,
        stats: dict,
        settings_hash: str,
        model_json: str | None,
        dirty_keys: pl.Series,
        new_edges: pl.DataFrame,
        membership: pl.DataFrame,
        entity_changes: pl.DataFrame,
        started_at: dt.datetime,
        refusals: pl.DataFrame | None = None,
        reason_scope: pl.Series | None = None,
    ) -> int:
        """Record run `seq` (from next_seq) in one transaction; returns it.

        `membership` holds the rows this run wrote (record_key, entity_id, row_hash, since_seq,
        entity_created_seq): records that are new, changed content or moved entity;
        `entity_changes` the entities it created, updated or retired. `refusals` (left_id,
        right_id, review_reason): the match edges clustering refused among the records of
        `reason_scope` (the records it re-clustered; None: all, and `new_edges` holds every pair
        with its reason already): stored edges there take these reasons and lose stale ones.
        """
        with self.store.transaction(large=True) as conn:
            conn.execute(s.resolution_runs.insert().values(
                seq=seq, entity_type=self.entity_type, mode=mode, records_considered=records_considered,
                stats=json.loads(json.dumps(stats, default=str)), started_at=started_at,
            ))
            if model_json is not None:
                t = s.resolution_models
                conn.execute(t.delete().where(t.c.entity_type == self.entity_type))
                conn.execute(t.insert().values(entity_type=self.entity_type, settings_hash=settings_hash,
                                               model=model_json, trained_at=utcnow()))
            self._replace_edges(conn, dirty_keys, new_edges, seq)
            if reason_scope is not None:
                self._update_refusals(conn, refusals, reason_scope)
            self._replace_membership(conn, membership, seq)
            self._apply_entity_changes(conn, entity_changes, seq)
            conn.execute(s.resolution_runs.update().where(s.resolution_runs.c.seq == seq)
                         .values(finished_at=utcnow()))
        self._cache_membership(membership, seq)
        return int(seq)

    def _cache_membership(self, written: pl.DataFrame, seq: int) -> None:
        """After commit, so the cache never runs ahead of the warehouse: the rows written are a
        delta on the membership this store read at the start of the run."""
        cache = self._cache("membership")
        if cache is None:
            return
        read = self._membership_read
        if read is None:
            self.membership()  # the run did not read it: cache the committed state afresh
            return
        frame, as_of = read
        cache.append(written.select(frame.columns), seq, expect=as_of, previous=frame)

    def _replace_edges(self, conn: sa.Connection, dirty: pl.Series, edges: pl.DataFrame, seq: int) -> None:
        t = s.scored_pairs
        if dirty.len():
            # one side at a time: each uses its index, where an OR scans every pair of the type
            for side in (t.c.left_id, t.c.right_id):
                conn.execute(t.delete().where(t.c.entity_type == self.entity_type, in_keys(conn, side, dirty)))
        if edges.height:
            insert_frame(conn, t, edges.with_columns(entity_type=pl.lit(self.entity_type), run_seq=pl.lit(seq)),
                         replace=True)

    def _update_refusals(self, conn: sa.Connection, refusals: pl.DataFrame | None, scope: pl.Series) -> None:
        """Match edges inside the re-clustered scope: the refusals of this run replace the stored
        ones. Refused edges are few, so the stored ones are read whole (an index-free scan of the
        type's pairs for the non-null ones) and only the differences are written."""
        t = s.scored_pairs
        schema = {"left_id": pl.String, "right_id": pl.String, "review_reason": pl.String}
        want = pl.DataFrame(schema=schema) if refusals is None else refusals.select(
            [pl.col(c).cast(pl.String) for c in schema])
        stored = read_frame(conn, sa.select(t.c.left_id, t.c.right_id, t.c.review_reason).where(
            t.c.entity_type == self.entity_type, t.c.decision == "match", t.c.review_reason.is_not(None)),
            schema=schema)
        # a match edge with one record in the scope has both there (the scope is closed over edges)
        stored = stored.filter(pl.col("left_id").is_in(scope.cast(pl.String).implode()))
        stale = stored.join(want, on=["left_id", "right_id"], how="anti")
        changed = want.join(stored, on=["left_id", "right_id", "review_reason"], how="anti")
        rows = [{"l": l, "r": r, "why": None} for l, r in stale.select("left_id", "right_id").iter_rows()]
        rows += [{"l": l, "r": r, "why": w} for l, r, w in changed.iter_rows()]
        if rows:
            conn.execute(t.update().where(t.c.entity_type == self.entity_type, t.c.left_id == sa.bindparam("l"),
                                          t.c.right_id == sa.bindparam("r")).values(review_reason=sa.bindparam("why")),
                         rows)

    def _replace_membership(self, conn: sa.Connection, membership: pl.DataFrame, seq: int) -> None:
        if membership.height == 0:
            return
        frame = membership.select("record_key", "entity_id", "row_hash", "since_seq").with_columns(
            entity_type=pl.lit(self.entity_type), updated_seq=pl.lit(seq, pl.Int64))
        insert_frame(conn, s.entity_membership, frame, replace=True)

    def _apply_entity_changes(self, conn: sa.Connection, changes: pl.DataFrame, seq: int) -> None:
        """Bulk, not per entity: a first run creates as many entities as there are people."""
        if changes.height == 0:
            return
        e = s.entities

        def as_json(col: str) -> pl.Expr:
            if col not in changes.columns:
                return pl.lit(None, pl.String)
            return pl.when(pl.col(col).list.len() > 0).then(
                pl.concat_str(pl.lit('["'), pl.col(col).list.join('","'), pl.lit('"]')))  # entity ids: no escaping

        frame = changes.select(
            "entity_id", "op",
            (pl.col("merged_into") if "merged_into" in changes.columns else pl.lit(None, pl.String)).alias("merged_into"),
            as_json("merged_from").alias("merged_from"), as_json("parts").alias("parts"),
        )
        insert_frame(conn, s.entity_changes, frame.with_columns(run_seq=pl.lit(seq), entity_type=pl.lit(self.entity_type)))
        created = frame.filter(pl.col("op") == "create")
        insert_frame(conn, e, created.select("entity_id").with_columns(
            entity_type=pl.lit(self.entity_type), created_seq=pl.lit(seq), status=pl.lit("active"), updated_seq=pl.lit(seq)))
        retired = frame.filter(pl.col("op") == "retire").select("entity_id", "merged_into").to_dicts()
        if retired:
            conn.execute(e.update().where(e.c.entity_id == sa.bindparam("eid")).values(
                status="retired", merged_into=sa.bindparam("into"), updated_seq=seq),
                [{"eid": r["entity_id"], "into": r["merged_into"]} for r in retired])
        others = frame.filter(~pl.col("op").is_in(["create", "retire"]))["entity_id"].to_list()
        if others:
            conn.execute(e.update().where(e.c.entity_id == sa.bindparam("eid")).values(
                status="active", updated_seq=seq), [{"eid": x} for x in others])

