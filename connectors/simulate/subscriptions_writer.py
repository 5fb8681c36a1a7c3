"""Write `subscriptions.yaml` for the simulated network: one subscriber per station (its
jurisdiction and its own records, as a station officer sees them: ID numbers and phones masked)
and one department with a city-wide, more strongly masked view. Validated by
`feeds.config.load_subscriptions` (not imported here: connectors write plain YAML)."""

from __future__ import annotations

from pathlib import Path

import yaml

from connectors.simulate.network import StationProfile

ADDRESS_PARTS = ["addr_district", "addr_street", "addr_community", "addr_road", "addr_number",
                 "addr_building", "addr_unit", "addr_room"]
PERSON_FIELDS = ["name_norm", "sex", "birth_date", "id_number", "phone", "address", *ADDRESS_PARTS, "area_code"]
ORGANISATION_FIELDS = ["name_norm", "credit_code", "legal_rep_norm", "phone", "address", *ADDRESS_PARTS, "area_code"]
# Dwellings (housing registers). `residents` (a dwelling's current residents) and a person's
# `dwelling_id` come from the residence relation, not from the registers: a feed lists them once
# that relation is built, and leaves out what a golden record does not have.
DWELLING_FIELDS = ["address", *ADDRESS_PARTS, "owner_name_norm", "owner_id_number", "owner_phone", "use",
                   "occupants", "area_code", "residents"]
PERSON_RELATION_FIELDS = ["dwelling_id"]

MASKING = {
    "id_number": {"kind": "partial", "keep_first": 6, "keep_last": 4},   # 500101********123X
    "owner_id_number": {"kind": "partial", "keep_first": 6, "keep_last": 4},
    "owner_phone": {"kind": "partial", "keep_first": 3, "keep_last": 4},
    "owner_name_norm": {"kind": "partial", "keep_first": 1},
    "phone": {"kind": "partial", "keep_first": 3, "keep_last": 4},       # 138****5678
    "name_norm": {"kind": "partial", "keep_first": 1},                   # 张*
    "legal_rep_norm": {"kind": "partial", "keep_first": 1},
    "address": {"kind": "address", "level": "community"},                # down to the community
    "birth_date": {"kind": "date", "keep": "year"},                      # 1990
}

ROLES = {
    "station_officer": {
        "default": "hidden",
        "fields": {
            "name_norm": "full", "sex": "full", "birth_date": "full", "id_number": "masked", "phone": "masked",
            "address": "full", **{p: "full" for p in ADDRESS_PARTS}, "area_code": "full",
            "credit_code": "full", "legal_rep_norm": "full",
            "owner_name_norm": "full", "owner_id_number": "masked", "owner_phone": "masked", "use": "full",
            "occupants": "full", "residents": "full", "dwelling_id": "full",
        },
    },
    "department_analyst": {
        "default": "hidden",
        "fields": {
            "name_norm": "masked", "sex": "full", "birth_date": "masked", "address": "masked",
            "addr_district": "full", "addr_street": "full", "addr_community": "full", "area_code": "full",
        },
    },
}


def subscriptions_doc(stations: list[StationProfile], *, dwellings: bool = True) -> dict:
    """One subscriber per station (its area and its own records; with `dwellings`, the dwellings
    too, the owner's ID and phone masked like persons'), and a city-wide department."""
    types = ["person", "organisation", *(["dwelling"] if dwellings else []), "correction_task"]
    fields = PERSON_FIELDS + ORGANISATION_FIELDS + (DWELLING_FIELDS + PERSON_RELATION_FIELDS if dwellings else [])
    subscribers = [{
        "id": st.id, "kind": "station", "name": st.name, "station_id": st.id,
        # a station takes the correction tasks on its own records (and on records in its area)
        "entity_types": types,
        "scope": {"area_codes": list(st.jurisdiction), "own_records": True},
        "fields": list(dict.fromkeys(fields)),
        "role": "station_officer",
        "delivery": {"formats": ["jsonl", "csv", "parquet"]},
    } for st in stations]
    districts = sorted({st.district_code for st in stations})
    subscribers.append({
        "id": "civil_affairs", "kind": "department", "name": "民政局（全市）",
        "entity_types": ["person"],
        "scope": {"area_codes": districts},
        "fields": PERSON_FIELDS,
        "role": "department_analyst",
        "delivery": {"formats": ["jsonl", "csv", "parquet"]},
    })
    return {"version": 1, "masking": MASKING, "roles": ROLES, "subscribers": subscribers}


def write_subscriptions_yaml(path: Path, stations: list[StationProfile], *, dwellings: bool = True) -> None:
    header = (
        "# Feed subscriptions of the synthetic network (`enteronce simulate`): deny by default;\n"
        "# each subscriber sees its scope, its fields, masked per its role. See README, Feeds.\n"
    )
    text = yaml.safe_dump(subscriptions_doc(stations, dwellings=dwellings), allow_unicode=True, sort_keys=False, width=1000)
    path.write_text(header + text, encoding="utf-8")
