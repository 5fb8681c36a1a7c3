"""Splink baseline for the resolution benchmark: a standard DuckDB-backed Splink 5 deduplication.

The configuration is the one Splink's own examples would write for a person table (see its
`deduplicate_50k_synthetic` and `febrl3` DuckDB demos), mapped onto our standardised columns and
left untuned: no parameter here was chosen by looking at the truth.

- comparisons (splink.comparison_library): NameComparison on `name_norm` with term-frequency
  adjustments, DateOfBirthComparison on the ISO string of `birth_date`, LevenshteinAtThresholds on
  `id_number` (1, 2 edits), ExactMatch on `phone`, JaroWinklerAtThresholds on `address`
  (0.9, 0.7, the library default) and ExactMatch on `sex`;
- blocking rules for prediction, similar to enteronce's: `id_number`; `phone`;
  `name_pinyin` + `birth_date`; surname (first character of `name_norm`) + birth year + area
  (the six-digit county-level prefix of `area_code`);
- training as the docs do: `estimate_probability_two_random_records_match` from deterministic
  rules (`id_number`; `name_norm` + `birth_date`) with recall 0.8,
  `estimate_u_using_random_sampling(max_pairs=1e6)` (Splink's default and its febrl3 demo's value;
  the 50k demo uses 1e7: `--splink-u-pairs 1e7` in resolution.py), then EM without term
  frequencies on two blocking rules (`birth_date`; `name_norm`);
- `predict(threshold_match_probability=0.9)`, then
  `cluster_pairwise_predictions_at_threshold(..., 0.95)` (connected components). Clustering only
  uses edges at or above 0.95, so the 0.9 prediction threshold does not change the clusters; it
  only keeps the scored-pairs table small.

    python benchmarks/splink_baseline.py PARQUET   # standalone run on a standardised frame
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import polars as pl

# The columns the model uses, besides the unique id; everything else stays out of DuckDB.
SPLINK_COLUMNS = ("record_key", "name_norm", "name_pinyin", "sex", "birth_date", "id_number",
                  "phone", "address", "area_code")

PREDICT_THRESHOLD = 0.9
CLUSTER_THRESHOLD = 0.95
RANDOM_SEED = 42
# estimate_u_using_random_sampling(max_pairs=...): Splink's default (it warns that this may be too
# small; its 50k-person demo uses 1e7 and its docstring suggests 1e8-1e9 for a final model). The
# default is kept so that the baseline's time is not padded by a larger sample.
U_MAX_PAIRS = 1e6


@dataclass
class SplinkResult:
    clusters: pl.DataFrame  # record_key, cluster_key
    timings: dict[str, float] = field(default_factory=dict)
    pairs_scored: int = 0


def settings():
    """The Splink settings (a SettingsCreator) for person records."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_key",
        blocking_rules_to_generate_predictions=[
            block_on("id_number"),
            block_on("phone"),
            block_on("name_pinyin", "birth_date"),
            block_on("substr(name_norm, 1, 1)", "substr(birth_date, 1, 4)", "substr(area_code, 1, 6)"),
        ],
        comparisons=[
            cl.NameComparison("name_norm").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.LevenshteinAtThresholds("id_number", [1, 2]),
            cl.ExactMatch("phone"),
            cl.JaroWinklerAtThresholds("address", [0.9, 0.7]),
            cl.ExactMatch("sex"),
        ],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


def run_splink(
    records: pl.DataFrame, *, u_max_pairs: float = U_MAX_PAIRS, log_level: int = logging.WARNING
) -> SplinkResult:
    """The whole Splink pipeline from a standardised Polars frame to clusters, timed by stage.

    `birth_date` may be a Date (it is converted to its ISO string, as DateOfBirthComparison with
    `input_is_string=True` expects) or already a string.
    """
    import duckdb
    from splink import DuckDBAPI, Linker, block_on

    timings: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = now - mark
        mark = now

    con = duckdb.connect()
    arrow = records.select(SPLINK_COLUMNS).to_arrow()
    birth = "strftime(birth_date, '%Y-%m-%d')" if records.schema["birth_date"] == pl.Date else "birth_date"
    rel = con.from_arrow(arrow).project(f"* replace ({birth} as birth_date)")
    db_api = DuckDBAPI(connection=con)
    df_sdf = db_api.register(rel)
    linker = Linker(df_sdf, settings(), log_level=log_level)
    lap("load")

    linker.training.estimate_probability_two_random_records_match(
        [block_on("id_number"), block_on("name_norm", "birth_date")], recall=0.8
    )
    lap("prior")
    linker.training.estimate_u_using_random_sampling(max_pairs=u_max_pairs, seed=RANDOM_SEED)
    lap("u")
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("birth_date"), estimate_without_term_frequencies=True
    )
    lap("em birth_date")
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("name_norm"), estimate_without_term_frequencies=True
    )
    lap("em name_norm")

    predictions = linker.inference.predict(threshold_match_probability=PREDICT_THRESHOLD)
    lap("predict")

    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=CLUSTER_THRESHOLD
    )
    clusters = clustered.as_duckdbpyrelation().select(
        "record_key, cast(cluster_id as varchar) as cluster_key"
    ).pl()
    lap("cluster")

    pairs = predictions.as_duckdbpyrelation().aggregate("count(*)").fetchall()[0][0]
    con.close()
    return SplinkResult(clusters=clusters, timings=timings, pairs_scored=int(pairs))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parquet", help="a standardised person frame (benchmarks/.cache/persons_std_*.parquet)")
    ap.add_argument("--u-max-pairs", type=float, default=U_MAX_PAIRS)
    args = ap.parse_args()
    records = pl.read_parquet(args.parquet)
    start = time.perf_counter()
    result = run_splink(records, u_max_pairs=args.u_max_pairs, log_level=logging.INFO)
    print(f"{records.height:,} records -> {result.clusters['cluster_key'].n_unique():,} clusters "
          f"in {time.perf_counter() - start:.1f} s; {result.pairs_scored:,} pairs >= {PREDICT_THRESHOLD}; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))


if __name__ == "__main__":
    main()
