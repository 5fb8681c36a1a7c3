"""Clustering: accepted match edges -> entities, guarded against chaining.

Plain connected components chain: A~B and B~C put A and C together even when A and C carry
different valid ID numbers, and at a million records a few noisy records glue whole families and
namesakes together. So edges are applied strongest first (ties by pair, so any row order gives
the same result) and a union is refused when the merged component would hold two different *valid*
values of a column that names exactly one entity (the ID number). Invalid or missing values never
block: those records are exactly the ones that must be linked on other fields.

Reviewers beat the model. 'same' judgements are applied before any edge and ignore the ID guard
(a reviewer has looked at both records); 'different' judgements are cannot-links that no union may
violate, whatever its source. Clusters are recomputed from all edges and judgements on every run,
so a new 'different' also splits an entity that an earlier run built. When judgements contradict
each other (the same pair judged both ways, or 'same' pairs whose closure joins a 'different'
pair) the split side wins: a wrong split waits in review, a wrong merge publishes one person's
data under another person's id.

The union-find runs in Python over integer nodes numbered in record_key order, with path halving
and the smaller node as root, so every root is its component's smallest record_key and the cluster
key falls out of the find. Per edge it does two finds and one int comparison per guard column;
components that hold several valid values (only possible through 'same') take a slower set path.

Incremental runs: a component's result depends only on the edges inside its connected component
of the *unguarded* graph (all match edges plus 'same' pairs), not on the clusters it produced:
re-clustering a record can free it to join a neighbour cluster over an edge that was refused
before. `affected_records` therefore closes the clusters touched by changed pairs over the stored
edges, and `recluster` re-runs `cluster` on that closure only and splices it into the previous
membership; the result equals clustering everything. The edges may come as a frame of every
stored edge or as a function giving the edges that touch a set of records (`EdgeSource`): the
closure only ever asks for those, so an incremental run against a warehouse reads the few
thousand edges around a drop instead of every match edge of the type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

__all__ = [
    "ClusterResult",
    "ClusterStats",
    "EdgeSource",
    "affected_records",
    "cluster",
    "cluster_with_stats",
    "recluster",
    "recluster_with_stats",
    "read_once",
    "touching",
]

CLUSTER_KEY = "cluster_key"
VERDICTS = ("same", "different")

# every edge (left_id, right_id, ...), or a function giving the edges with an end among the ids
EdgeSource = pl.DataFrame | Callable[[pl.Series], pl.DataFrame]

_NONE = -1  # guard value: component holds no valid value
_MANY = -2  # guard value: component holds several (only through 'same'); see _multi


@dataclass(frozen=True)
class ClusterStats:
    """Run figures for materialisation metadata and the linkage report."""

    records: int
    clusters: int
    singletons: int
    largest: int
    size_histogram: dict[int, int]  # cluster size -> number of clusters
    edges: int  # distinct pairs offered (self-pairs dropped)
    edges_merged: int  # pairs that joined two components
    edges_redundant: int  # pairs already inside one component when reached
    edges_refused_constraint: int
    edges_refused_judgement: int
    same_applied: int  # 'same' pairs that merged or were already together
    same_refused: int  # 'same' pairs refused by a contradicting 'different'
    different: int  # cannot-link pairs in force
    judgements_ignored: int  # judgement rows naming records not in `records`

    def as_metadata(self) -> dict[str, int | str]:
        """Flat values (histogram as text) for places that take scalars only."""
        values: dict[str, int | str] = {
            k: v for k, v in self.__dict__.items() if k != "size_histogram"
        }
        values["size_histogram"] = ", ".join(
            f"{k}:{v}" for k, v in sorted(self.size_histogram.items())
        )
        return values


@dataclass(frozen=True)
class ClusterResult:
    membership: pl.DataFrame  # unique_id, cluster_key: every record, sorted by unique_id
    stats: ClusterStats
    # Edges the guards refused: left_id, right_id, match_probability, reason ('constraint' |
    # 'judgement'); candidates for the review queue.
    refused: pl.DataFrame = field(repr=False)
    # The same edges with the refusal in words naming the records involved: left_id, right_id,
    # review_reason (what the review queue shows).
    reasons: pl.DataFrame | None = field(default=None, repr=False)


def cluster(
    records: pl.DataFrame,
    edges: pl.DataFrame,
    *,
    judgements: pl.DataFrame | None = None,
    distinct_valid: Sequence[tuple[str, str]] = (),
    unique_id: str = "record_key",
) -> pl.DataFrame:
    """unique_id -> cluster_key (smallest unique_id of the cluster) for every record.

    `edges` are the accepted pairs (decision == 'match'; the caller filters, and other decisions
    are rejected rather than silently merged). See `cluster_with_stats` for the figures.
    """
    return cluster_with_stats(
        records, edges, judgements=judgements, distinct_valid=distinct_valid, unique_id=unique_id
    ).membership


def cluster_with_stats(
    records: pl.DataFrame,
    edges: pl.DataFrame,
    *,
    judgements: pl.DataFrame | None = None,
    distinct_valid: Sequence[tuple[str, str]] = (),
    unique_id: str = "record_key",
) -> ClusterResult:
    """`cluster`, plus statistics and the refused edges (which deserve a reviewer's look)."""
    guard_columns = [c for pair in distinct_valid for c in pair]
    missing = [c for c in guard_columns if c not in records.columns]
    if missing:
        raise ValueError(f"records: guard columns missing: {missing}")
    # Nodes are records in key order, so node order is key order: ties, roots and the cluster
    # key all follow from integer comparisons, and the output comes out sorted.
    ordered = records.select(list(dict.fromkeys([unique_id, *guard_columns]))).sort(unique_id)
    keys = _check_keys(ordered[unique_id], unique_id)
    index = keys.to_frame().with_row_index("_node")

    pairs = _edge_nodes(edges, index, unique_id)
    same, different, ignored = _judgement_nodes(judgements, index, unique_id)
    uf = _GuardedUnionFind(keys.len(), _guard_codes(ordered, distinct_valid))
    for k, (a, b) in enumerate(
        zip(different["_l"].to_list(), different["_r"].to_list(), strict=True)
    ):
        uf.cannot_link(a, b, k)
    same_outcome = [
        uf.union(a, b, force=True)
        for a, b in zip(same["_l"].to_list(), same["_r"].to_list(), strict=True)
    ]
    outcome = uf.union_edges(pairs["_l"].to_list(), pairs["_r"].to_list())

    roots = _resolve_roots(uf.parent)
    membership = pl.DataFrame([keys, keys.gather(roots).alias(CLUSTER_KEY)])
    refused = pairs.with_columns(pl.Series("_why", outcome, dtype=pl.Int8)).filter(
        pl.col("_why") >= _REFUSED_CONSTRAINT
    )
    refused = pl.DataFrame(
        [
            keys.gather(refused["_l"]).alias("left_id"),
            keys.gather(refused["_r"]).alias("right_id"),
            refused["p"].alias("match_probability"),
            refused["_why"]
            .replace_strict(
                {_REFUSED_CONSTRAINT: "constraint", _REFUSED_JUDGEMENT: "judgement"},
                return_dtype=pl.String,
            )
            .alias("reason"),
        ]
    )
    reasons = _refusal_reasons(refused, membership, ordered, distinct_valid, different, keys, unique_id)
    tally = Counter(outcome)
    same_tally = Counter(same_outcome)
    stats = _stats(
        roots,
        edges=pairs.height,
        merged=tally[_MERGED],
        redundant=tally[_REDUNDANT],
        refused_constraint=tally[_REFUSED_CONSTRAINT],
        refused_judgement=tally[_REFUSED_JUDGEMENT],
        same_applied=same_tally[_MERGED] + same_tally[_REDUNDANT],
        same_refused=same_tally[_REFUSED_JUDGEMENT],
        different=different.height,
        judgements_ignored=ignored,
    )
    return ClusterResult(membership=membership, stats=stats, refused=refused, reasons=reasons)


def _refusal_reasons(
    refused: pl.DataFrame,
    membership: pl.DataFrame,
    ordered: pl.DataFrame,
    distinct_valid: Sequence[tuple[str, str]],
    different: pl.DataFrame,
    keys: pl.Series,
    unique_id: str,
) -> pl.DataFrame:
    """The refused edges with why, in words naming records (left_id, right_id, review_reason).

    Components only grow, so the final clusters of an edge's two records still hold what refused
    it: two different valid values (the record of each side holding its own is named) or the two
    records of a 'different' judgement. Refused edges are few; this runs in Python over them."""
    out = {"left_id": [], "right_id": [], "review_reason": []}
    schema = {"left_id": keys.dtype, "right_id": keys.dtype, "review_reason": pl.String}
    if refused.height == 0:
        return pl.DataFrame(out, schema=schema)
    cluster_of = dict(zip(membership[unique_id].to_list(), membership[CLUSTER_KEY].to_list(), strict=True))
    involved = set(cluster_of[k] for k in refused["left_id"].to_list()) | set(
        cluster_of[k] for k in refused["right_id"].to_list())
    members = membership.filter(pl.col(CLUSTER_KEY).is_in(pl.Series(list(involved), dtype=keys.dtype).implode()))
    # per guard column: cluster -> {valid value: smallest record holding it}
    holders: list[tuple[str, dict]] = []
    for value, flag in distinct_valid:
        rows = (
            ordered.join(members, on=unique_id)
            .filter(pl.col(flag).fill_null(False) & pl.col(value).is_not_null())
            .group_by(CLUSTER_KEY, value)
            .agg(pl.col(unique_id).min())
        )
        by_cluster: dict = {}
        for c, v, k in rows.select(CLUSTER_KEY, value, unique_id).iter_rows():
            by_cluster.setdefault(c, {})[v] = k
        holders.append((value, by_cluster))
    cannot: dict = {}
    for a, b in zip(keys.gather(different["_l"]).to_list(), keys.gather(different["_r"]).to_list(), strict=True):
        pair = (cluster_of[a], cluster_of[b])
        cannot.setdefault(pair, (a, b))
        cannot.setdefault(pair[::-1], (a, b))
    for left, right, why in refused.select("left_id", "right_id", "reason").iter_rows():
        cl, cr = cluster_of[left], cluster_of[right]
        text = None
        if why == "judgement" and (cl, cr) in cannot:
            a, b = cannot[(cl, cr)]
            text = f"refused by a judgement: reviewer judged {a} and {b} different"
        elif why == "constraint":
            for value, by_cluster in holders:
                vl, vr = by_cluster.get(cl, {}), by_cluster.get(cr, {})
                only_l, only_r = set(vl) - set(vr), set(vr) - set(vl)
                if only_l and only_r:
                    hl, hr = min(vl[v] for v in only_l), min(vr[v] for v in only_r)
                    label = " ".join("ID" if w == "id" else w for w in value.split("_"))
                    text = (f"refused by the ID guard: would join entity of {hl} with entity of {hr}, "
                            f"each holding another valid {label} ({value})")
                    break
        if text is None:  # not expected: say what the guard said
            text = f"refused by {'a judgement' if why == 'judgement' else 'the ID guard'}"
        out["left_id"].append(left)
        out["right_id"].append(right)
        out["review_reason"].append(text)
    return pl.DataFrame(out, schema=schema)


# --- incremental -------------------------------------------------------------------------------


def affected_records(
    previous: pl.DataFrame,
    changed: pl.DataFrame,
    edges: EdgeSource,
    *,
    judgements: pl.DataFrame | None = None,
    unique_id: str = "record_key",
) -> pl.Series:
    """Records whose cluster may change when the pairs in `changed` are new (or re-scored).

    Starts from the previous clusters that `changed` touches (new records count as their own
    cluster) and widens over stored links (all `edges` plus 'same' judgements) until closed: a
    record freed by re-clustering may join a neighbouring cluster over an edge that was refused
    before, so stopping at the touched clusters would diverge from a full run. The closure is at
    most the touched connected components of the unguarded graph; in practice one or two steps.

    previous: unique_id, cluster_key (any cluster label). changed: left_id, right_id: new or
    re-scored pairs, pairs that stopped being matches, both records of new or withdrawn
    judgements, (key, key) for a record that changed. edges: every accepted pair now stored, or
    the function giving those that touch a set of records (EdgeSource).
    """
    member = previous.select(pl.col(unique_id), pl.col(CLUSTER_KEY))
    same = None
    if judgements is not None and judgements.height:
        same = judgements.filter(pl.col("verdict") == "same").select("left_id", "right_id")

    def widen(ids: pl.Series) -> pl.Series:
        """ids plus every record of their previous clusters (a record without one stands alone).
        Every step probes the big frames with small sets, never the other way round."""
        ids = ids.unique()
        hit = member.filter(pl.col(unique_id).is_in(ids.implode()))
        clusters = hit[CLUSTER_KEY].unique().implode()
        inside = member.filter(pl.col(CLUSTER_KEY).is_in(clusters))[unique_id]
        alone = ids.filter(~ids.is_in(hit[unique_id].implode()))
        return pl.concat([inside, alone]).unique()

    current = widen(pl.concat([changed["left_id"], changed["right_id"]]).rename(unique_id))
    while True:
        # orientation and duplicates do not matter for reachability
        links = [touching(edges, current).select("left_id", "right_id")]
        if same is not None:
            links.append(touching(same, current))
        link = pl.concat(links, how="vertical_relaxed")
        inside = current.implode()
        border = link.filter(pl.col("left_id").is_in(inside) != pl.col("right_id").is_in(inside))
        if border.height == 0:
            return current.sort()
        outside = pl.concat([border["left_id"], border["right_id"]]).unique()
        outside = outside.filter(~outside.is_in(inside)).rename(unique_id)
        current = pl.concat([current, widen(outside)]).unique()


def touching(edges: EdgeSource, ids: pl.Series) -> pl.DataFrame:
    """The edges with an end among `ids` (a frame filtered, or what the source gives for them)."""
    if not isinstance(edges, pl.DataFrame):
        return edges(ids)
    among = ids.implode()
    return edges.filter(pl.col("left_id").is_in(among) | pl.col("right_id").is_in(among))


def read_once(read: Callable[[pl.Series], pl.DataFrame]) -> Callable[[pl.Series], pl.DataFrame]:
    """`read` (the edges touching some records) asked about each record once: the closure asks
    again for every record it grew from, and the scope's edges are those of its last step."""
    asked = pl.Series("id", [], pl.String)
    held: pl.DataFrame | None = None

    def source(ids: pl.Series) -> pl.DataFrame:
        nonlocal asked, held
        distinct = ids.unique()
        new = distinct.filter(~distinct.is_in(asked.implode()))
        if new.len() or held is None:
            got = read(new)
            held = got if held is None else pl.concat([held, got]).unique(["left_id", "right_id"],
                                                                          maintain_order=True)
            asked = pl.concat([asked, new.rename("id").cast(pl.String)])
        return touching(held, ids)

    return source


def recluster(
    records: pl.DataFrame,
    edges: EdgeSource,
    previous: pl.DataFrame,
    changed: pl.DataFrame,
    *,
    judgements: pl.DataFrame | None = None,
    distinct_valid: Sequence[tuple[str, str]] = (),
    unique_id: str = "record_key",
    scope_only: bool = False,
    new: pl.Series | None = None,
    gone: pl.Series | None = None,
) -> pl.DataFrame:
    """Full-run membership computed by re-clustering only what `changed` can reach.

    `new` / `gone`: the records absent from `previous` / from `records`, when the caller knows.
    With `scope_only`, just the re-clustered records are returned: every other record keeps
    its previous cluster, so a caller that holds those need not copy a million of them.

    previous: unique_id, cluster_key, where cluster_key may be any cluster label (the stored
    entity ids do). changed: as for `affected_records`. records: all current records; those
    absent from `previous` are new, and previous records absent from `records` are gone, so their
    old clusters are re-clustered (the gone record may have been the bridge). edges, judgements:
    everything stored, changes included. Untouched clusters are copied from `previous`.
    """
    return recluster_with_stats(
        records, edges, previous, changed, judgements=judgements, distinct_valid=distinct_valid,
        unique_id=unique_id, scope_only=scope_only, new=new, gone=gone,
    )[0]


def recluster_with_stats(
    records: pl.DataFrame,
    edges: EdgeSource,
    previous: pl.DataFrame,
    changed: pl.DataFrame,
    *,
    judgements: pl.DataFrame | None = None,
    distinct_valid: Sequence[tuple[str, str]] = (),
    unique_id: str = "record_key",
    scope_only: bool = False,
    new: pl.Series | None = None,
    gone: pl.Series | None = None,
) -> tuple[pl.DataFrame, ClusterResult]:
    """`recluster`, plus the re-clustered scope's `ClusterResult`: its refused edges are exactly
    those a full run refuses among the scope's records (the scope holds whole components of the
    unguarded graph, so the edges inside it are applied as a full run applies them)."""
    if new is None or gone is None:  # a caller that compared the two sets already passes them
        keys_now, keys_before = records.select(unique_id), previous.select(unique_id)
        gone = keys_before.join(keys_now, on=unique_id, how="anti")[unique_id]
        new = keys_now.join(keys_before, on=unique_id, how="anti")[unique_id]
    changed = pl.concat(
        [changed.select("left_id", "right_id"), pl.DataFrame({"left_id": gone, "right_id": gone})],
        how="vertical_relaxed",
    )
    affected = affected_records(
        previous, changed, edges, judgements=judgements, unique_id=unique_id
    )
    scope_ids = pl.concat([affected, new]).unique()
    scope = scope_ids.implode()
    both_in = pl.col("left_id").is_in(scope) & pl.col("right_id").is_in(scope)
    result = cluster_with_stats(
        records.filter(pl.col(unique_id).is_in(scope)),
        touching(edges, scope_ids).filter(both_in),
        judgements=None if judgements is None else judgements.filter(both_in),
        distinct_valid=distinct_valid,
        unique_id=unique_id,
    )
    sub = result.membership
    if scope_only:
        return sub, result
    # Untouched clusters are whole, so relabelling them by their smallest key gives the label a
    # full run would give, whatever labels `previous` used (cluster keys or entity ids).
    kept = (
        previous.select(unique_id, CLUSTER_KEY)
        .filter(~pl.col(unique_id).is_in(scope))  # gone records are in scope
        .with_columns(pl.col(unique_id).min().over(CLUSTER_KEY).alias(CLUSTER_KEY))
        .sort(unique_id)
    )
    return kept.merge_sorted(sub, key=unique_id), result


# --- union-find --------------------------------------------------------------------------------

_MERGED, _REDUNDANT, _REFUSED_CONSTRAINT, _REFUSED_JUDGEMENT = 0, 1, 2, 3


class _GuardedUnionFind:
    """Union-find whose roots carry the guard values and cannot-link tokens of their component.

    Guard value per column per root: _NONE, one value code (>= 0), or _MANY with the set in
    `_multi`. A cannot-link k puts token 2k on one record and 2k+1 on the other; two components
    may not merge when one holds t and the other t ^ 1.
    """

    def __init__(self, size: int, guards: list[list[int]]) -> None:
        self.parent = list(range(size))
        if not guards:  # no guard columns: one that never blocks keeps the fast path usable
            guards = [[_NONE] * size]
        self.guards = guards
        self._multi: list[dict[int, frozenset[int]]] = [{} for _ in guards]
        self._tokens: dict[int, set[int]] = {}

    def cannot_link(self, a: int, b: int, k: int) -> None:
        self._tokens.setdefault(a, set()).add(2 * k)
        self._tokens.setdefault(b, set()).add(2 * k + 1)

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = a = parent[parent[a]]
        return a

    def union(self, a: int, b: int, *, force: bool = False) -> int:
        """One union through the general path (judgements, and edges that need the slow checks)."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return _REDUNDANT
        if ra > rb:
            ra, rb = rb, ra
        if self._separated(ra, rb):
            return _REFUSED_JUDGEMENT
        if not force:
            for c in range(len(self.guards)):
                if self._clash(c, ra, rb):
                    return _REFUSED_CONSTRAINT
        self._join(ra, rb)
        return _MERGED

    def union_edges(self, lefts: list[int], rights: list[int]) -> list[int]:
        """Apply edges in the given order; one outcome code per edge.

        This is the hot loop: finds and the common single-guard checks are inlined, and only
        components with several guard values or with cannot-link tokens take `union`.
        """
        parent = self.parent
        guards = self.guards
        tokens = self._tokens
        single = guards[0] if len(guards) == 1 else None
        outcome = [_MERGED] * len(lefts)
        for i, (a, b) in enumerate(zip(lefts, rights, strict=True)):
            while parent[a] != a:
                parent[a] = a = parent[parent[a]]
            while parent[b] != b:
                parent[b] = b = parent[parent[b]]
            if a == b:
                outcome[i] = _REDUNDANT
                continue
            if single is None or (tokens and (a in tokens or b in tokens)):
                outcome[i] = self.union(a, b)
                continue
            va, vb = single[a], single[b]
            if va != vb:
                if va >= 0 and vb >= 0:
                    outcome[i] = _REFUSED_CONSTRAINT
                    continue
                if va == _MANY or vb == _MANY:
                    outcome[i] = self.union(a, b)
                    continue
            elif va == _MANY:
                outcome[i] = self.union(a, b)
                continue
            # Merge: smaller node is root; adopt the other side's value when ours is _NONE.
            if a > b:
                a, b = b, a
                va, vb = vb, va
            parent[b] = a
            if va == _NONE:
                single[a] = vb
        return outcome

    def _values(self, c: int, root: int) -> frozenset[int]:
        v = self.guards[c][root]
        if v == _NONE:
            return frozenset()
        if v == _MANY:
            return self._multi[c][root]
        return frozenset((v,))

    def _clash(self, c: int, ra: int, rb: int) -> bool:
        # With single values this is "two different valid values". A component that already
        # holds several (joined by a reviewer) may still take records whose values it holds.
        va, vb = self._values(c, ra), self._values(c, rb)
        return not (va <= vb or vb <= va)

    def _separated(self, ra: int, rb: int) -> bool:
        ta, tb = self._tokens.get(ra), self._tokens.get(rb)
        if not ta or not tb:
            return False
        if len(ta) > len(tb):
            ta, tb = tb, ta
        return any(t ^ 1 in tb for t in ta)

    def _join(self, ra: int, rb: int) -> None:
        """Attach rb under ra (ra < rb) and merge guard values and tokens."""
        self.parent[rb] = ra
        for c, column in enumerate(self.guards):
            merged = self._values(c, ra) | self._values(c, rb)
            self._multi[c].pop(rb, None)
            if len(merged) > 1:
                column[ra] = _MANY
                self._multi[c][ra] = merged
            else:
                column[ra] = next(iter(merged)) if merged else _NONE
        tb = self._tokens.pop(rb, None)
        if tb:
            ta = self._tokens.get(ra)
            if ta is None:
                self._tokens[ra] = tb
            elif len(ta) >= len(tb):
                ta |= tb
            else:
                tb |= ta
                self._tokens[ra] = tb


def _resolve_roots(parent: list[int]) -> pl.Series:
    """Root of every node by pointer jumping in Polars (log-depth gathers, no Python loop)."""
    current = pl.Series("root", parent, dtype=pl.UInt32)
    while True:
        jumped = current.gather(current)
        if (jumped == current).all():
            return current
        current = jumped


# --- inputs ------------------------------------------------------------------------------------


def _all_distinct(keys: pl.Series) -> bool:
    """Distinct 64-bit hashes prove distinct keys; only a hash tie pays for comparing strings."""
    return keys.hash().n_unique() == keys.len() or keys.n_unique() == keys.len()


def _check_keys(keys: pl.Series, unique_id: str) -> pl.Series:
    if keys.null_count():
        raise ValueError(f"records: {unique_id} has {keys.null_count()} null values")
    if not _all_distinct(keys):
        raise ValueError(f"records: {unique_id} is not unique")
    return keys


def _to_nodes(frame: pl.DataFrame, index: pl.DataFrame, unique_id: str) -> pl.DataFrame:
    """Adds _l/_r node numbers (null for unknown records), ordered so that _l < _r.

    Both ends are looked up in one join, so the million-key index is hashed once, not twice."""
    n = frame.height
    ends = pl.concat([frame["left_id"], frame["right_id"]]).to_frame(unique_id)
    found = ends.join(index, on=unique_id, how="left", maintain_order="left")["_node"]
    a, b = pl.col("_a"), pl.col("_b")
    unknown = a.is_null() | b.is_null()
    return frame.with_columns(found.head(n).alias("_a"), found.tail(n).alias("_b")).with_columns(
        pl.when(unknown).then(None).when(a < b).then(a).otherwise(b).alias("_l"),
        pl.when(unknown).then(None).when(a < b).then(b).otherwise(a).alias("_r"),
    )


def _edge_nodes(edges: pl.DataFrame, index: pl.DataFrame, unique_id: str) -> pl.DataFrame:
    """Distinct pairs as nodes (_l < _r) with their strongest score, in processing order."""
    if "decision" in edges.columns:
        other = edges.filter(pl.col("decision") != "match").height
        if other:
            raise ValueError(
                f"edges: {other} rows have decision other than 'match'; filter before clustering"
            )
    p = pl.col("match_probability").cast(pl.Float64)
    bad = edges.filter(p.is_null() | p.is_nan()).height
    if bad:
        raise ValueError(f"edges: {bad} rows have a null or NaN match_probability")
    frame = edges.select(
        pl.col("left_id").cast(index[unique_id].dtype),
        pl.col("right_id").cast(index[unique_id].dtype),
        p.alias("p"),
    )
    nodes = _to_nodes(frame, index, unique_id)
    unknown = nodes.filter(pl.col("_l").is_null())
    if unknown.height:
        first = unknown.sort("left_id", "right_id").row(0)
        raise ValueError(
            f"edges: {unknown.height} pairs name records missing from records.{unique_id}, "
            f"e.g. {first[0]!r}-{first[1]!r}"
        )
    # One row per pair at its strongest score, so duplicates cannot depend on row order; then
    # strongest first, ties by pair (node order is key order).
    return (
        nodes.filter(pl.col("_l") != pl.col("_r"))
        .group_by("_l", "_r")
        .agg(pl.col("p").max())
        .sort(["p", "_l", "_r"], descending=[True, False, False])
    )


def _judgement_nodes(
    judgements: pl.DataFrame | None, index: pl.DataFrame, unique_id: str
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """('same' pairs, 'different' pairs, rows ignored), as sorted node pairs.

    A pair judged both ways counts as 'different'. Judgements naming records that are gone are
    ignored, not an error: records leave the hub, judgements stay in the store."""
    empty = pl.DataFrame(schema={"_l": pl.UInt32, "_r": pl.UInt32})
    if judgements is None or judgements.height == 0:
        return empty, empty, 0
    bad = judgements.filter(~pl.col("verdict").is_in(VERDICTS) | pl.col("verdict").is_null())
    if bad.height:
        raise ValueError(
            f"judgements: verdict must be one of {VERDICTS}, got {bad['verdict'][0]!r}"
        )
    dtype = index[unique_id].dtype
    frame = judgements.select(
        pl.col("left_id").cast(dtype), pl.col("right_id").cast(dtype), "verdict"
    )
    nodes = _to_nodes(frame, index, unique_id)
    usable = nodes.filter(pl.col("_l").is_not_null() & (pl.col("_l") != pl.col("_r")))
    verdict = (
        usable.group_by("_l", "_r")
        .agg((pl.col("verdict") == "different").any().alias("different"))
        .sort("_l", "_r")
    )
    same = verdict.filter(~pl.col("different")).select("_l", "_r")
    different = verdict.filter(pl.col("different")).select("_l", "_r")
    return same.cast(empty.schema), different.cast(empty.schema), judgements.height - usable.height


def _guard_codes(
    ordered: pl.DataFrame, distinct_valid: Sequence[tuple[str, str]]
) -> list[list[int]]:
    """Per guard column, per node: an int standing for the valid value, or _NONE.

    A 63-bit hash is a cheap stand-in for the value; the distinct counts are compared and a
    collision (never seen, but possible) falls back to exact dense ranks.
    """
    out = []
    for value, flag in distinct_valid:
        valid = pl.when(pl.col(flag).fill_null(False) & pl.col(value).is_not_null()).then(
            pl.col(value)
        )
        # hash() gives null a value too: keep "no valid value" null until the very end.
        frame = ordered.select(valid.alias("v")).with_columns(
            pl.when(pl.col("v").is_not_null())
            .then((pl.col("v").hash() // 2).cast(pl.Int64))
            .alias("h")
        )
        distinct_v, distinct_h = frame.select(
            pl.col("v").drop_nulls().n_unique(), pl.col("h").drop_nulls().n_unique()
        ).row(0)
        code = pl.col("h") if distinct_v == distinct_h else pl.col("v").rank("dense")
        out.append(frame.select(code.cast(pl.Int64).fill_null(_NONE)).to_series().to_list())
    return out


def _stats(roots: pl.Series, **counts: int) -> ClusterStats:
    sizes = roots.value_counts(name="size")["size"]
    histogram = sizes.value_counts(name="clusters").sort("size")
    size_histogram = dict(
        zip(histogram["size"].to_list(), histogram["clusters"].to_list(), strict=True)
    )
    return ClusterStats(
        records=roots.len(),
        clusters=sizes.len(),
        singletons=size_histogram.get(1, 0),
        largest=int(sizes.max() or 0),
        size_histogram=size_histogram,
        edges=counts["edges"],
        edges_merged=counts["merged"],
        edges_redundant=counts["redundant"],
        edges_refused_constraint=counts["refused_constraint"],
        edges_refused_judgement=counts["refused_judgement"],
        same_applied=counts["same_applied"],
        same_refused=counts["same_refused"],
        different=counts["different"],
        judgements_ignored=counts["judgements_ignored"],
    )
