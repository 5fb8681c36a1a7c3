"""core: the errors, the strict config base model, bounded YAML reading and file digests."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.readers.safe import open_drop
from core.config import StrictConfig, load_yaml, parse_yaml_bounded
from core.digests import file_sha256
from core.errors import ConfigError, EnteronceError, SourceError


def test_one_config_error_shown_as_a_message() -> None:
    assert issubclass(ConfigError, EnteronceError) and issubclass(SourceError, EnteronceError)
    assert str(SourceError("a.csv", "bad", row=3, field="name")) == "a.csv, row 3, field 'name': bad"


def test_strict_config_forbids_unknown_keys_and_is_frozen() -> None:
    class Model(StrictConfig):
        a: int = 1

    with pytest.raises(ValidationError, match="extra"):
        Model.model_validate({"a": 1, "b": 2})
    with pytest.raises(ValidationError, match="frozen"):
        Model().a = 2


def test_yaml_errors_are_config_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="x.yaml: not valid YAML"):
        parse_yaml_bounded("a: [", source="x.yaml")
    with pytest.raises(ValueError, match="nested deeper than 2"):
        parse_yaml_bounded("a: {b: {c: 1}}", max_depth=2, error=ValueError)


def test_file_sha256_of_a_path_a_drop_and_an_open_file(tmp_path: Path) -> None:
    path = tmp_path / "drop.csv"
    path.write_bytes(b"id,name\n1,A\n")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path) == file_sha256(str(path)) == expected
    drop = open_drop(path)
    try:
        assert file_sha256(drop) == expected  # read from the drop's descriptor
    finally:
        drop.close()
    with path.open("rb") as fh:
        assert file_sha256(fh) == expected and not fh.closed
    assert file_sha256(io.BytesIO(b"")) == hashlib.sha256(b"").hexdigest()
