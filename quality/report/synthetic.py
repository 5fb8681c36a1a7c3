"""Synthetic quality results, linkage and deliveries for a network of any size.

For the report's benchmark (943 stations) and tests: a warehouse as it looks after several
validated batches per station, without running Great Expectations 943 × N times. Deterministic
from the seed; each station has its own data quality, so rankings and trends are not flat.
Returns frames keyed by table name, in foreign-key order, for warehouse.bulk.insert_frame.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import polars as pl

from quality.report.model import DIMENSIONS

DISTRICTS = ["解放碑", "朝天门", "较场口", "七星岗", "两路口", "上清寺", "大溪沟", "菜园坝", "南纪门", "望龙门",
             "石油路", "化龙桥", "小龙坎", "磁器口", "沙坪坝", "杨家坪", "观音岩", "弹子石", "南坪", "龙门浩"]
EXPECTATIONS = [  # (id, type, column, dimension)
    ("name_not_null", "expect_column_values_to_not_be_null", "name", "completeness"),
    ("id_number_not_null", "expect_column_values_to_not_be_null", "id_number", "completeness"),
    ("id_number_valid", "expect_column_values_to_be_in_set", "id_valid", "validity"),
    ("phone_format", "expect_column_values_to_match_regex", "phone", "validity"),
    ("area_code_format", "expect_column_values_to_match_regex", "area_code", "validity"),
    ("birth_date_plausible", "expect_column_values_to_be_between", "birth_date", "validity"),
    ("id_birth_date_consistent", "expect_column_values_to_be_in_set", "id_consistent", "consistency"),
    ("local_id_unique", "expect_column_values_to_be_unique", "local_id", "uniqueness"),
    ("last_drop_fresh", "expect_column_max_to_be_between", "source_updated_at", "freshness"),
]
FIELDS = {"name": "full", "sex": "full", "birth_date": "full", "id_number": "masked", "phone": "masked",
          "address": "full"}


def station_name(i: int) -> str:
    return f"{DISTRICTS[i % len(DISTRICTS)]}{'' if i < len(DISTRICTS) else i // len(DISTRICTS) + 1}派出所"


def synthetic_network(stations: int, batches: int = 3, *, records_per_station: int = 40, seed: int = 6,
                      now: dt.datetime | None = None) -> dict[str, pl.DataFrame]:
    rng = random.Random(seed)
    now = now or dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.timezone.utc)
    rows: dict[str, list[dict]] = {k: [] for k in (
        "stations", "batches", "validation_runs", "validation_results", "station_scores", "correction_tasks",
        "batch_holds", "entities", "entity_membership", "scored_pairs", "judgements", "feed_deliveries")}
    entity_no = 0
    for i in range(stations):
        sid = f"s{i + 1:04d}"
        quality = rng.uniform(0.55, 1.0)  # the station's own data quality
        rows["stations"].append({"station_id": sid, "name": station_name(i), "jurisdiction": json.dumps([f"5001{i:05d}"]),
                                 "updated_at": now})
        for b in range(batches):
            at = now - dt.timedelta(days=7 * (batches - b), hours=i % 24)
            batch_id = f"{sid}:residents:{b + 1:03d}"
            read = rng.randint(800, 1200)
            quarantined = int(read * (1 - quality) * 0.05)
            rows["batches"].append({
                "batch_id": batch_id, "station_id": sid, "source_name": "residents", "entity_type": "person",
                "source_kind": "csv", "source_ref": f"stations/{sid}/residents-{b + 1}.csv",
                "content_hash": f"{i:06d}{b:04d}".ljust(64, "0"), "rows_read": read,
                "rows_loaded": read - quarantined, "rows_quarantined": quarantined, "status": "loaded",
                "started_at": at, "finished_at": at + dt.timedelta(seconds=20)})
            drift = (b - batches + 1) * 0.03  # stations get a little better batch by batch
            level = min(1.0, quality - drift)
            for a, asset in enumerate(("raw", "standardised")):
                run_id = f"{batch_id}:{asset}"
                results = []
                for eid, etype, column, dim in EXPECTATIONS[a::2] if asset == "raw" else EXPECTATIONS:
                    unexpected = 0 if rng.random() < level else int(read * rng.uniform(0.001, 0.08))
                    ok = unexpected == 0
                    results.append({
                        "run_id": run_id, "expectation_id": eid, "expectation_type": etype, "column_name": column,
                        "dimension": dim, "success": ok, "element_count": read, "unexpected_count": unexpected,
                        "unexpected_percent": 100.0 * unexpected / read,
                        "observed_value": json.dumps({"unexpected_percent": round(100.0 * unexpected / read, 3)}),
                        "sample_rows": json.dumps([{"record_key": f"{sid}:R{rng.randint(1, 99999):08d}",
                                                    "value": rng.choice(["5001031990023X", "１３８００００", "", "2031-02-30"])}
                                                   for _ in range(min(unexpected, 3))], ensure_ascii=False)})
                rows["validation_results"] += results
                rows["validation_runs"].append({
                    "run_id": run_id, "suite": f"person_{asset}", "data_asset": asset, "entity_type": "person",
                    "station_id": sid, "batch_id": batch_id, "success": all(r["success"] for r in results),
                    "evaluated": len(results), "successful": sum(r["success"] for r in results),
                    "started_at": at + dt.timedelta(minutes=1 + a), "finished_at": at + dt.timedelta(minutes=2 + a),
                    "data_docs_path": None})
            for d, dim in enumerate(DIMENSIONS):
                score = max(0.0, min(100.0, 100 * level - d * rng.uniform(0, 4) + rng.gauss(0, 2)))
                rows["station_scores"].append({"station_id": sid, "entity_type": "person", "batch_id": batch_id,
                                               "dimension": dim, "score": round(score, 2),
                                               "computed_at": at + dt.timedelta(minutes=3)})
            if rng.random() < 0.03:
                rows["batch_holds"].append({"batch_id": batch_id, "station_id": sid,
                                            "reason": "invalid-ID rate 12.5 % exceeds 5 %", "held_at": at,
                                            "released_at": None if b == batches - 1 else at + dt.timedelta(days=1)})
        for t in range(int((1 - quality) * 40)):
            opened = now - dt.timedelta(days=rng.uniform(1, 20))
            closed = rng.random() < 0.6
            closed_at = min(now, opened + dt.timedelta(days=rng.uniform(0.2, 6))) if closed else None
            rows["correction_tasks"].append({
                "task_id": f"{sid}-t{t:04d}", "station_id": sid, "record_key": f"{sid}:R{t + 1:08d}",
                "entity_type": "person", "entity_id": f"P{i:06d}{t:04d}", "field": rng.choice(["birth_date", "id_number"]),
                "station_value": "1990-02-30", "expected_value": "1990-02-03",
                "reason": "出生日期与身份证号不一致 (birth date disagrees with the ID number)",
                "source": rng.choice(["expectation", "golden_disagreement"]),
                "status": "closed" if closed else "open", "opened_at": opened, "opened_batch": f"{sid}:residents:001",
                "closed_at": closed_at, "closed_batch": f"{sid}:residents:{batches:03d}" if closed else None})
        keys = [f"{sid}:R{r + 1:08d}" for r in range(records_per_station)]
        r = 0
        while r < len(keys):
            size = min(len(keys) - r, rng.choice([1, 1, 1, 2, 2, 3]))
            eid = f"P{entity_no:010d}"
            entity_no += 1
            rows["entities"].append({"entity_id": eid, "entity_type": "person", "created_seq": 1, "status": "active",
                                     "merged_into": None, "updated_seq": 1})
            for k in keys[r:r + size]:
                rows["entity_membership"].append({"entity_type": "person", "record_key": k, "entity_id": eid,
                                                  "row_hash": "0" * 40, "since_seq": 1, "updated_seq": 1})
            for left, right in zip(keys[r:r + size], keys[r + 1:r + size]):
                rows["scored_pairs"].append({"entity_type": "person", "left_id": left, "right_id": right,
                                             "match_probability": 0.99, "match_weight": 9.0, "decision": "match",
                                             "weights": "{}", "run_seq": 1, "review_reason": None})
            r += size
        for left, right in zip(keys[0:4:2], keys[1:4:2]):
            key = (f"{left}~", f"{right}~")
            rows["scored_pairs"].append({"entity_type": "person", "left_id": key[0], "right_id": key[1],
                                         "match_probability": 0.6, "match_weight": 0.5, "decision": "review",
                                         "weights": "{}", "run_seq": 1, "review_reason": None})
        # A link the ID guard refused: scored as a match, kept out of the entity, queued for review.
        rows["scored_pairs"].append({"entity_type": "person", "left_id": f"{keys[0]}~", "right_id": f"{keys[-1]}~",
                                     "match_probability": 0.97, "match_weight": 5.0, "decision": "match",
                                     "weights": "{}", "run_seq": 1,
                                     "review_reason": "refused by the ID guard: both records carry a different "
                                                      "valid ID number (id_number)"})
        for p in rows["scored_pairs"][-3:]:
            if rng.random() < 0.5:
                rows["judgements"].append({"entity_type": "person", "left_id": p["left_id"], "right_id": p["right_id"],
                                           "verdict": "same" if rng.random() < 0.9 else "different",
                                           "reviewer": "li", "reason": "checked", "judged_at": now})
        for b in range(batches):
            rows["feed_deliveries"].append({
                "subscriber_id": f"{sid}-officers", "token_id": None, "channel": "file", "kind": "events",
                "seq_from": b * 100 + 1, "seq_to": b * 100 + 100, "event_count": 100, "entity_count": 90,
                "entity_ids": json.dumps([f"P{n:010d}" for n in range(3)]),
                "fields": json.dumps(FIELDS), "delivered_at": now - dt.timedelta(days=7 * (batches - b))})
    for n, j in enumerate(rows["judgements"]):
        j["judgement_id"] = n + 1
    frames = {}
    for name, data in rows.items():
        frames[name] = pl.DataFrame(data, infer_schema_length=None) if data else None
    return {k: v for k, v in frames.items() if v is not None}
