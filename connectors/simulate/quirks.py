"""Per-record labels of the identity-data phenomena a record carries, for per-phenomenon scores.

Overall precision and recall hide the cases that matter: a matcher can score 99 % while merging
every pair of twins or missing every record whose ID carries a pre-1997 region code. So the truth
names, per record, which of a fixed vocabulary of phenomena it shows; a benchmark can then report
miss and false-merge rates for the records of each tag.

Tags describe the record as written (after noise): an ID quirk whose ID was later blanked is gone,
`shared_phone` needs a phone on the record, `no_id_no_birth_date` is about the final values. Tags
about the person (`twin`, `namesake`) hold on every record of that person.
"""

from __future__ import annotations

import polars as pl

from connectors.simulate.noise import ID_QUIRKS
from connectors.simulate.people import Population

# Fixed vocabulary, in the order tags appear in a record's comma-separated `quirks` value.
QUIRKS: tuple[str, ...] = (
    "id_recoded_region",  # old 15-digit ID whose region code GB/T 2260 recoded (510202 -> 500103)
    "id_other_region",  # old 15-digit ID with an old region code no change table documents
    "id_15",  # plain 15-digit ID, same region code as the current one
    "relative_id",  # another household member's ID number
    "id_spreadsheet",  # "5.00103E+17" or Excel's 15 digits + "000"
    "no_id_no_birth_date",  # neither: only name + phone or name + address can link it
    "shared_phone",  # the phone is another household member's mobile
    "twin",  # the person has a twin (same surname, birth date, address)
    "namesake",  # another person has the same name and birth date
    "id_typo",  # one digit mistyped or two adjacent digits swapped
)
assert set(ID_QUIRKS) <= set(QUIRKS)


def person_quirks(pop: Population, rec: pl.DataFrame) -> pl.Series:
    """The `quirks` column (String, "" when none) for person records after `person_noise`."""
    p = pop.persons
    namesake = p.select(pl.struct("name", "birth").is_duplicated()).to_series()
    pid = rec["pid"]
    flags: dict[str, pl.Expr] = {
        t: (pl.col(f"q_{t}") if f"q_{t}" in rec.columns else pl.lit(False)) & pl.col("id_number").is_not_null()
        for t in ID_QUIRKS
    }
    flags["no_id_no_birth_date"] = pl.col("id_number").is_null() & pl.col("birth_date").is_null()
    shared = pl.col("phone_shared") if "phone_shared" in rec.columns else pl.lit(False)
    flags["shared_phone"] = shared & pl.col("phone").is_not_null()
    flags["twin"] = pl.lit(p["twin"].gather(pid))
    flags["namesake"] = pl.lit(namesake.gather(pid))
    parts = [pl.when(flags[t]).then(pl.lit(t)) for t in QUIRKS]
    return rec.select(pl.concat_str(parts, separator=",", ignore_nulls=True).alias("quirks")).to_series()
