"""Why two records match or not: every comparison's level and weight under a stored model."""

from __future__ import annotations

import polars as pl

from entity_resolution.blocking import prepare
from entity_resolution.comparisons import comparison_vectors
from entity_resolution.config import EntitySettings
from entity_resolution.scoring import Model, explain, score


def explain_pair(records: pl.DataFrame, key_a: str, key_b: str, model_json: str, settings: EntitySettings) -> dict:
    """Score the pair (whether or not blocking would have proposed it) and take it apart."""
    uid = settings.unique_id
    left_id, right_id = sorted((key_a, key_b))
    two = records.filter(pl.col(uid).is_in([left_id, right_id]))
    model = Model.from_json(model_json)
    prepared = prepare(two, settings)
    pair = pl.DataFrame({"left_id": [left_id], "right_id": [right_id]})
    scored = score(comparison_vectors(pair, prepared, settings), prepared, model, settings)
    row = scored.row(0, named=True)
    values = {r[uid]: r for r in prepared.iter_rows(named=True)}
    parts = []
    for comparison, level, weight in explain(row, model, settings):
        if comparison == "prior":
            continue
        column = next(c.column for c in settings.comparisons if c.name == comparison)
        parts.append({
            "comparison": comparison, "level": level, "weight": weight,
            "left": values[left_id].get(column), "right": values[right_id].get(column),
        })
    return {
        "comparisons": parts,
        "prior_weight": model.prior_weight,
        "match_weight": row["match_weight"],
        "match_probability": row["match_probability"],
        "decision": row["decision"] + (" (different valid ids)" if row.get("constraint_violated") else ""),
    }
