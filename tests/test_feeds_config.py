"""subscriptions.yaml validation, its writer, the simulated network's file, and masking rules."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from connectors.simulate.network import build_network
from connectors.simulate.subscriptions_writer import subscriptions_doc
from feeds.config import (
    AddressRule, DateRule, PartialRule, load_subscriptions, parse_subscriptions, with_subscriber,
    without_subscriber, write_subscriptions,
)
from feeds.masking import mask, mask_frame

BASE = {
    "version": 1,
    "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4},
                "name_norm": {"keep_first": 1}, "address": {"kind": "address", "level": "community"},
                "birth_date": {"kind": "date", "keep": "year"}},
    "roles": {"officer": {"fields": {"name_norm": "full", "id_number": "masked", "phone": "hidden"}}},
    "subscribers": [{"id": "s0001", "kind": "station", "station_id": "s0001", "entity_types": ["person"],
                     "scope": {"area_codes": ["500103001"], "own_records": True},
                     "fields": ["name_norm", "id_number", "phone", "sex"], "role": "officer"}],
}


def _with(**changes) -> dict:
    sub = {**BASE["subscribers"][0], **changes}
    return {**BASE, "subscribers": [sub]}


def test_missing_file_means_no_subscribers(tmp_path: Path) -> None:
    assert load_subscriptions(tmp_path).subscribers == ()


def test_effective_fields_are_allowed_and_not_hidden() -> None:
    subs = parse_subscriptions(BASE)
    # phone is allowed but hidden by the role; sex is allowed but the role's default is hidden
    assert subs.levels(subs.subscribers[0]) == {"name_norm": "full", "id_number": "masked"}
    assert subs.rule("id_number") == PartialRule(keep_first=6, keep_last=4)


@pytest.mark.parametrize(("doc", "expected"), [
    (_with(role="nobody"), "role 'nobody' is not defined under roles"),
    (_with(id="../etc"), "subscribers.0.id: String should match pattern"),
    (_with(id=".."), "must not start with '.'"),
    (_with(id="a'; DROP TABLE x;--"), "subscribers.0.id"),
    (_with(kind="station", station_id=None), "a station subscriber needs station_id"),
    (_with(scope={}), "scope needs area_codes"),
    (_with(scope={"area_codes": ["50A1"]}), "subscribers.0.scope.area_codes.0"),
    (_with(entity_types=[]), "subscribers.0.entity_types"),
    (_with(fields=[]), "subscribers.0.fields"),
    (_with(delivery={"formats": ["xml"]}), "subscribers.0.delivery.formats.0"),
    (_with(colour="red"), "subscribers.0.colour: unknown key"),
    ({**BASE, "roles": {"officer": {"fields": {"phone": "secret"}}}}, "roles.officer.fields.phone"),
    ({**BASE, "masking": {"phone": {"kind": "scramble"}}}, "masking.phone"),
    ({**BASE, "subscribers": BASE["subscribers"] * 2}, "subscriber ids must be unique"),
])
def test_bad_config_names_file_key_and_expectation(tmp_path: Path, doc: dict, expected: str) -> None:
    (tmp_path / "subscriptions.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_subscriptions(tmp_path)
    assert str(tmp_path / "subscriptions.yaml") in str(err.value)
    assert expected in str(err.value)


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "subscriptions.yaml").write_text("roles: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="subscriptions.yaml: not valid YAML"):
        load_subscriptions(tmp_path)


def test_writer_round_trips_add_and_remove(tmp_path: Path) -> None:
    subs = parse_subscriptions(BASE)
    write_subscriptions(tmp_path, subs)
    assert load_subscriptions(tmp_path) == subs
    added = with_subscriber(subs, {"id": "dept", "kind": "department", "entity_types": ["person"],
                                   "scope": {"area_codes": ["5001"]}, "fields": ["name_norm"], "role": "officer"},
                            source="x")
    write_subscriptions(tmp_path, added)
    again = load_subscriptions(tmp_path)
    assert [s.id for s in again.subscribers] == ["s0001", "dept"]
    with pytest.raises(ConfigError, match="role 'boss' is not defined"):
        with_subscriber(again, {"id": "x", "kind": "department", "entity_types": ["person"],
                                "scope": {"area_codes": ["5"]}, "fields": ["sex"], "role": "boss"}, source="x")
    write_subscriptions(tmp_path, without_subscriber(again, "s0001"))
    assert [s.id for s in load_subscriptions(tmp_path).subscribers] == ["dept"]
    with pytest.raises(ConfigError, match="no subscriber 'ghost'"):
        without_subscriber(again, "ghost")


def test_simulated_network_subscriptions_are_valid() -> None:
    net = build_network(12, 5)
    subs = parse_subscriptions(subscriptions_doc(net.stations), source="simulated")
    stations = [s for s in subs.subscribers if s.kind == "station"]
    assert [s.id for s in stations] == [p.id for p in net.stations]
    for s, p in zip(stations, net.stations, strict=True):
        assert s.scope.area_codes == p.jurisdiction and s.scope.own_records and s.station_id == p.id
        levels = subs.levels(s)
        assert levels["id_number"] == "masked" and levels["phone"] == "masked" and levels["name_norm"] == "full"
    dept = subs.subscriber("civil_affairs")
    assert dept.kind == "department" and "id_number" not in subs.levels(dept) and "phone" not in subs.levels(dept)


# -- masking ----------------------------------------------------------------------------------------------------
SUBS = parse_subscriptions(BASE)


def _one(field: str, rule, value, **context) -> str | None:
    frame = pl.DataFrame({field: [value], **{k: [v] for k, v in context.items()}}, schema_overrides={field: pl.String})
    return frame.select(mask(field, rule))[field][0]


def test_masking_examples() -> None:
    assert _one("id_number", SUBS.rule("id_number"), "50010119900101123X") == "500101********123X"
    assert _one("phone", SUBS.rule("phone"), "13812345678") == "138****5678"
    assert _one("name_norm", SUBS.rule("name_norm"), "张三") == "张*"
    assert _one("name_norm", SUBS.rule("name_norm"), "欧阳娜娜") == "欧***"
    assert _one("name_norm", SUBS.rule("name_norm"), "张") == "*"  # too short to keep anything
    assert _one("birth_date", SUBS.rule("birth_date"), "1990-05-17") == "1990"
    assert _one("birth_date", DateRule(kind="date", keep="month"), "1990-05-17") == "1990-05"
    assert _one("address", SUBS.rule("address"), "重庆市渝中区解放碑街道较场口社区民权路12号3栋",
                addr_district="渝中区", addr_street="解放碑街道", addr_community="较场口社区") == "渝中区解放碑街道较场口社区"
    assert _one("address", AddressRule(kind="address", level="street"), "重庆市渝中区解放碑街道民权路12号",
                addr_district="渝中区", addr_street="解放碑街道", addr_community=None) == "渝中区解放碑街道"
    assert _one("address", SUBS.rule("address"), "某地某路1号", addr_district=None, addr_street=None,
                addr_community=None) == "***"  # unparsed: nothing of the road or number leaks
    assert _one("phone", SUBS.rule("phone"), None) is None
    assert _one("sex", SUBS.rule("sex"), "M") == "***"  # masked without a rule of its own: redacted


def test_mask_frame_projects_only_visible_fields() -> None:
    frame = pl.DataFrame({"name_norm": ["李小龙"], "id_number": ["500101199001011234"], "phone": ["13800000000"]})
    out = mask_frame(frame, {"name_norm": "full", "id_number": "masked"}, SUBS)
    assert out.to_dicts() == [{"name_norm": "李小龙", "id_number": "500101********1234"}]


@settings(max_examples=200, deadline=None)
@given(value=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
       first=st.integers(0, 8), last=st.integers(0, 8))
def test_partial_masking_keeps_ends_and_hides_the_middle(value: str, first: int, last: int) -> None:
    got = _one("v", PartialRule(keep_first=first, keep_last=last), value)
    assert len(got) == len(value)  # characters, not bytes: UTF-8 stays whole
    got.encode("utf-8")
    if len(value) <= first + last:
        assert got == "*" * len(value)
    else:
        assert got[:first] == value[:first]
        assert got[len(value) - last:] == value[len(value) - last:]
        assert set(got[first:len(value) - last]) == {"*"}
    hidden = len(value) - (0 if len(value) <= first + last else first + last)
    assert got.count("*") >= hidden


@settings(max_examples=100, deadline=None)
@given(name=st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=6))
def test_chinese_names_keep_their_first_character(name: str) -> None:
    got = _one("name_norm", SUBS.rule("name_norm"), name)
    assert got == (name[0] + "*" * (len(name) - 1) if len(name) > 1 else "*")
