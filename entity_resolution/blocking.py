"""Blocking: which record pairs are worth comparing at all.

Comparing every pair of a million records is 5 * 10**11 comparisons; blocking keeps only pairs that
agree exactly on the keys of at least one rule (same ID number; same phone; same name pinyin and
birth date; ...). Rules are united, as in Splink: a pair is produced once, credited to the first
rule that finds it, so later rules only add what earlier ones missed (`pairs_new`).

Everything is column arithmetic. Per rule, records are sorted by a 64-bit hash of their keys, so
each block is a contiguous run; the pairs of a run are generated with `int_ranges` + `explode`
(each record pairs with the records after it in its run), which produces exactly s*(s-1)/2 pairs
per block without the quadratic self-join-then-filter. A pair found by an earlier rule is
recognised by gathering both sides' block numbers of that rule (an array lookup, not a join).
A 64-bit hash collision would merge two blocks (extra candidate pairs, never lost ones); for a
million distinct keys its probability is about 3e-8.

Blocks larger than the cap (a placeholder phone such as 13800000000 shared by thousands) are
skipped and counted, since their pairs would cost quadratic time for little evidence.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from core.errors import ConfigError
from entity_resolution.config import EntitySettings

_IDX = pl.UInt32


def _usage(settings: EntitySettings) -> dict[str, str]:
    """Where each needed column is used in the settings (for error messages)."""
    where: dict[str, str] = {}
    for i, rule in enumerate(settings.blocking.rules):
        for k in rule.keys:
            where.setdefault(k, f"blocking.rules.{i}.keys")
    for i, comp in enumerate(settings.comparisons):
        where.setdefault(comp.column, f"comparisons.{i}.column")
        for j, level in enumerate(comp.levels):
            if level.column:
                where.setdefault(level.column, f"comparisons.{i}.levels.{j}.column")
    for i, dv in enumerate(settings.constraints.distinct_valid):
        where.setdefault(dv.column, f"constraints.distinct_valid.{i}.column")
        where.setdefault(dv.valid_flag, f"constraints.distinct_valid.{i}.valid_flag")
    if settings.link_type == "link_only":
        where.setdefault(settings.source_column, "source_column (link_type: link_only)")
    return where


def source_codes(rec: pl.DataFrame, settings: EntitySettings) -> pl.Series | None:
    """link_only: an integer code per prepared record naming its source (None otherwise).
    A record without a source cannot be told apart from the others' sources: refused."""
    if settings.link_type != "link_only":
        return None
    src = rec.get_column(settings.source_column)
    if src.null_count():
        raise ValueError(f"{settings.source_column}: {src.null_count()} record(s) without a source (link_only)")
    return src.rank("dense").cast(_IDX).alias("source")


def cross_source_pairs(source: pl.Series) -> int:
    """Pairs of records from different sources: (n^2 - sum of n_s^2) / 2."""
    sizes = source.value_counts().get_column("count").cast(pl.Int64)
    n = int(sizes.sum())
    return (n * n - int((sizes * sizes).sum())) // 2


def prepare(records: pl.DataFrame, settings: EntitySettings) -> pl.DataFrame:
    """The columns resolution reads, derived ones added, sorted by the unique id.

    Sorting by id makes every later step independent of the input's row order (same records,
    same pairs, same scores) and makes "row index order" equal "id order", so a pair's
    left_id < right_id is just its smaller row index. Idempotent: a frame that is already
    prepared is returned as it is (derived columns present are taken as already derived).
    """
    uid = settings.unique_id
    if uid not in records.columns:
        raise ConfigError(f"records have no unique_id column {uid!r} (have {records.columns})")
    needed = settings.needed_columns()
    where = _usage(settings)
    available = set(records.columns)
    todo = derived_todo(records.columns, settings)
    for name, expr in settings.derived.items():
        if name in todo:
            for root in pl.sql_expr(expr).meta.root_names():
                where.setdefault(root, f"derived.{name}")
            available.add(name)
    missing = sorted(
        {c for c in needed if c not in available}
        | {
            root
            for name, expr in settings.derived.items()
            if name in todo
            for root in pl.sql_expr(expr).meta.root_names()
            if root not in available
        },
        key=lambda c: where.get(c, "~"),
    )
    if missing:
        detail = ", ".join(f"{c!r} (used at {where.get(c, '?')})" for c in missing)
        raise ConfigError(f"records lack column(s) {detail}; have {records.columns}")
    frame = with_derived(records, settings)
    frame = frame.select(uid, *needed)
    ids = frame.get_column(uid)
    if ids.null_count():
        raise ValueError(f"{uid}: {ids.null_count()} null id(s)")
    if not ids.is_sorted():
        frame = frame.sort(uid)
        ids = frame.get_column(uid)
    if frame.height > 1 and (ids.slice(1) == ids.slice(0, frame.height - 1)).any():
        raise ValueError(f"{uid}: ids are not unique")
    return frame


def derived_todo(columns: Iterable[str], settings: EntitySettings, wanted: Iterable[str] | None = None) -> set[str]:
    """The derived columns to evaluate for `wanted` (default: all resolution reads), and the ones
    they read, that a frame of `columns` lacks. A derived column only other derived ones read
    (id_own, behind id_key) is not needed when those are present, so a prepared frame prepares
    again without its inputs."""
    have = set(columns)
    todo: set[str] = set()

    def need(column: str) -> None:
        if column in todo or column in have or column not in settings.derived:
            return
        todo.add(column)
        for root in pl.sql_expr(settings.derived[column]).meta.root_names():
            need(root)

    for column in settings.needed_columns() if wanted is None else wanted:
        need(column)
    return todo


def derived_steps(settings: EntitySettings, columns: Iterable[str], wanted: Iterable[str] | None = None
                  ) -> list[list[pl.Expr]]:
    """The derived columns `derived_todo` names, as `with_columns` steps: a column goes in the
    first step after every earlier-declared one it reads (later ones may read earlier ones; a
    column the frame has is taken as it is), so the steps number the longest chain of reads, not
    the columns. A front-desk query of a few rows pays per step; a million records evaluate a
    step's columns side by side."""
    todo = derived_todo(columns, settings, wanted)
    names = [n for n in settings.derived if n in todo]
    exprs = [pl.sql_expr(settings.derived[n]).alias(n) for n in names]  # the config has parsed them
    level: dict[str, int] = {}
    for name, expr in zip(names, exprs, strict=True):
        reads = [level[r] for r in expr.meta.root_names() if r in level]  # earlier-declared ones
        level[name] = 1 + max(reads) if reads else 0
    return [[e for n, e in zip(names, exprs, strict=True) if level[n] == k] for k in range(max(level.values(), default=-1) + 1)]


def with_derived(records: pl.DataFrame, settings: EntitySettings, wanted: Iterable[str] | None = None) -> pl.DataFrame:
    """`records` with the derived columns `wanted` (default: all resolution reads) evaluated
    (`derived_steps`); a column that cannot be evaluated is a ConfigError naming it."""
    frame = records
    for step in derived_steps(settings, records.columns, wanted):
        try:
            frame = frame.with_columns(step)
        except pl.exceptions.PolarsError as exc:
            culprit, reason = step[-1], exc
            for expr in step:  # which one
                try:
                    frame.select(expr)
                except pl.exceptions.PolarsError as one:
                    culprit, reason = expr, one
                    break
            name = culprit.meta.output_name()
            raise ConfigError(f"derived.{name}: cannot evaluate {settings.derived[name]!r} on the records: {reason}"
                              ) from None
    return frame


def sharing_blocks(records: pl.DataFrame, settings: EntitySettings, new_keys: pl.Series) -> pl.DataFrame:
    """The records that share a block with a new record under some rule, new records included.

    An incremental run only makes pairs that touch a new record, and a block of any rule that
    holds a new record is whole in this subset; so blocking the subset gives exactly the pairs
    (and block sizes, hence caps) that blocking everything would, at a fraction of the sorting.
    """
    uid = settings.unique_id
    frame = with_derived(records, settings)
    is_new = frame.get_column(uid).is_in(new_keys.cast(frame.schema[uid]).implode())
    keep = is_new
    for rule in settings.blocking.rules:
        ok = pl.all_horizontal([pl.col(k).is_not_null() for k in rule.keys])
        h = frame.select(pl.when(ok).then(_key_hash(rule.keys))).to_series()
        keep = keep | h.is_in(h.filter(is_new).drop_nulls().unique().implode()).fill_null(False)
    return frame.filter(keep)


def _key_hash(keys: tuple[str, ...]) -> pl.Expr:
    return pl.col(keys[0]).hash() if len(keys) == 1 else pl.struct(list(keys)).hash()


def _rule_blocks(
    rec: pl.DataFrame, keys: tuple[str, ...], cap: int, is_new: pl.Series | None
) -> tuple[pl.DataFrame, pl.Series, dict[str, int]]:
    """Pairs (l < r row indices) of one rule, each record's block number (null outside kept
    blocks), and counts. With `is_new`, only pairs touching a new record are generated: new
    records sort first in their block and only they emit pairs with the records after them."""
    n = rec.height
    cols = [pl.int_range(n, dtype=_IDX).alias("idx"), _key_hash(keys).alias("h")]
    order = ["h"]
    descending = [False]
    if is_new is not None:
        cols.append(is_new.alias("new"))
        order.append("new")
        descending.append(True)
    order.append("idx")
    descending.append(False)
    frame = (
        rec.select(*cols, pl.all_horizontal([pl.col(k).is_not_null() for k in keys]).alias("ok"))
        .filter(pl.col("ok"))
        .drop("ok")
        .sort(order, descending=descending)
    )
    runs = frame.get_column("h").rle().struct.field("len").cast(pl.UInt32)
    starts = runs.cum_sum() - runs
    bid = frame.get_column("h").rle_id()
    frame = frame.with_columns(
        bid.alias("bid"),
        runs.gather(bid).alias("size"),
        (starts.gather(bid) + runs.gather(bid)).alias("end"),
        pl.int_range(frame.height, dtype=_IDX).alias("pos"),
    )
    keep = (pl.col("size") >= 2) & (pl.col("size") <= cap)
    big = pl.col("size") > cap
    if is_new is not None:
        touched = pl.col("new").any().over("bid")
        keep, big = keep & touched, big & touched
    counts = frame.select(
        pl.col("bid").filter(keep).n_unique().alias("blocks"),
        pl.col("bid").filter(big).n_unique().alias("capped_blocks"),
    ).row(0, named=True)

    kept = frame.filter((pl.col("size") >= 2) & (pl.col("size") <= cap))
    block_of = pl.repeat(None, n, dtype=_IDX, eager=True).scatter(
        kept.get_column("idx"), kept.get_column("bid").cast(_IDX)
    )
    emitters = kept.filter(pl.col("new")) if is_new is not None else kept
    sorted_idx = frame.get_column("idx")
    pairs = (
        emitters.select(
            pl.col("idx").alias("a"),
            pl.int_ranges(pl.col("pos") + 1, pl.col("end"), dtype=_IDX).alias("p"),
        )
        .explode("p", empty_as_null=False)
        .drop_nulls("p")
    )
    other = sorted_idx.gather(pairs.get_column("p"))
    pairs = pl.DataFrame(
        {
            "l": pl.select(pl.min_horizontal(pairs.get_column("a"), other)).to_series(),
            "r": pl.select(pl.max_horizontal(pairs.get_column("a"), other)).to_series(),
        }
    )
    return pairs, block_of, counts


def _true_pairs(rec_ids: pl.Series, truth: pl.DataFrame, uid: str) -> tuple[pl.Series, int]:
    """Entity id per record (aligned with rec_ids) and the number of true pairs among them."""
    ent = (
        rec_ids.to_frame(uid)
        .join(
            truth.select(pl.col("record_key").alias(uid), "entity_id"),
            on=uid,
            how="left",
            maintain_order="left",
        )
        .get_column("entity_id")
    )
    sizes = ent.drop_nulls().value_counts().get_column("count")
    return ent, int((sizes * (sizes - 1) // 2).sum())


def _count_true(pairs: pl.DataFrame, ent: pl.Series) -> int:
    if pairs.height == 0:
        return 0
    return int((ent.gather(pairs.get_column("l")) == ent.gather(pairs.get_column("r"))).sum())


def candidate_pairs(
    records: pl.DataFrame,
    settings: EntitySettings,
    *,
    new_keys: pl.Series | None = None,
    truth: pl.DataFrame | None = None,
    population: int | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Candidate pairs from all blocking rules, and statistics per rule.

    pairs: left_id, right_id (left_id < right_id; each pair once), first_rule (Enum of rule
    names: the first rule that produced the pair).
    stats: rule, blocks, pairs, pairs_new, capped_blocks, reduction_ratio; with `truth`
    (record_key, entity_id) also pair_completeness (that rule alone) and
    cumulative_completeness (rules up to and including this one).

    `new_keys` (incremental mode): only pairs with at least one side in new_keys; `records` must
    hold the existing records too, since new ones are compared with everything sharing a block.
    Block sizes, and so caps, count all records, so the result is exactly the subset of the full
    run's pairs that touch a new record. Counts and reduction ratio then refer to those pairs;
    `population` is the number of all records when `records` is only those `sharing_blocks`.
    """
    rec = prepare(records, settings)
    uid = settings.unique_id
    n = population or rec.height
    ids = rec.get_column(uid)
    is_new = None
    if new_keys is not None:
        is_new = ids.is_in(new_keys.cast(ids.dtype).implode())
        k = int(is_new.sum())
        possible = k * (n - k) + k * (k - 1) // 2
    else:
        possible = n * (n - 1) // 2
    source = source_codes(rec, settings)
    if source is not None and new_keys is None:
        possible = cross_source_pairs(source)
    ent, true_total = (None, 0) if truth is None else _true_pairs(ids, truth, uid)

    rule_names = [r.name for r in settings.blocking.rules]
    earlier: list[pl.Series] = []
    parts: list[pl.DataFrame] = []
    stats: list[dict[str, object]] = []
    true_found = 0
    for code, rule in enumerate(settings.blocking.rules):
        pairs, block_of, counts = _rule_blocks(rec, rule.keys, settings.blocking.cap(rule), is_new)
        if source is not None and pairs.height:  # link_only: cross-source pairs only
            pairs = pairs.filter(source.gather(pairs.get_column("l")) != source.gather(pairs.get_column("r")))
        fresh = pairs
        if earlier and pairs.height:
            left, right = pairs.get_column("l"), pairs.get_column("r")
            seen = pl.select(
                pl.any_horizontal(
                    [(b.gather(left) == b.gather(right)).fill_null(False) for b in earlier]
                )
            ).to_series()
            fresh = pairs.filter(~seen)
        earlier.append(block_of)
        parts.append(fresh.with_columns(pl.lit(code, dtype=pl.UInt8).alias("rule")))
        row: dict[str, object] = {
            "rule": rule.name,
            "blocks": counts["blocks"],
            "pairs": pairs.height,
            "pairs_new": fresh.height,
            "capped_blocks": counts["capped_blocks"],
            "reduction_ratio": 1.0 - pairs.height / possible if possible else 1.0,
        }
        if ent is not None:
            found = _count_true(pairs, ent)
            true_found += _count_true(fresh, ent)
            row["pair_completeness"] = found / true_total if true_total else 1.0
            row["cumulative_completeness"] = true_found / true_total if true_total else 1.0
        stats.append(row)

    allp = pl.concat(parts) if parts else pl.DataFrame(schema={"l": _IDX, "r": _IDX, "rule": pl.UInt8})
    enum = pl.Enum(rule_names)
    out = pl.DataFrame(
        {
            "left_id": ids.gather(allp.get_column("l")),
            "right_id": ids.gather(allp.get_column("r")),
            "first_rule": pl.Series(rule_names, dtype=enum).gather(allp.get_column("rule")),
        }
    )
    return out, pl.DataFrame(stats)


def pair_completeness(pairs: pl.DataFrame, truth: pl.DataFrame) -> float:
    """Share of all true pairs (records with the same entity_id in `truth`) found in `pairs`.

    The denominator counts every true pair among truth's records, not only candidates, so this
    is blocking recall. truth: record_key, entity_id; pairs: left_id, right_id.
    """
    sizes = truth.group_by("entity_id").len().get_column("len")
    total = int((sizes * (sizes - 1) // 2).sum())
    if total == 0:
        return 1.0
    lookup = truth.select("record_key", "entity_id")
    found = (
        pairs.select("left_id", "right_id")
        .unique()
        .join(lookup.rename({"record_key": "left_id", "entity_id": "le"}), on="left_id")
        .join(lookup.rename({"record_key": "right_id", "entity_id": "re"}), on="right_id")
        .filter(pl.col("le") == pl.col("re"))
        .height
    )
    return found / total
