"""Residence benchmark: the relation step (entity_resolution/relations.py) over N person and N/2.5
dwelling golden records already in the warehouse: the first run (every link new, every record
gets its relation field), then a run after 1% of the persons moved.

    python benchmarks/relations.py [--persons 1000000] [--warehouse sqlite|postgresql] [--linked]

--linked: the persons are written with their `dwelling_id`, as the pipeline's publication links
them (entity_resolution.relations.PublishedLinks): the first run then opens the links and versions
the dwellings only, the step's share of a first `enteronce run`.

The golden records are written straight into golden_records (synthetic, already published), so
the figure is the relation step's own: read both types' golden records, link, diff, write
versions, events and links in one transaction. The first run's own peak RSS is printed beside
its time (Linux; the setup's frames are larger), the whole process's at the end.
"""

from __future__ import annotations

import argparse
import atexit
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory import reset_peak, rss_mb  # noqa: E402 - this script's folder is on sys.path

import polars as pl  # noqa: E402
import sqlalchemy as sa  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/postgres"
KEY = ["addr_district", "addr_street", "addr_community", "addr_road", "addr_number", "addr_building", "addr_unit",
       "addr_room"]


def _addresses(n: int, seed: int) -> pl.DataFrame:
    i = pl.int_range(0, n, eager=True)
    return pl.DataFrame({"i": i}).with_columns(
        pl.lit("九龙坡区").alias("addr_district"), pl.lit("杨家坪街道").alias("addr_street"),
        pl.lit("西郊路社区").alias("addr_community"), pl.lit("西郊路").alias("addr_road"),
        ((pl.col("i") // 240) + seed).cast(pl.String).add("号").alias("addr_number"),
        ((pl.col("i") // 24) % 10 + 1).cast(pl.String).add("栋").alias("addr_building"),
        ((pl.col("i") // 6) % 4 + 1).cast(pl.String).add("单元").alias("addr_unit"),
        (pl.col("i") % 6 + 101).cast(pl.String).add("室").alias("addr_room"),
    )


def _golden(frame: pl.DataFrame, prefix: str, entity_type: str, extra: dict[str, pl.Expr]) -> pl.DataFrame:
    fields = {**extra, **{k: pl.col(k) for k in KEY}, "area_code": pl.lit("500107001002")}
    return frame.select(
        pl.concat_str(pl.lit(prefix), pl.col("i").cast(pl.String).str.zfill(11)).alias("entity_id"),
        pl.lit(entity_type).alias("entity_type"), pl.lit(1, pl.Int64).alias("version"), pl.lit("active").alias("status"),
        pl.lit("500107001002").alias("area_code"),
        pl.struct(**fields).struct.json_encode().alias("record"),
        pl.concat_str(pl.lit('[{"station_id":"s1","batch_id":"b1","record_key":"s1:'), pl.col("i").cast(pl.String),
                      pl.lit('","source_updated_at":null,"fields":["address"]}]')).alias("provenance"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("updated_at"),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--warehouse", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--linked", action="store_true", help="persons published with their dwelling_id")
    args = ap.parse_args()

    from core.entity_types import load_entity_types
    from core.time import utcnow
    from entity_resolution.relations import run_relation
    from warehouse import Warehouse
    from warehouse import schema as s
    from warehouse.bulk import insert_frame
    from warehouse.outbox import outbox_transaction
    from warehouse.relations import RelationStore

    tmp = Path(tempfile.mkdtemp(prefix="bench_rel_"))
    atexit.register(shutil.rmtree, tmp, True)  # a 1M warehouse is 3 GB: never left behind, even on an error
    admin, db = None, None
    if args.warehouse == "sqlite":
        url = f"sqlite:///{tmp / 'warehouse.sqlite'}"
    else:
        admin = sa.create_engine(DEFAULT_PG, isolation_level="AUTOCOMMIT")
        db = f"bench_rel_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
        url = admin.url.set(database=db).render_as_string(hide_password=False)
    store = Warehouse(url).migrate()
    relation = load_entity_types().relations["residence"]
    n, homes = args.persons, int(args.persons / 2.5)
    now = utcnow()
    # persons live 2.5 to a dwelling: person i at dwelling i // 2.5's address
    home = {"dwelling_id": pl.concat_str(pl.lit("H"), pl.col("a").cast(pl.String).str.zfill(11))} if args.linked else {}
    people = _golden(_addresses(n, 0).with_columns((pl.col("i") * 2 // 5).alias("a")).drop(KEY).join(
        _addresses(homes, 0).rename({"i": "a"}), on="a").sort("i"), "P", "person",
        {"name_norm": pl.lit("某某"), **home})
    dwellings = _golden(_addresses(homes, 0), "H", "dwelling", {"address": pl.lit("...")})
    t0 = time.perf_counter()
    with store.transaction() as conn:
        insert_frame(conn, s.golden_records, pl.concat([people, dwellings]).with_columns(updated_at=pl.lit(now)))
    print(f"setup: {n:,} persons, {homes:,} dwellings written in {time.perf_counter() - t0:.1f} s")

    def events(golden: pl.DataFrame, op: str) -> None:
        """The events the golden step wrote with these records (what the relation step follows)."""
        with outbox_transaction(store) as outbox:
            ids = pl.Series("event_id", [str(uuid.uuid4()) for _ in range(golden.height)], dtype=pl.String)
            outbox.append(golden.with_columns(ids).select(
                "event_id",
                "entity_type", "entity_id", pl.lit(op).alias("op"), "version", pl.lit("[]").alias("changed_fields"),
                pl.lit("{}").alias("before"), pl.lit("{}").alias("after"), pl.lit("[]").alias("sources")), utcnow())

    events(pl.concat([people, dwellings]), "create")
    rs = RelationStore(store)
    t0 = time.perf_counter()
    own_peak = reset_peak()
    first = run_relation(rs, relation)
    print(f"first run: {first.links:,} links, {first.events:,} events in {time.perf_counter() - t0:.1f} s"
          + (f", peak RSS {rss_mb()[1]:.0f} MB" if own_peak else ""))

    # 1% move out to a room no register holds (their golden address changes, as survivorship would
    # write it): each loses its dwelling_id and each of their dwellings gets new residents
    moved = max(1, n // 100)
    g = s.golden_records
    with store.engine.connect() as conn:
        recs = pl.DataFrame(conn.execute(sa.select(g.c.entity_id, g.c.record).where(
            g.c.entity_type == "person").order_by(g.c.entity_id).limit(moved)).all(),
            schema={"entity_id": pl.String, "record": pl.String}, orient="row")
    recs = recs.with_columns(pl.col("record").str.replace('"addr_room":"(\\d+)室"', '"addr_room":"999室"'))
    with store.transaction() as conn:
        for eid, rec in recs.iter_rows():
            conn.execute(g.update().where(g.c.entity_id == eid).values(record=rec))
    events(recs.with_columns(pl.lit("person").alias("entity_type"), pl.lit(2).alias("version")), "update")
    t0 = time.perf_counter()
    second = run_relation(rs, relation)
    print(f"after {moved:,} moves: {second.moved_in:,} in, {second.moved_out:,} out, {second.events:,} events "
          f"in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    third = run_relation(rs, relation)
    print(f"nothing changed: recomputed={third.ran} in {time.perf_counter() - t0:.2f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    store.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
