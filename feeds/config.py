"""The `subscriptions.yaml` contract: who may receive which golden records, which fields, how masked.

Deny by default: a project without the file has no subscribers, a subscriber sees only the
entity types and scope it names, and only the fields that are both in its `fields` list and not
`hidden` by its role. Roles and masking rules are config, so that a privacy officer can read and
change them without touching code. Validated with pydantic at the edge; a bad file raises a
ConfigError that names the file, the key path and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import Field, ValidationError, model_validator

from core.config import StrictConfig, format_validation_error, parse_yaml_bounded, read_config_bytes
from core.errors import ConfigError

SUBSCRIPTIONS_YAML = "subscriptions.yaml"
SUBSCRIBER_ID = r"^[A-Za-z0-9_.-]{1,64}$"
FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
Level = Literal["full", "masked", "hidden"]
Format = Literal["jsonl", "csv", "parquet"]
# Levels that are delivered, in the audit log's words.
DELIVERED_LEVELS = ("full", "masked")


# -- masking rules ------------------------------------------------------------------------------
class PartialRule(StrictConfig):
    """Keep the first and last characters, mask the middle (ID numbers, phones, names)."""

    kind: Literal["partial"] = "partial"
    keep_first: int = Field(default=0, ge=0, le=64)
    keep_last: int = Field(default=0, ge=0, le=64)
    mask_char: str = Field(default="*", min_length=1, max_length=1)


class AddressRule(StrictConfig):
    """Cut an address down to an administrative level, rebuilt from the parsed addr_* parts."""

    kind: Literal["address"]
    level: Literal["district", "street", "community"] = "community"


class DateRule(StrictConfig):
    """Keep only the year (`1990`) or year and month (`1990-05`) of an ISO date."""

    kind: Literal["date"]
    keep: Literal["year", "month"] = "year"


class RedactRule(StrictConfig):
    """Replace the whole value with fixed text (the rule for masked fields without their own)."""

    kind: Literal["redact"]
    text: str = "***"


MaskRule = Annotated[Union[PartialRule, AddressRule, DateRule, RedactRule], Field(discriminator="kind")]
DEFAULT_RULE = RedactRule(kind="redact")


def _rule_kind(data: object) -> object:
    """`{keep_first: 6, keep_last: 4}` needs no `kind:`; partial is the common case."""
    if isinstance(data, dict) and "kind" not in data:
        return {**data, "kind": "partial"}
    return data


class Role(StrictConfig):
    """Per field: full, masked or hidden; every field not named gets `default` (hidden)."""

    default: Level = "hidden"
    fields: dict[Annotated[str, Field(pattern=FIELD_NAME)], Level] = Field(default_factory=dict)

    def level(self, field: str) -> Level:
        return self.fields.get(field, self.default)


# -- subscribers --------------------------------------------------------------------------------
class Scope(StrictConfig):
    area_codes: tuple[Annotated[str, Field(pattern=r"^[0-9]{1,12}$")], ...] = ()  # area-code prefixes
    own_records: bool = False  # entities holding at least one record of the subscriber's station

    @model_validator(mode="after")
    def _something(self) -> "Scope":
        if not self.area_codes and not self.own_records:
            raise ValueError("scope needs area_codes (prefixes) and/or own_records: true")
        return self


class QueryScope(StrictConfig):
    """Which entities a subscriber's match and search answers may show: area-code prefixes, the
    entities holding its own station's records, or the whole network. Its own grant, apart from the
    feed scope: a role may look residents up network-wide while receiving feeds only for its area."""

    area_codes: tuple[Annotated[str, Field(pattern=r"^[0-9]{1,12}$")], ...] = ()
    own_records: bool = False
    network: bool = False

    @model_validator(mode="after")
    def _something(self) -> "QueryScope":
        if not self.area_codes and not self.own_records and not self.network:
            raise ValueError("query scope needs area_codes (prefixes), own_records: true and/or network: true")
        return self


class QueryGrant(StrictConfig):
    """The front desk (POST /v1/match, GET /v1/search) for one subscriber. Without it: 403."""

    scope: QueryScope
    entity_types: tuple[Annotated[str, Field(pattern=FIELD_NAME)], ...] = ()  # default: the subscriber's
    per_minute: int = Field(default=60, ge=1, le=6000)  # matches and searches per token per minute
    max_results: int = Field(default=10, ge=1, le=50)  # hard cap on entities in one answer
    # POST /v1/records: the station may enter verified records (stored under its own station_id);
    # station subscribers only
    entry: bool = False


class Delivery(StrictConfig):
    formats: tuple[Format, ...] = Field(default=("jsonl", "csv", "parquet"), min_length=1)
    outbox: str | None = None  # folder; default <data dir>/outbox/<subscriber id>; relative to the config folder

    @model_validator(mode="after")
    def _unique(self) -> "Delivery":
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats repeat a format: {list(self.formats)}")
        return self


class Subscriber(StrictConfig):
    id: str = Field(pattern=SUBSCRIBER_ID)
    kind: Literal["station", "department"]
    name: str | None = None
    station_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]+$")
    entity_types: tuple[Annotated[str, Field(pattern=FIELD_NAME)], ...] = Field(min_length=1)
    scope: Scope
    fields: tuple[Annotated[str, Field(pattern=FIELD_NAME)], ...] = Field(min_length=1)
    role: str
    delivery: Delivery = Delivery()
    query: QueryGrant | None = None  # the front desk's match and search; none: no queries at all

    @property
    def query_types(self) -> tuple[str, ...]:
        """The entity types the subscriber may match and search (none without a query grant)."""
        if self.query is None:
            return ()
        return self.query.entity_types or self.entity_types

    @model_validator(mode="after")
    def _station(self) -> "Subscriber":
        if self.id.startswith("."):
            raise ValueError(f"id {self.id!r} must not start with '.' (it names the outbox folder)")
        if self.kind == "station" and not self.station_id:
            raise ValueError("a station subscriber needs station_id")
        if self.scope.own_records and not self.station_id:
            raise ValueError("scope.own_records needs station_id (whose records are 'own')")
        if self.query is not None and self.query.scope.own_records and not self.station_id:
            raise ValueError("query.scope.own_records needs station_id (whose records are 'own')")
        if self.query is not None and self.query.entry and self.kind != "station":
            raise ValueError("query.entry: only a station subscriber may enter records (kind: station)")
        return self


class Subscriptions(StrictConfig):
    version: Literal[1] = 1
    masking: dict[Annotated[str, Field(pattern=FIELD_NAME)], MaskRule] = Field(default_factory=dict)
    roles: dict[Annotated[str, Field(pattern=SUBSCRIBER_ID)], Role] = Field(default_factory=dict)
    subscribers: tuple[Subscriber, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _partial_default(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("masking"), dict):
            data = {**data, "masking": {k: _rule_kind(v) for k, v in data["masking"].items()}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Subscriptions":
        ids = [s.id for s in self.subscribers]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"subscriber ids must be unique; repeated: {dupes}")
        for i, s in enumerate(self.subscribers):
            if s.role not in self.roles:
                raise ValueError(f"subscribers.{i} ({s.id}): role {s.role!r} is not defined under roles "
                                 f"(defined: {sorted(self.roles)})")
        return self

    # -- lookups ---------------------------------------------------------------------------
    def subscriber(self, subscriber_id: str) -> Subscriber | None:
        return next((s for s in self.subscribers if s.id == subscriber_id), None)

    def rule(self, field: str) -> MaskRule:
        return self.masking.get(field, DEFAULT_RULE)

    def levels(self, subscriber: Subscriber) -> dict[str, Level]:
        """The effective policy: field -> full | masked for every field the subscriber may see
        (in its `fields` list AND not hidden by its role), in the order of its list."""
        role = self.roles[subscriber.role]
        out: dict[str, Level] = {}
        for f in subscriber.fields:
            level = role.level(f)
            if level != "hidden":
                out[f] = level
        return out


def parse_subscriptions(data: object, *, source: Path | str = "<subscriptions>") -> Subscriptions:
    if data is None:
        data = {}
    try:
        return Subscriptions.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err, "subscriptions")) from None


# -- reading, bounded: the file is read by a long-running API as well as by the CLI --------------
MAX_SUBSCRIPTIONS_BYTES = 16 * 1024 * 1024  # a 943-station network's file is ~0.5 MB


def read_subscriptions_bytes(path: Path | str, *, max_bytes: int = MAX_SUBSCRIPTIONS_BYTES) -> bytes | None:
    """The file's bytes, or None when there is no file; a file larger than `max_bytes`, not a
    regular file (a FIFO, a device, a folder) or unreadable is a ConfigError."""
    return read_config_bytes(path, max_bytes=max_bytes)


def subscriptions_from_bytes(data: bytes | None, *, source: Path | str = "<subscriptions>") -> Subscriptions:
    """Decode (UTF-8), parse (bounded YAML) and validate; None (no file) means no subscribers."""
    if data is None:
        return Subscriptions()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          f"save it as UTF-8") from None
    return parse_subscriptions(parse_yaml_bounded(text, source=source), source=source)


def load_subscriptions(config_dir: Path | str) -> Subscriptions:
    """The project's subscriptions; a missing file means no subscribers (deny by default)."""
    path = Path(config_dir) / SUBSCRIPTIONS_YAML
    return subscriptions_from_bytes(read_subscriptions_bytes(path), source=path)


def outbox_dir(subscriber: Subscriber, *, config_dir: Path, data_dir: Path) -> Path:
    """Where a subscriber's files go: its own `delivery.outbox`, else <data>/outbox/<id>."""
    if subscriber.delivery.outbox:
        p = Path(subscriber.delivery.outbox)
        return p if p.is_absolute() else (config_dir / p)
    return data_dir / "outbox" / subscriber.id


# -- writing (for `enteronce subscription add/remove`) --------------------------------------------
def dump_subscriptions(subs: Subscriptions) -> str:
    doc = subs.model_dump(mode="json", exclude_defaults=False)
    doc["subscribers"] = [
        {k: v for k, v in s.items() if v is not None} for s in doc["subscribers"]
    ]
    header = "# Feed subscriptions: who receives which golden records and fields (deny by default).\n"
    return header + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=1000)


def write_subscriptions(config_dir: Path | str, subs: Subscriptions) -> Path:
    """Validate again and write atomically, so a half-written file never replaces a good one."""
    path = Path(config_dir) / SUBSCRIPTIONS_YAML
    text = dump_subscriptions(subs)
    parse_subscriptions(yaml.safe_load(text), source=path)  # round-trips, or raises
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def with_subscriber(subs: Subscriptions, entry: dict, *, source: Path | str) -> Subscriptions:
    """A copy with one subscriber added (or replaced by id), validated as a whole."""
    doc = subs.model_dump(mode="json")
    doc["subscribers"] = [s for s in doc["subscribers"] if s["id"] != entry.get("id")] + [entry]
    return parse_subscriptions(doc, source=source)


def without_subscriber(subs: Subscriptions, subscriber_id: str) -> Subscriptions:
    if subs.subscriber(subscriber_id) is None:
        raise ConfigError(f"subscribers: no subscriber {subscriber_id!r} (known: {[s.id for s in subs.subscribers]})")
    doc = subs.model_dump(mode="json")
    doc["subscribers"] = [s for s in doc["subscribers"] if s["id"] != subscriber_id]
    return parse_subscriptions(doc)
