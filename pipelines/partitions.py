"""One dynamic partition per station: stations join the network by config, not by code.

Station work runs over ranges of partitions: one Dagster run per range rather than per station,
because each run costs a fixed ~0.4 s of Dagster bookkeeping and each validation a fixed share of
Great Expectations' set-up, which at a thousand stations outweigh the stations' own work. A range
is a run of consecutive partitions (Dagster names a range by its first and last key), so the
stations with work are cut into consecutive runs of the partitions' order, at most
`STATIONS_PER_RUN` long, which leaves a daemon with several runs to spread over its executors.
"""

from collections.abc import Collection, Sequence

import dagster as dg

stations_partitions = dg.DynamicPartitionsDefinition(name="stations")

STATIONS_PER_RUN = 100


def consecutive_ranges(order: Sequence[str], wanted: Collection[str], *, limit: int = STATIONS_PER_RUN) -> list[list[str]]:
    """The keys of `wanted`, in `order`, cut into runs of keys consecutive in `order` (a key not
    wanted ends a range), none longer than `limit`. Keys of `wanted` missing from `order` are left
    out: a range can only name partitions that exist."""
    wanted = set(wanted)
    ranges: list[list[str]] = []
    current: list[str] = []
    for key in order:
        if key in wanted and len(current) < limit:
            current.append(key)
            continue
        if current:
            ranges.append(current)
        current = [key] if key in wanted else []
    if current:
        ranges.append(current)
    return ranges


def with_new(known: Sequence[str], station_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the stations not yet partitions, the partitions' order once they are added): Dagster
    appends new dynamic partitions after the known ones."""
    registered = set(known)
    new = [s for s in station_ids if s not in registered]
    return new, [*known, *new]


def partition_range_tags(keys: Sequence[str]) -> dict[str, str]:
    """Run tags for one run over a range of consecutive partitions."""
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


def run_target(keys: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """(partition key, tags) of one run over `keys`: a lone key is an ordinary partition run, more
    are a range (both Dagster's RunRequest and materialize take the pair)."""
    return (keys[0], {}) if len(keys) == 1 else (None, partition_range_tags(keys))


def range_label(keys: Sequence[str]) -> str:
    """How logs, run keys and metadata name a run's stations: `s0001`, or `s0001..s0040`."""
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
