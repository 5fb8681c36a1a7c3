"""Synthetic station network: true persons and organisations, as ~N station systems export them.

`simulate_network(out, stations=..., persons=..., seed=...)` writes, under `out/`:

- `stations.yaml`: the network's config (valid for `connectors.config.load_stations`);
- `subscriptions.yaml`: a feed subscriber per station plus a department (`feeds.config`);
- `stations/<station_id>/residents.<csv|tsv|jsonl|xlsx>`, `organisations.<...>` and the housing
  register (实有房屋登记) `housing.<...>`: one row per dwelling (a room) where the simulated
  households live or lived, with its owner or householder (see `dwellings.py`);
- SQL stations' tables, by default in `station_systems.sqlite` (or in the database at `sql_url`);
- `truth.csv`: `record_key,entity_id,quirks` for every record written, broken rows included;
  entity ids tell the kinds apart (P... persons, O... organisations, H... dwellings); `quirks`
  lists the `QUIRKS` tags a person record carries (or a dwelling record's `DWELLING_QUIRKS`;
  comma-separated, empty for none and for organisations), so an evaluation can score each
  phenomenon on its own.

Same arguments give byte-identical files. All data is synthetic.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from connectors.simulate.config_writer import write_stations_yaml
from connectors.simulate.dwellings import dwelling_quirks, dwelling_registrations, true_dwellings
from connectors.simulate.subscriptions_writer import write_subscriptions_yaml
from connectors.simulate.network import Network, build_network
from connectors.simulate.noise import DEFAULT_NOISE, NoiseRates, dwelling_noise, organisation_noise, person_noise
from connectors.simulate.orgs import generate_organisations, organisation_residences
from connectors.simulate.people import (
    DEFAULT_POPULATION,
    Population,
    PopulationRates,
    generate_population,
    person_residences,
)
from connectors.simulate.quirks import QUIRKS, person_quirks
from connectors.simulate.render import render_dwellings, render_organisations, render_persons
from connectors.simulate.rng import Rng
from connectors.simulate.writers import WrittenSource, write_file_source, write_sql_source

__all__ = [
    "DEFAULT_NOISE", "DEFAULT_POPULATION", "QUIRKS", "NoiseRates", "PopulationRates", "SimulationSummary",
    "SourceSummary", "simulate_network",
]

SQLITE_FILE = "station_systems.sqlite"
STATIONS_YAML = "stations.yaml"
SUBSCRIPTIONS_YAML = "subscriptions.yaml"
TRUTH_CSV = "truth.csv"
BROKEN_MIN_PERSONS = 3000  # broken rows only in runs at least this big

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SourceSummary:
    station_id: str
    source: str  # "residents" | "organisations" | "housing"
    entity: str  # "person" | "organisation" | "dwelling"
    kind: str  # csv | tsv | jsonl | xlsx | sql
    path: Path | None  # file written (None for sql)
    table: str | None  # sql table name
    encoding: str | None  # actual encoding of csv/tsv/jsonl bytes; None for xlsx/sql
    declared_encoding: str  # as in stations.yaml
    header_style: str  # zh | pinyin | en
    date_format: str | None  # birth-date format (persons)
    records: int
    broken_record_keys: tuple[str, ...]


@dataclass(frozen=True)
class SimulationSummary:
    out: Path
    stations_yaml: Path
    truth_csv: Path
    sql_url: str | None  # URL of the SQL stations' database as written in stations.yaml
    sql_database: Path | None  # the default SQLite file, when used
    seed: int
    stations: int
    persons: int  # true persons
    organisations: int  # true organisations
    person_records: int
    organisation_records: int
    records_per_station: dict[str, int]  # all sources
    sources_per_kind: dict[str, int]
    sources_per_encoding: dict[str, int]  # csv/tsv/jsonl sources by actual encoding
    sources_per_header_style: dict[str, int]
    stations_per_date_format: dict[str, int]
    movers: int  # persons recorded at more than one station
    twins: int  # twin pairs
    namesakes: int  # persons given a stranger's name and birth date
    duplicates: int  # records a station entered twice under another local id
    organisations_at_two_stations: int
    broken_record_keys: tuple[str, ...]  # rows written unreadable on purpose (still in truth.csv)
    noise: dict[str, int]  # values changed per noise kind ("person.homophone", ...)
    sources: tuple[SourceSummary, ...]
    paths: tuple[Path, ...]  # every file written
    dwellings: int = 0  # true dwellings (rooms) in the housing registers
    dwelling_records: int = 0
    dwellings_in_two_registers: int = 0  # re-registered at their station or in a neighbour's register


def _mark_broken(net: Network, persons: int, seed: int) -> None:
    if persons < BROKEN_MIN_PERSONS:
        return
    candidates = [s.idx for s in net.stations if s.kind in ("csv", "tsv")]
    if not candidates:
        return
    k = min(len(candidates), max(2, net.n // 300))
    chosen = set(Rng(seed).py("broken").sample(candidates, k))
    net.stations[:] = [dataclasses.replace(s, broken=True) if s.idx in chosen else s for s in net.stations]


def simulate_network(
    out: Path,
    *,
    stations: int,
    persons: int,
    seed: int,
    sql_url: str | None = None,
    organisations: int | None = None,
    progress: Progress | None = None,
    noise: NoiseRates | None = None,
    population: PopulationRates | None = None,
    dwellings: bool = True,
) -> SimulationSummary:
    """Generate a synthetic station network under `out` (see the module docstring). With
    `dwellings=False` no housing registers are written (persons and organisations are the same
    either way: each kind draws from streams of its own)."""
    _check_sizes(stations, persons, organisations)
    noise = noise or DEFAULT_NOISE
    population = population or DEFAULT_POPULATION
    report = progress or (lambda stage, done, total: None)
    out = _fresh_output(Path(out))
    rng = Rng(seed)

    net = _network_step(stations, persons, seed, population, report)
    pop, p_rec, p_noise = _persons_step(rng, net, persons, population, noise, report)
    n_orgs, o_rec, o_noise = _organisations_step(rng, net, pop, persons, organisations, noise, report)
    n_dw, d_rec, d_noise = _dwellings_step(rng, net, pop, noise, report) if dwellings else (0, None, {})

    frames = {"person": p_rec, "organisation": o_rec, "dwelling": d_rec}
    sources_by_station, sql_config_url, sql_db = _write_sources(out, net, frames, sql_url, report)
    truth_path = _write_truth(out, p_rec, o_rec, d_rec, report)
    yaml_path = out / STATIONS_YAML
    write_stations_yaml(yaml_path, net.stations, sources_by_station, sql_config_url)
    write_subscriptions_yaml(out / SUBSCRIPTIONS_YAML, net.stations, dwellings=dwellings)

    all_sources = [s for st in net.stations for s in sources_by_station[st.id]]
    paths = [yaml_path, truth_path] + [s.path for s in all_sources if s.path is not None]
    if sql_db is not None:
        paths.append(sql_db)
    noise_counts = {f"{kind}.{k}": v for kind, counts in
                    (("person", p_noise), ("organisation", o_noise), ("dwelling", d_noise)) for k, v in counts.items()}
    return _summary(
        out=out, stations_yaml=yaml_path, truth_csv=truth_path, sql_url=sql_config_url, sql_database=sql_db,
        seed=seed, net=net, persons=persons, organisations=n_orgs, dwellings=n_dw, pop=pop, p_rec=p_rec,
        o_rec=o_rec, d_rec=d_rec, all_sources=all_sources, noise=dict(sorted(noise_counts.items())), paths=paths)


def _check_sizes(stations: int, persons: int, organisations: int | None) -> None:
    if stations < 1:
        raise ValueError("stations must be >= 1")
    if persons < 1:
        raise ValueError("persons must be >= 1")
    if organisations is not None and organisations < 0:
        raise ValueError("organisations must be >= 0")


def _fresh_output(out: Path) -> Path:
    """The output folder, without the station exports of an earlier run."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "stations").is_dir():
        shutil.rmtree(out / "stations")
    return out


def _network_step(stations: int, persons: int, seed: int, population: PopulationRates,
                  report: Progress) -> Network:
    report("network", 0, 1)
    net = build_network(stations, seed, no_birth_date=population.stations_without_birth_date)
    _mark_broken(net, persons, seed)
    report("network", 1, 1)
    return net


def _persons_step(rng: Rng, net: Network, persons: int, population: PopulationRates, noise: NoiseRates,
                  report: Progress) -> tuple[Population, pl.DataFrame, dict[str, int]]:
    report("persons", 0, 1)
    pop = generate_population(rng, net, persons, population)
    p_rec = person_residences(rng, pop, population)
    p_rec = render_persons(rng, net, pop, p_rec)
    p_rec, p_noise = person_noise(rng, p_rec, noise)
    p_rec = p_rec.with_columns(person_quirks(pop, p_rec))
    report("persons", 1, 1)
    return pop, p_rec, p_noise


def _organisations_step(rng: Rng, net: Network, pop: Population, persons: int, organisations: int | None,
                        noise: NoiseRates, report: Progress
                        ) -> tuple[int, pl.DataFrame | None, dict[str, int]]:
    n_orgs = max(1, persons // 20) if organisations is None else int(organisations)
    report("organisations", 0, 1)
    if n_orgs > 0 and any(s.has_orgs for s in net.stations):
        orgs = generate_organisations(rng, net, pop, n_orgs)
        o_rec = organisation_residences(rng, net, orgs)
        o_rec = render_organisations(rng, net, orgs, o_rec)
        o_rec, o_noise = organisation_noise(rng, o_rec, noise)
    else:
        n_orgs, o_rec, o_noise = 0, None, {}
    report("organisations", 1, 1)
    return n_orgs, o_rec, o_noise


def _dwellings_step(rng: Rng, net: Network, pop: Population, noise: NoiseRates, report: Progress
                    ) -> tuple[int, pl.DataFrame, dict[str, int]]:
    """The housing registers: the households' dwellings, registered (see simulate.dwellings)."""
    report("dwellings", 0, 1)
    dw = true_dwellings(rng, net, pop)
    d_rec = dwelling_registrations(rng, net, pop, dw)
    d_rec = render_dwellings(rng, net, d_rec)
    d_rec, d_noise = dwelling_noise(rng, d_rec, noise)
    d_rec = d_rec.with_columns(dwelling_quirks(d_rec))
    report("dwellings", 1, 1)
    return dw.height, d_rec, d_noise


def _write_truth(out: Path, p_rec: pl.DataFrame, o_rec: pl.DataFrame | None, d_rec: pl.DataFrame | None,
                 report: Progress) -> Path:
    """truth.csv: record_key, entity_id, quirks; station by station, persons first, then
    organisations, then dwellings (entity ids tell the kinds apart: P..., O..., H...)."""
    report("truth", 0, 1)
    parts = [p_rec.select("station_idx", pl.lit(0).alias("_src"), "record_key", "entity_id", "quirks")]
    if o_rec is not None:
        parts.append(o_rec.select("station_idx", pl.lit(1).alias("_src"), "record_key", "entity_id",
                                  pl.lit("").alias("quirks")))
    if d_rec is not None:
        parts.append(d_rec.select("station_idx", pl.lit(2).alias("_src"), "record_key", "entity_id", "quirks"))
    truth = pl.concat(parts).sort(["station_idx", "_src"], maintain_order=True)
    truth_path = out / TRUTH_CSV
    truth.select("record_key", "entity_id", "quirks").write_csv(truth_path)
    report("truth", 1, 1)
    return truth_path


def _summary(*, out: Path, stations_yaml: Path, truth_csv: Path, sql_url: str | None, sql_database: Path | None,
             seed: int, net: Network, persons: int, organisations: int, dwellings: int, pop: Population,
             p_rec: pl.DataFrame, o_rec: pl.DataFrame | None, d_rec: pl.DataFrame | None,
             all_sources: list[WrittenSource], noise: dict[str, int], paths: list[Path]) -> SimulationSummary:
    movers = int(
        p_rec.group_by("pid").agg(pl.col("station_idx").n_unique().alias("n")).filter(pl.col("n") > 1).height
    )
    per_station: Counter = Counter()
    for s in all_sources:
        per_station[s.station_id] += s.records
    return SimulationSummary(
        out=out,
        stations_yaml=stations_yaml,
        truth_csv=truth_csv,
        sql_url=sql_url,
        sql_database=sql_database,
        seed=seed,
        stations=net.n,
        persons=persons,
        organisations=organisations,
        person_records=p_rec.height,
        organisation_records=0 if o_rec is None else o_rec.height,
        records_per_station={st.id: per_station.get(st.id, 0) for st in net.stations},
        sources_per_kind=dict(sorted(Counter(s.kind for s in all_sources).items())),
        sources_per_encoding=dict(sorted(Counter(s.encoding for s in all_sources if s.encoding).items())),
        sources_per_header_style=dict(sorted(Counter(s.header_style for s in all_sources).items())),
        stations_per_date_format=dict(sorted(Counter(
            s.date_format for s in all_sources if s.entity == "person" and s.date_format).items())),
        movers=movers,
        twins=pop.twins,
        namesakes=pop.namesakes,
        duplicates=int(p_rec["duplicate"].sum()),
        organisations_at_two_stations=0 if o_rec is None else int((o_rec["residence"] == 1).sum()),
        broken_record_keys=tuple(k for s in all_sources for k in s.broken_record_keys),
        noise=noise,
        sources=tuple(_source_summary(s) for s in all_sources),
        paths=tuple(paths),
        dwellings=dwellings,
        dwelling_records=0 if d_rec is None else d_rec.height,
        dwellings_in_two_registers=0 if d_rec is None else int(d_rec.filter(pl.col("residence") > 0)
                                                               ["entity_id"].n_unique()),
    )


def _source_summary(s: WrittenSource) -> SourceSummary:
    return SourceSummary(
        station_id=s.station_id, source=s.source, entity=s.entity, kind=s.kind, path=s.path,
        table=s.table, encoding=s.encoding, declared_encoding=s.declared_encoding,
        header_style=s.header_style, date_format=s.date_format, records=s.records,
        broken_record_keys=tuple(s.broken_record_keys),
    )


def _write_sources(out: Path, net: Network, frames: dict[str, pl.DataFrame | None], sql_url: str | None,
                   report: Progress) -> tuple[dict[str, list[WrittenSource]], str | None, Path | None]:
    """Every station's exports: residents, organisations (stations that keep them), housing."""
    present = {entity: f for entity, f in frames.items() if f is not None}
    parts = {entity: f.partition_by("station_idx", as_dict=True, maintain_order=True) for entity, f in present.items()}
    empty = {entity: f.clear() for entity, f in present.items()}
    engine, sql_config_url, sql_db = _sql_engine(out, net, sql_url)
    result: dict[str, list[WrittenSource]] = {}
    try:
        for i, st in enumerate(net.stations):
            report("write", i, net.n)
            srcs = []
            for entity in present:
                if entity == "organisation" and not st.has_orgs:
                    continue
                frame = parts[entity].get((st.idx,), empty[entity])
                if st.kind == "sql":
                    assert engine is not None
                    srcs.append(write_sql_source(engine, st, entity, frame))
                else:
                    srcs.append(write_file_source(out, st, entity, frame))
            result[st.id] = srcs
        report("write", net.n, net.n)
    finally:
        if engine is not None:
            engine.dispose()
    return result, sql_config_url, sql_db


def _sql_engine(out: Path, net: Network, sql_url: str | None) -> tuple[sa.Engine | None, str | None, Path | None]:
    """The SQL stations' database: the default SQLite file (made afresh) or `sql_url`."""
    if not any(s.kind == "sql" for s in net.stations):
        if sql_url is None and (out / SQLITE_FILE).exists():
            (out / SQLITE_FILE).unlink()
        return None, None, None
    if sql_url is not None:
        return sa.create_engine(sql_url), sql_url, None
    sql_db = out / SQLITE_FILE
    if sql_db.exists():
        sql_db.unlink()
    engine = sa.create_engine(f"sqlite:///{sql_db}")
    sa.event.listen(engine, "connect", _fast_sqlite)
    return engine, f"sqlite:///{SQLITE_FILE}", sql_db


def _fast_sqlite(dbapi_conn, _record) -> None:
    # A generated file that is rewritten whole on every run: no need to fsync each commit.
    dbapi_conn.execute("PRAGMA synchronous=OFF")
    dbapi_conn.execute("PRAGMA journal_mode=MEMORY")

