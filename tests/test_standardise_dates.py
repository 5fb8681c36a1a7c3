"""Dates: stated birth dates in the configured formats, impossible dates flagged; timestamps."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from entity_resolution.standardise import (
    DEFAULT_DATE_FORMATS,
    standardise_organisations,
    standardise_persons,
)
from entity_resolution.standardise.dates import format_shape

TODAY = date(2025, 1, 1)


def births(
    *values: str | None, date_formats: tuple[str, ...] = DEFAULT_DATE_FORMATS
) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"name": ["张伟"] * len(values), "id_number": ["11010519491231002X"] * len(values),
         "birth_date": list(values)},
        schema_overrides={"birth_date": pl.String},
    )
    return standardise_persons(frame, date_formats=date_formats, today=TODAY)


def test_default_formats() -> None:
    assert DEFAULT_DATE_FORMATS == ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y.%m.%d")


@pytest.mark.parametrize(
    "raw",
    [
        "1990-01-02",
        "1990-1-2",
        "19900102",
        "1990/01/02",
        "1990/1/2",
        "1990年01月02日",
        "1990年1月2日",
        "1990.01.02",
        "１９９０年１月２日",  # full-width digits
        " 1990-01-02 ",
        "1990 年 1 月 2 日",
        "1990-01-02 00:00:00",  # database export with a midnight time
    ],
)
def test_formats_parse(raw: str) -> None:
    frame = births(raw)
    assert frame["birth_date"][0] == date(1990, 1, 2)
    assert frame.schema["birth_date"] == pl.Date


@pytest.mark.parametrize("raw", ["1990-02-30", "19900230", "1990/2/30", "1990年2月30日", "1990.13.01",
                                 "1991-02-29"])
def test_impossible_dates_are_flagged_not_guessed(raw: str) -> None:
    frame = births(raw)
    assert frame["birth_date"][0] is None
    assert frame["issues"][0] == f"birth_date: impossible date '{raw}'"


def test_leap_day_is_real() -> None:
    assert births("2000-02-29")["birth_date"][0] == date(2000, 2, 29)


@pytest.mark.parametrize("raw", ["1990102", "02/01/1990", "yesterday", "1990-01"])
def test_unrecognised_dates(raw: str) -> None:
    frame = births(raw)
    assert frame["birth_date"][0] is None
    assert frame["issues"][0] == f"birth_date: unrecognised date format '{raw}'"


def test_birth_date_in_future_or_before_1900_is_kept_and_flagged() -> None:
    frame = births("2030-05-01", "1850-01-01")
    assert frame["birth_date"].to_list() == [date(2030, 5, 1), date(1850, 1, 1)]
    first_issues = [issues.split("; ")[0] for issues in frame["issues"]]
    assert first_issues == [
        "birth_date: date in the future '2030-05-01'",
        "birth_date: date before 1900 '1850-01-01'",
    ]


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_missing_birth_date_is_not_an_issue(raw: str | None) -> None:
    frame = births(raw)
    assert frame["birth_date"][0] is None
    assert frame["issues"][0] is None


def test_station_specific_formats() -> None:
    frame = births("02/01/1990", "1990-01-02", date_formats=("%d/%m/%Y",))
    assert frame["birth_date"].to_list() == [date(1990, 1, 2), None]
    assert frame["issues"][1] == "birth_date: unrecognised date format '1990-01-02'"


def test_format_shapes_are_strict_between_adjacent_directives() -> None:
    assert format_shape("%Y%m%d") == r"^[0-9]{4}[0-9]{2}[0-9]{2}$"
    assert format_shape("%Y/%m/%d") == r"^[0-9]{4}/[0-9]{1,2}/[0-9]{1,2}$"
    assert format_shape("%d%%%Y") == r"^[0-9]{1,2}%[0-9]{4}$"


def test_many_rows_share_parsing() -> None:
    values = ["1990-01-02", "1990年1月2日", "1990-02-30", None] * 500
    frame = births(*values)
    assert frame.height == 2000
    assert frame["birth_date"].to_list()[:4] == [date(1990, 1, 2), date(1990, 1, 2), None, None]
    assert frame["birth_date"].null_count() == 1000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-01 10:20:30", datetime(2024, 5, 1, 10, 20, 30)),
        ("2024-05-01T10:20:30", datetime(2024, 5, 1, 10, 20, 30)),
        ("2024-05-01T10:20:30.250", datetime(2024, 5, 1, 10, 20, 30, 250000)),
        ("2024-05-01 10:20", datetime(2024, 5, 1, 10, 20)),
        ("2024-05-01", datetime(2024, 5, 1)),
        ("2024/5/1 10:20:30", datetime(2024, 5, 1, 10, 20, 30)),
        ("2024-05-01T02:20:30Z", datetime(2024, 5, 1, 10, 20, 30)),  # UTC -> China time
        ("2024-05-01T10:20:30+08:00", datetime(2024, 5, 1, 10, 20, 30)),
        ("2024年5月1日", datetime(2024, 5, 1)),  # a bare date in a station date format
        ("20240501", datetime(2024, 5, 1)),
    ],
)
def test_source_updated_at(raw: str, expected: datetime) -> None:
    frame = standardise_persons(pl.DataFrame({"name": ["张伟"], "source_updated_at": [raw]}))
    assert frame.schema["source_updated_at"] == pl.Datetime("us")
    assert frame["source_updated_at"][0] == expected


def test_unparseable_timestamp_is_flagged() -> None:
    frame = standardise_organisations(
        pl.DataFrame({"name": ["某公司"], "credit_code": ["91350100M000100Y43"],
                      "source_updated_at": ["next tuesday"]})
    )
    assert frame["source_updated_at"][0] is None
    assert frame["issues"][0] == "source_updated_at: unparseable timestamp 'next tuesday'"
