"""Stations, their jurisdictions (townships, communities, roads) and each station system's profile.

A station's profile is how its local system exports data: file kind, encoding, header style, date
and sex formats, title row, extra columns, local id format. Attributes are dealt from "decks" so
that every option appears once the network is big enough (a 12-station network shows every kind,
encoding, header style and date format), and the rest are drawn with realistic weights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import polars as pl

from connectors.simulate import naming
from connectors.simulate.rng import Rng

KINDS = ("csv", "tsv", "jsonl", "xlsx", "sql")
TEXT_ENCODINGS = ("utf-8", "utf-8-sig", "gbk")
STYLES = ("zh", "pinyin", "en")
SEX_STYLES = ("zh", "num", "en")
# address styles: 0 full, 1 without the city, 2 without the community, 3 compact building-unit-room
ADDRESS_STYLES = (0, 1, 2, 3)
PERSON_FIELDS = ("local_id", "name", "sex", "birth_date", "id_number", "phone", "address",
                 "area_code", "source_updated_at")
# Share of stations whose system has no birth-date column at all (seen in real exports): their
# records can only be linked by ID, or by name with phone or address when the ID is missing too.
NO_BIRTH_DATE_STATIONS = 0.05
ORG_FIELDS = ("local_id", "name", "credit_code", "legal_rep", "phone", "address", "area_code",
              "source_updated_at")
# Housing registers: the same column order at every station.
DWELLING_FIELDS = ("local_id", "address", "owner_name", "owner_id_number", "owner_phone", "use", "occupants",
                   "area_code", "source_updated_at")


@dataclass(frozen=True)
class StationProfile:
    idx: int
    id: str
    name: str
    district_code: str
    district_name: str
    jurisdiction: tuple[str, ...]  # 9-digit township codes
    weight: float  # share of the city's residents
    kind: str  # csv | tsv | jsonl | xlsx | sql
    encoding: str | None  # actual bytes of text files; None for xlsx / sql
    declared_encoding: str  # what stations.yaml says ("auto" or an explicit codec)
    delimiter: str
    line_terminator: str
    style: str  # header style: zh | pinyin | en
    upper_headers: bool  # pinyin headers in capitals (RYBH, XM ...)
    date_format: int  # index into naming.DATE_FORMATS
    restrict_dates: bool  # stations.yaml narrows date_formats to this station's format
    sex_style: str
    title_row: bool
    extra_column: bool
    address_style: int
    id_style: int  # local id format
    has_orgs: bool
    person_columns: tuple[str, ...]  # canonical fields in the station's column order
    org_columns: tuple[str, ...]
    sheet: str  # xlsx: data sheet name
    declare_sheet: bool  # xlsx: name the sheet in stations.yaml
    notes_sheet: bool  # xlsx: a second "说明" sheet after the data
    watermark: str | None  # sql: column used for incremental reads
    broken: bool = False  # csv/tsv: gets a row with an extra field and a truncated last line

    def headers(self, entity: str) -> dict[str, str]:
        table = {"person": naming.PERSON_HEADERS, "organisation": naming.ORG_HEADERS,
                 "dwelling": naming.DWELLING_HEADERS}[entity]
        h = dict(table[self.style])
        if self.upper_headers:
            h = {k: v.upper() for k, v in h.items()}
        return h

    def columns(self, entity: str) -> tuple[str, ...]:
        """The canonical fields of the station's export of `entity`, in its column order."""
        return {"person": self.person_columns, "organisation": self.org_columns}.get(entity, DWELLING_FIELDS)

    def extra_header(self) -> str:
        h = naming.EXTRA_HEADER[self.style]
        return h.upper() if self.upper_headers else h

    def file_suffix(self) -> str:
        return {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "xlsx": "xlsx"}.get(self.kind, "")


@dataclass
class Network:
    stations: list[StationProfile]
    townships: pl.DataFrame  # township_idx, station_idx, code, name, district_name
    communities: pl.DataFrame  # community_idx, township_idx, station_idx, code, name, is_village, road_start, road_count
    roads: pl.DataFrame  # road_idx, community_idx, name
    station_table: pl.DataFrame = field(init=False)  # per-station columns for vectorised joins

    def __post_init__(self) -> None:
        comm = self.communities
        starts = comm.group_by("station_idx").agg(
            pl.col("community_idx").min().alias("comm_start"), pl.len().alias("comm_count")
        )
        base = pl.DataFrame(
            {
                "station_idx": [s.idx for s in self.stations],
                "station_id": [s.id for s in self.stations],
                "district_name": [s.district_name for s in self.stations],
                "district_code": [s.district_code for s in self.stations],
                "date_format": [s.date_format for s in self.stations],
                "sex_style": [SEX_STYLES.index(s.sex_style) for s in self.stations],
                "address_style": [s.address_style for s in self.stations],
                "id_style": [s.id_style for s in self.stations],
                "kind": [s.kind for s in self.stations],
                "jurisdiction0": [s.jurisdiction[0] for s in self.stations],
                "weight": [s.weight for s in self.stations],
                "has_orgs": [s.has_orgs for s in self.stations],
                "has_birth_date": ["birth_date" in s.person_columns for s in self.stations],
            },
            schema_overrides={"station_idx": pl.Int64},
        )
        self.station_table = base.join(
            starts.with_columns(pl.col("station_idx").cast(pl.Int64)), on="station_idx", how="left"
        ).sort("station_idx")

    @property
    def n(self) -> int:
        return len(self.stations)


def _deck(r: random.Random, n: int, options: list, weights: list[float]) -> list:
    """n draws covering every option at least once when n allows, then shuffled."""
    if n <= 0:
        return []
    out: list = []
    if n >= len(options):
        out.extend(options)
    else:
        pool = list(zip(options, weights, strict=True))
        while len(out) < n:
            pick = r.choices(range(len(pool)), weights=[w for _, w in pool])[0]
            out.append(pool.pop(pick)[0])
    while len(out) < n:
        out.append(r.choices(options, weights=weights)[0])
    r.shuffle(out)
    return out


def _allocate(n: int, weights: list[float]) -> list[int]:
    """Split n items over buckets proportionally (largest remainder), each bucket >= 1 if n allows."""
    k = len(weights)
    if n < k:
        return [1] * n + [0] * (k - n)
    total = sum(weights)
    base = [1] * k
    rest = n - k
    raw = [rest * w / total for w in weights]
    floors = [int(x) for x in raw]
    base = [b + f for b, f in zip(base, floors, strict=True)]
    left = n - sum(base)
    order = sorted(range(k), key=lambda i: (-(raw[i] - floors[i]), i))
    for i in order[:left]:
        base[i] += 1
    return base


def build_network(n_stations: int, seed: int, *, no_birth_date: float = NO_BIRTH_DATE_STATIONS) -> Network:
    """The stations of about `n_stations` (districts get stations by weight, a station one or two
    townships), each with its system's profile and its communities and roads. One Python Random
    (`network`) is drawn from in a fixed order across the steps below, so the same seed gives the
    same network."""
    rng = Rng(seed)
    r = rng.py("network")
    station_rows = _station_townships(r, n_stations)
    n = len(station_rows)
    width = max(4, len(str(n)))
    ids = [f"s{i + 1:0{width}d}" for i in range(n)]
    decks = _profile_decks(r, n)
    stations: list[StationProfile] = []
    town_rows: list = []
    comm_rows: list = []
    road_rows: list = []
    for i, (d_i, towns, weight) in enumerate(station_rows):
        dcode, dname, _, urban = naming.DISTRICTS[d_i]
        stations.append(_profile(r, i, ids[i], towns, dcode, dname, weight, decks))
        for code, tname, ttype, _stem in towns:
            t_idx = len(town_rows)
            town_rows.append((t_idx, i, code, tname, dname))
            _communities(r, t_idx, i, code, ttype, urban, comm_rows, road_rows)
    stations = _drop_birth_date_columns(rng, stations, no_birth_date)
    return _assemble(stations, town_rows, comm_rows, road_rows)


def _station_townships(r: random.Random, n_stations: int) -> list[tuple[int, list[tuple], float]]:
    """(district index, its townships [(code, name, type, stem)], weight) per station: districts
    get stations by weight; known township names first, then made-up two-character stems."""
    districts = naming.DISTRICTS
    counts = _allocate(n_stations, [d[2] for d in districts])
    used_stems: set[str] = set()
    combos = [a + b for a in naming.PLACE_FIRST for b in naming.PLACE_SECOND]
    r.shuffle(combos)
    combo_iter = iter(combos)

    def fresh_stem() -> str:
        for stem in combo_iter:
            if stem not in used_stems:
                used_stems.add(stem)
                return stem
        # exhausted two-character stems: make three-character ones
        while True:
            stem = r.choice(naming.PLACE_FIRST) + r.choice(naming.PLACE_FIRST) + r.choice(naming.PLACE_SECOND)
            if stem not in used_stems:
                used_stems.add(stem)
                return stem

    for names in naming.KNOWN_TOWNSHIPS.values():
        used_stems.update(names)

    station_rows = []  # (district idx, [township (code, name, type, stem)], weight)
    for d_i, (dcode, _dname, dweight, urban) in enumerate(districts):
        known = list(naming.KNOWN_TOWNSHIPS.get(dcode, ()))
        counters = {"街道": 0, "镇": 100, "乡": 200}
        for k in range(counts[d_i]):
            n_town = 2 if r.random() < 0.12 else 1
            towns = []
            for t in range(n_town):
                if known:
                    stem = known.pop(0)
                else:
                    stem = fresh_stem()
                if urban or (k == 0 and t == 0):
                    ttype = "街道"
                else:
                    ttype = r.choices(["街道", "镇", "乡"], weights=[0.25, 0.62, 0.13])[0]
                counters[ttype] += 1
                code = f"{dcode}{counters[ttype]:03d}"
                towns.append((code, stem + ttype, ttype, stem))
            station_rows.append((d_i, towns, dweight / max(counts[d_i], 1) * r.uniform(0.6, 1.4)))
    return station_rows


def _profile_decks(r: random.Random, n: int) -> dict:
    """The attributes dealt from decks (so small networks are varied): kind, encoding, header
    style, date and sex formats, title row, extra column, address and id styles, organisations."""
    n_sql = max(1, round(0.10 * n)) if n >= 4 else 0
    kinds = ["sql"] * n_sql + _deck(r, n - n_sql, ["csv", "tsv", "jsonl", "xlsx"], [0.66, 0.12, 0.12, 0.08])
    r.shuffle(kinds)
    text_idx = [i for i in range(n) if kinds[i] in ("csv", "tsv")]
    encs = dict(zip(text_idx, _deck(r, len(text_idx), list(TEXT_ENCODINGS), [0.45, 0.3, 0.25]), strict=True))
    file_idx = [i for i in range(n) if kinds[i] != "sql"]
    styles = dict(zip(file_idx, _deck(r, len(file_idx), list(STYLES), [0.4, 0.35, 0.25]), strict=True))
    date_fmts = _deck(r, n, [0, 1, 2, 3], [0.4, 0.25, 0.2, 0.15])
    sex_styles = _deck(r, n, list(SEX_STYLES), [0.5, 0.3, 0.2])
    sheet_idx = [i for i in range(n) if kinds[i] in ("csv", "xlsx")]
    titles = dict(zip(sheet_idx, _deck(r, len(sheet_idx), [True, False], [0.35, 0.65]), strict=True))
    extras = _deck(r, n, [True, False], [0.25, 0.75]) if n >= 4 else [False] * n
    addr_styles = _deck(r, n, list(ADDRESS_STYLES), [0.5, 0.2, 0.2, 0.1])
    id_styles = _deck(r, n, [0, 1, 2], [0.4, 0.4, 0.2])
    has_orgs = _deck(r, n, [True, False], [0.88, 0.12]) if n >= 4 else [True] * n
    if not any(has_orgs):
        has_orgs[0] = True
    return {"kinds": kinds, "encs": encs, "styles": styles, "date_fmts": date_fmts, "sex_styles": sex_styles,
            "titles": titles, "extras": extras, "addr_styles": addr_styles, "id_styles": id_styles,
            "has_orgs": has_orgs}


def _profile(r: random.Random, i: int, station_id: str, towns: list[tuple], dcode: str, dname: str,
             weight: float, decks: dict) -> StationProfile:
    """Station i's profile: its dealt attributes plus the ones drawn per station (declared
    encoding, upper-case pinyin, column order, delimiter, line ends, sheets, SQL watermark)."""
    kind = decks["kinds"][i]
    if kind in ("csv", "tsv"):
        enc = decks["encs"][i]
        if r.random() < 0.7:
            declared = "auto"
        else:
            declared = "gb18030" if enc == "gbk" and r.random() < 0.5 else enc
    elif kind == "jsonl":
        enc = "utf-8"
        declared = "auto" if r.random() < 0.7 else "utf-8"
    else:
        enc, declared = None, "auto"
    style = decks["styles"][i] if kind != "sql" else r.choices(["pinyin", "en"], weights=[0.6, 0.4])[0]
    upper = style == "pinyin" and r.random() < (0.5 if kind == "sql" else 0.3)
    p_cols = list(PERSON_FIELDS)
    o_cols = list(ORG_FIELDS)
    if r.random() < 0.15:
        rest = p_cols[1:]
        r.shuffle(rest)
        p_cols = p_cols[:1] + rest
        rest = o_cols[1:]
        r.shuffle(rest)
        o_cols = o_cols[:1] + rest
    watermark = None
    if kind == "sql":
        watermark = naming.PERSON_HEADERS["pinyin"]["source_updated_at"] if style == "pinyin" else "row_version"
        if upper and watermark != "row_version":
            watermark = watermark.upper()
    return StationProfile(
        idx=i,
        id=station_id,
        name=towns[0][3] + "派出所",
        district_code=dcode,
        district_name=dname,
        jurisdiction=tuple(t[0] for t in towns),
        weight=round(weight, 6),
        kind=kind,
        encoding=enc,
        declared_encoding=declared,
        delimiter="|" if kind == "csv" and r.random() < 0.05 else ("\t" if kind == "tsv" else ","),
        line_terminator="\r\n" if r.random() < (0.5 if enc == "gbk" else 0.2) else "\n",
        style=style,
        upper_headers=upper,
        date_format=decks["date_fmts"][i],
        restrict_dates=r.random() < 0.4,
        sex_style=decks["sex_styles"][i],
        title_row=decks["titles"].get(i, False),
        extra_column=decks["extras"][i],
        address_style=decks["addr_styles"][i],
        id_style=decks["id_styles"][i],
        has_orgs=decks["has_orgs"][i],
        person_columns=tuple(p_cols),
        org_columns=tuple(o_cols),
        sheet=r.choice(naming.PERSON_SHEETS),
        declare_sheet=r.random() < 0.5,
        notes_sheet=r.random() < 0.3,
        watermark=watermark,
    )


def _assemble(stations: list[StationProfile], town_rows: list, comm_rows: list, road_rows: list) -> Network:
    townships = pl.DataFrame(
        town_rows, schema=["township_idx", "station_idx", "code", "name", "district_name"], orient="row"
    )
    communities = pl.DataFrame(
        comm_rows,
        schema=["community_idx", "township_idx", "station_idx", "code", "name", "is_village",
                "road_start", "road_count"],
        orient="row",
    )
    roads = pl.DataFrame(road_rows, schema=["road_idx", "community_idx", "name"], orient="row")
    return Network(stations=stations, townships=townships, communities=communities, roads=roads)


def _drop_birth_date_columns(rng: Rng, stations: list[StationProfile], share: float) -> list[StationProfile]:
    """Take the birth-date column away from round(share * n) stations.

    A stream of its own, so every other profile attribute stays as it was without this feature; and
    only stations whose date format another station also uses, so every format still shows up.
    """
    k = round(share * len(stations))
    if k <= 0:
        return stations
    fmt_count: dict[int, int] = {}
    for s in stations:
        fmt_count[s.date_format] = fmt_count.get(s.date_format, 0) + 1
    candidates = [s.idx for s in stations if fmt_count[s.date_format] > 1]
    chosen = set(rng.py("network:no_birth_date").sample(candidates, min(k, len(candidates))))
    return [
        replace(s, person_columns=tuple(c for c in s.person_columns if c != "birth_date"), restrict_dates=False)
        if s.idx in chosen else s
        for s in stations
    ]


def _communities(r: random.Random, t_idx: int, s_idx: int, code: str, ttype: str, urban: bool,
                 comm_rows: list, road_rows: list) -> None:
    if ttype == "街道":
        n_urban, n_village = r.randint(3, 6), (1 if (not urban and r.random() < 0.3) else 0)
    elif ttype == "镇":
        n_urban, n_village = r.randint(1, 2), r.randint(2, 5)
    else:
        n_urban, n_village = 1, r.randint(2, 4)
    road_stems = list(naming.ROAD_STEMS)
    r.shuffle(road_stems)
    used_names: set[str] = set()
    for k in range(n_urban):
        stems = [road_stems.pop() for _ in range(r.randint(2, 3))]
        roads = [s + r.choice(naming.ROAD_SUFFIXES) for s in stems]
        if r.random() < 0.5:
            name = roads[0] + "社区"
        else:
            name = _unique_place(r, used_names) + "社区"
        c_idx = len(comm_rows)
        comm_rows.append((c_idx, t_idx, s_idx, f"{code}{k + 1:03d}", name, False, len(road_rows), len(roads)))
        for rd in roads:
            road_rows.append((len(road_rows), c_idx, rd))
    for k in range(n_village):
        name = _unique_place(r, used_names) + "村"
        c_idx = len(comm_rows)
        comm_rows.append((c_idx, t_idx, s_idx, f"{code}{200 + k + 1:03d}", name, True, len(road_rows), 0))


def _unique_place(r: random.Random, used: set[str]) -> str:
    while True:
        stem = r.choice(naming.PLACE_FIRST) + r.choice(naming.PLACE_SECOND)
        if stem not in used:
            used.add(stem)
            return stem
