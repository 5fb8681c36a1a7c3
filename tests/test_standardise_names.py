"""Names: name_norm (simplified, half-width, no spaces, one middle dot) and name_pinyin."""

from __future__ import annotations

import polars as pl
import pytest

from entity_resolution.standardise import names, standardise_persons, text


def persons(*raw_names: str | None) -> pl.DataFrame:
    return standardise_persons(pl.DataFrame({"name": list(raw_names)}, schema={"name": pl.String}))


def norm(raw: str | None) -> str | None:
    return persons(raw)["name_norm"][0]


def pinyin(raw: str | None) -> str | None:
    return persons(raw)["name_pinyin"][0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("張偉", "张伟"),
        ("陳", "陈"),
        ("陳小東", "陈小东"),
        (" 张 伟 ", "张伟"),
        ("张\u3000伟", "张伟"),  # ideographic space
        ("张\t伟\n", "张伟"),
        ("ＬＩ　Ｍｉｎｇ", "LIMing"),  # full-width letters and space
        ("王５", "王5"),
        ("乾隆", "乾隆"),  # OpenCC phrase rules still apply: not 干隆
    ],
)
def test_name_norm(raw: str, expected: str) -> None:
    assert norm(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "阿依古丽·买买提",  # U+00B7
        "阿依古丽・买买提",  # U+30FB katakana middle dot
        "阿依古丽･买买提",  # U+FF65 half-width katakana middle dot
        "阿依古丽•买买提",  # U+2022 bullet
        "阿依古丽‧买买提",  # U+2027 hyphenation point
        "阿依古丽.买买提",  # ASCII full stop between Han characters
        "阿依古丽．买买提",  # full-width full stop
        "阿依古丽 · 买买提",  # spaces around the dot
        "阿依古丽··买买提",  # doubled
        "·阿依古丽·买买提·",  # stray leading / trailing dots
    ],
)
def test_minority_name_dots_normalised(raw: str) -> None:
    assert norm(raw) == "阿依古丽·买买提"


def test_minority_name_pinyin_separates_parts() -> None:
    assert pinyin("阿依古丽·买买提") == "a yi gu li mai mai ti"


def test_blank_names_are_null() -> None:
    frame = persons(None, "", "   ", "\u3000")
    assert frame["name"].to_list() == [None] * 4
    assert frame["name_norm"].to_list() == [None] * 4
    assert frame["name_pinyin"].to_list() == [None] * 4
    assert frame["issues"].to_list() == ["name: missing; id_number: missing"] * 4


def test_name_keeps_stripped_original() -> None:
    frame = persons("  張 偉 ")
    assert frame["name"][0] == "張 偉"
    assert frame["name_norm"][0] == "张伟"


def test_traditional_and_simplified_agree() -> None:
    frame = persons("張偉", "张伟", "张 伟", "ＺＨＡＮＧ")
    assert frame["name_norm"].to_list()[:3] == ["张伟"] * 3
    assert frame["name_pinyin"].to_list() == ["zhang wei", "zhang wei", "zhang wei", "zhang"]


def test_homophones_share_pinyin() -> None:
    frame = persons("张伟", "章伟", "張偉", "张玮")
    assert frame["name_pinyin"].to_list() == ["zhang wei"] * 4


def test_pinyin_format() -> None:
    assert pinyin("欧阳娜娜") == "ou yang na na"
    assert pinyin("吕绿") == "lv lv"
    assert pinyin("李A") == "li a"


@pytest.mark.parametrize(
    ("surname", "reading"),
    [
        ("单", "shan"), ("曾", "zeng"), ("解", "xie"), ("区", "ou"), ("仇", "qiu"),
        ("朴", "piao"), ("查", "zha"), ("盖", "ge"), ("乐", "yue"), ("缪", "miao"),
        ("任", "ren"), ("尉", "yu"), ("覃", "qin"), ("翟", "zhai"), ("万", "wan"),
        ("秘", "bi"), ("种", "chong"), ("燕", "yan"),
    ],
)
def test_surname_readings_first_character(surname: str, reading: str) -> None:
    assert pinyin(surname + "明") == f"{reading} ming"


def test_surname_reading_only_for_first_character() -> None:
    assert pinyin("单单") == "shan dan"
    assert pinyin("张曾") == "zhang ceng"
    assert pinyin("區明") == "ou ming"  # traditional form converted first


def test_compound_surnames() -> None:
    assert pinyin("万俟卨") == "mo qi xie"
    assert pinyin("尉迟恭") == "yu chi gong"


def test_pinyin_runs_once_per_distinct_character(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = names._token

    def counting(char: str) -> str:
        calls.append(char)
        return real(char)

    monkeypatch.setattr(names, "_token", counting)
    monkeypatch.setattr(names, "_CHAR_TOKENS", {})
    frame = persons(*(["张伟", "章伟", "张三"] * 400))
    assert frame.height == 1200
    assert sorted(calls) == sorted(set("张伟章三"))


def test_opencc_runs_once_per_distinct_value(monkeypatch: pytest.MonkeyPatch) -> None:
    text._traditional_pattern()  # built with the real converter
    real = text._opencc_t2s()
    calls: list[str] = []

    class Counting:
        def convert(self, value: str) -> str:
            calls.append(value)
            return real.convert(value)

    monkeypatch.setattr(text, "_opencc_t2s", lambda: Counting())
    frame = persons(*(["張偉", "陳明", "李四"] * 500))
    assert frame["name_norm"].to_list()[:3] == ["张伟", "陈明", "李四"]
    assert sorted(calls) == ["張偉", "陳明"]  # simplified names never reach OpenCC


def test_organisation_name_norm_brackets_and_periods() -> None:
    from entity_resolution.standardise import standardise_organisations

    frame = standardise_organisations(
        pl.DataFrame(
            {
                "name": ["重庆市某某商贸有限公司（渝中分公司）", "重慶市某某商貿有限公司(渝中分公司)",
                         "ABC Trading Co., Ltd."],
                "legal_rep": ["張 三", "阿依古丽・买买提", None],
            }
        )
    )
    assert frame["name_norm"].to_list() == [
        "重庆市某某商贸有限公司(渝中分公司)",
        "重庆市某某商贸有限公司(渝中分公司)",
        "ABCTradingCo.,Ltd.",
    ]
    assert frame["legal_rep"].to_list() == ["張 三", "阿依古丽・买买提", None]
    assert frame["legal_rep_norm"].to_list() == ["张三", "阿依古丽·买买提", None]
