"""Golden records decoded a slice at a time give the frame one decode of the whole would."""

import polars as pl

from core.json_columns import in_slices
from entity_resolution.propagation import _decode
from entity_resolution.relations import decode


def _records(n: int) -> pl.DataFrame:
    i = pl.int_range(0, n, eager=True)
    return pl.DataFrame({"i": i}).select(
        pl.concat_str(pl.lit("H"), pl.col("i").cast(pl.String)).alias("entity_id"),
        pl.struct(road=pl.concat_str(pl.lit("西郊路"), pl.col("i").cast(pl.String)),
                  room=pl.when(pl.col("i") % 3 == 0).then(None).otherwise(pl.lit("502室"))).struct.json_encode()
        .alias("record"),
        pl.lit("[]").alias("provenance"))


def test_slices_decode_what_the_whole_does() -> None:
    golden = _records(12_345)
    whole = golden.select("entity_id", pl.col("record").str.json_decode(
        pl.Struct({"road": pl.String, "room": pl.String})).alias("_r")).unnest("_r")
    assert decode(golden, ["road", "room"]).equals(whole)
    assert in_slices(golden, lambda part: part.select("entity_id"), rows=1_000)["entity_id"].equals(golden["entity_id"])
    published = _decode(golden, ["road", "room"])
    assert published.select("entity_id", "road", "room").equals(whole) and published["_record"].equals(golden["record"])
    assert decode(golden.clear(), ["road"]).height == 0 and _decode(golden.clear(), ["road"]).height == 0
