"""One big resident export, for benchmarks: the simulated network's person records in one CSV.

Same people, households and noise as `simulate_network`, without the per-station formats, so a
benchmark measures ingestion rather than the mix of file kinds.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from connectors.simulate.network import build_network
from connectors.simulate.noise import DEFAULT_NOISE, NoiseRates, person_noise
from connectors.simulate.people import (
    DEFAULT_POPULATION,
    Population,
    PopulationRates,
    generate_population,
    person_residences,
)
from connectors.simulate.quirks import QUIRKS, person_quirks
from connectors.simulate.render import render_persons
from connectors.simulate.rng import Rng

__all__ = ["EXPORT_COLUMNS", "QUIRKS", "simulate_dwelling_records", "simulate_person_export", "simulate_person_frame",
           "simulate_person_records"]

# The export's headers, as a household-registration system would name them.
EXPORT_COLUMNS: dict[str, str] = {
    "人员编号": "local_id", "姓名": "name", "性别": "sex", "出生日期": "birth_date",
    "公民身份号码": "id_number", "联系电话": "phone", "现住址": "address",
    "行政区划代码": "area_code", "更新时间": "source_updated_at",
}


def simulate_person_frame(*, rows: int, seed: int, stations: int = 943, noise: NoiseRates | None = None,
                          population: PopulationRates | None = None) -> tuple[pl.DataFrame, Population]:
    """Every column the simulator knows about `rows` person records (pid, true ID, quirk flags,
    `quirks`), and the population: what tests need to check a label against the person behind it."""
    noise = noise or DEFAULT_NOISE
    population = population or DEFAULT_POPULATION
    rng = Rng(seed)
    net = build_network(stations, seed, no_birth_date=population.stations_without_birth_date)
    persons = max(1, int(rows / 1.1))  # movers and duplicates give ~1.13 records per person
    while True:
        pop = generate_population(rng, net, persons, population)
        records = person_residences(rng, pop, population)
        if records.height >= rows:
            break
        persons = int(persons * rows / max(records.height, 1)) + 1
    records = render_persons(rng, net, pop, records)
    records, _ = person_noise(rng, records, noise)
    records = records.head(rows)
    return records.with_columns(person_quirks(pop, records)), pop


def simulate_person_records(*, rows: int, seed: int, stations: int = 943, noise: NoiseRates | None = None,
                            population: PopulationRates | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`rows` noisy person records in canonical raw fields (strings, as a station exports them)
    plus `record_key`, and the truth (record_key -> entity_id, plus `quirks`: the comma-separated
    `QUIRKS` tags each record carries, "" for none), without touching the disk."""
    records, _ = simulate_person_frame(rows=rows, seed=seed, stations=stations, noise=noise, population=population)
    raw = records.select(
        "record_key",
        pl.col("record_key").str.split(":").list.first().alias("station_id"),
        pl.col("record_key").str.replace(":", "-").alias("local_id"),
        *[pl.col(f) for f in list(EXPORT_COLUMNS.values())[1:]],
    )
    return raw, records.select("record_key", "entity_id", "quirks")


def simulate_person_export(path: Path, *, rows: int, seed: int, stations: int = 943, encoding: str = "utf-8") -> Path:
    """Write exactly `rows` noisy person records (header included) to `path`."""
    raw, _ = simulate_person_records(rows=rows, seed=seed, stations=stations)
    frame = raw.select(list(EXPORT_COLUMNS.values())).rename({v: k for k, v in EXPORT_COLUMNS.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(frame.write_csv().encode(encoding))
    return path


def simulate_dwelling_records(*, persons: int, seed: int, stations: int = 40, noise: NoiseRates | None = None,
                              population: PopulationRates | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The housing-register records of a network of `persons` (canonical raw fields as the
    stations write them, plus `record_key` and `station_id`) and their truth (record_key ->
    entity_id, `quirks`), without touching the disk: what resolution tests and benchmarks read."""
    from connectors.simulate.dwellings import (
        DWELLING_FIELDS,
        dwelling_quirks,
        dwelling_registrations,
        true_dwellings,
    )
    from connectors.simulate.noise import dwelling_noise
    from connectors.simulate.render import render_dwellings

    noise = noise or DEFAULT_NOISE
    population = population or DEFAULT_POPULATION
    rng = Rng(seed)
    net = build_network(stations, seed, no_birth_date=population.stations_without_birth_date)
    pop = generate_population(rng, net, persons, population)
    rec = render_dwellings(rng, net, dwelling_registrations(rng, net, pop, true_dwellings(rng, net, pop)))
    rec, _ = dwelling_noise(rng, rec, noise)
    rec = rec.with_columns(dwelling_quirks(rec))
    raw = rec.select("record_key", pl.col("record_key").str.split(":").list.first().alias("station_id"),
                     *DWELLING_FIELDS)
    return raw, rec.select("record_key", "entity_id", "quirks")
