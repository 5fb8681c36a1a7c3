"""Write one station source as its system would export it: CSV/TSV, JSON Lines, XLSX or SQL table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from connectors.simulate import naming
from connectors.simulate.network import StationProfile
from connectors.simulate.people import EXPORT_DATE

SOURCE_NAMES = {"person": "residents", "organisation": "organisations", "dwelling": "housing"}
TITLES = {"person": naming.PERSON_TITLE, "organisation": naming.ORG_TITLE, "dwelling": naming.DWELLING_TITLE}
SHEETS = {"person": naming.PERSON_SHEETS, "organisation": naming.ORG_SHEETS, "dwelling": naming.DWELLING_SHEETS}
_FIXED_CREATED = dt.datetime(2026, 11, 1, 8, 0, 0)  # xlsx document properties: never "now"


@dataclass
class WrittenSource:
    station_id: str
    source: str
    entity: str
    kind: str
    path: Path | None  # absolute
    rel_path: str | None  # relative to the output folder, as in stations.yaml
    table: str | None
    encoding: str | None
    declared_encoding: str
    header_style: str
    date_format: str | None
    columns: dict[str, str]  # header -> canonical field
    records: int
    record_keys: list[str] = field(default_factory=list)
    broken_record_keys: list[str] = field(default_factory=list)
    sheet: str | None = None
    watermark: str | None = None
    delimiter: str | None = None


def station_columns(profile: StationProfile, entity: str) -> list[tuple[str, str]]:
    """(canonical column in the frame, station header) in the station's order; extra column last."""
    headers = profile.headers(entity)
    cols = [(c, headers[c]) for c in profile.columns(entity)]
    if profile.extra_column:
        cols.append(("remark", profile.extra_header()))
    return cols


def _title(profile: StationProfile, entity: str) -> str:
    return TITLES[entity].format(station=profile.name, date=EXPORT_DATE)


def _frame(profile: StationProfile, entity: str, df: pl.DataFrame) -> pl.DataFrame:
    return df.select([pl.col(c).alias(h) for c, h in station_columns(profile, entity)])


def _source(profile: StationProfile, entity: str, df: pl.DataFrame, **kw) -> WrittenSource:
    headers = profile.headers(entity)
    columns = {headers[c]: c for c in profile.columns(entity)}
    return WrittenSource(
        station_id=profile.id, source=SOURCE_NAMES[entity], entity=entity, kind=profile.kind,
        header_style=profile.style,
        date_format=(naming.DATE_FORMATS[profile.date_format]
                     if entity == "person" and "birth_date" in profile.person_columns else None),
        columns=columns, records=df.height, record_keys=df["record_key"].to_list(),
        declared_encoding=profile.declared_encoding, **kw,
    )


def write_file_source(out: Path, profile: StationProfile, entity: str, df: pl.DataFrame) -> WrittenSource:
    name = SOURCE_NAMES[entity]
    rel = f"stations/{profile.id}/{name}.{profile.file_suffix()}"
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = _frame(profile, entity, df)
    broken: list[str] = []
    if profile.kind in ("csv", "tsv"):
        text = frame.write_csv(separator=profile.delimiter, line_terminator=profile.line_terminator,
                               quote_style="necessary")
        if profile.broken and frame.height >= 4:
            text, broken = _break(text, profile, df["record_key"].to_list())
        if profile.title_row and profile.kind == "csv":
            text = _title(profile, entity) + profile.line_terminator + text
        path.write_bytes(text.encode(profile.encoding or "utf-8"))
    elif profile.kind == "jsonl":
        path.write_bytes(frame.write_ndjson().encode("utf-8"))
    elif profile.kind == "xlsx":
        _write_xlsx(path, profile, entity, frame)
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(profile.kind)
    return _source(
        profile, entity, df, path=path, rel_path=rel, table=None, encoding=profile.encoding,
        broken_record_keys=broken,
        sheet=(_sheet_name(profile, entity) if profile.kind == "xlsx" else None),
        delimiter=profile.delimiter if profile.kind == "csv" else None,
    )


def _break(text: str, profile: StationProfile, keys: list[str]) -> tuple[str, list[str]]:
    """A row with one field too many in the middle, and a last line cut short (no newline)."""
    lt, sep = profile.line_terminator, profile.delimiter
    lines = text.split(lt)
    if lines and lines[-1] == "":
        lines.pop()
    n_data = len(lines) - 1
    mid = 1 + n_data // 2
    lines[mid] = lines[mid] + sep + "多余字段"
    last = lines[-1]
    n_fields = last.count(sep) + 1
    keep_fields = max(1, n_fields // 2)
    cut, pos = 0, -1
    for _ in range(keep_fields):
        pos = last.index(sep, pos + 1)
        cut = pos
    lines[-1] = last[: cut + 1 + min(2, len(last) - cut - 1)]
    return lt.join(lines), [keys[mid - 1], keys[-1]]


def _sheet_name(profile: StationProfile, entity: str) -> str:
    return SHEETS[entity][naming.PERSON_SHEETS.index(profile.sheet)]


def _write_xlsx(path: Path, profile: StationProfile, entity: str, frame: pl.DataFrame) -> None:
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                         "strings_to_formulas": False, "strings_to_urls": False})
    wb.set_properties({"created": _FIXED_CREATED, "author": profile.name, "title": _title(profile, entity)})
    ws = wb.add_worksheet(_sheet_name(profile, entity))
    text = wb.add_format({"num_format": "@"})
    bold = wb.add_format({"bold": True, "align": "center"})
    ncols = frame.width
    # identifiers are text cells with the Text number format (no 5.00103E+17 here)
    coded = {"local_id", "id_number", "credit_code", "phone", "area_code", "owner_id_number", "owner_phone"}
    text_cols = {i for i, (canon, _) in enumerate(station_columns(profile, entity)) if canon in coded}
    for c in range(ncols):
        ws.set_column(c, c, 22 if c in text_cols else 14, text if c in text_cols else None)
    row = 0
    if profile.title_row:
        ws.merge_range(0, 0, 0, max(ncols - 1, 1), _title(profile, entity), bold)
        row = 1
    ws.write_row(row, 0, frame.columns, bold)
    row += 1
    write = ws.write_string
    for values in frame.iter_rows():
        for c, v in enumerate(values):
            if v is not None:
                if c in text_cols:
                    write(row, c, v, text)
                else:
                    write(row, c, v)
        row += 1
    if profile.notes_sheet:
        notes = wb.add_worksheet("说明")
        notes.write_string(0, 0, f"本表由{profile.name}业务系统导出，导出日期：{EXPORT_DATE}")
    wb.close()


# -- SQL ---------------------------------------------------------------------------------------
def write_sql_source(engine: sa.Engine, profile: StationProfile, entity: str,
                     df: pl.DataFrame) -> WrittenSource:
    table_name = f"{profile.id}_{SOURCE_NAMES[entity]}"
    cols = station_columns(profile, entity)
    headers = profile.headers(entity)
    upd_header = headers["source_updated_at"]
    md = sa.MetaData()
    sa_cols = []
    for canon, header in cols:
        if canon == "local_id":
            sa_cols.append(sa.Column(header, sa.String(64), primary_key=True))
        elif canon == "source_updated_at":
            sa_cols.append(sa.Column(header, sa.DateTime(), nullable=False))
        else:
            sa_cols.append(sa.Column(header, sa.String(255)))
    watermark = profile.watermark or upd_header
    if watermark == "row_version":
        sa_cols.append(sa.Column("row_version", sa.BigInteger(), nullable=False))
    table = sa.Table(table_name, md, *sa_cols)
    frame = df.select(
        [pl.col("updated_dt" if c == "source_updated_at" else c).alias(h) for c, h in cols]
    )
    if watermark == "row_version":
        frame = frame.with_columns(
            (pl.col(upd_header).rank("ordinal") + 1000).cast(pl.Int64).alias("row_version")
        )
    table.drop(engine, checkfirst=True)
    table.create(engine)
    rows = frame.to_dicts()
    with engine.begin() as conn:
        for start in range(0, len(rows), 20_000):
            conn.execute(table.insert(), rows[start:start + 20_000])
    return _source(
        profile, entity, df, path=None, rel_path=None, table=table_name, encoding=None,
        watermark=watermark,
    )
