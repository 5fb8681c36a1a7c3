"""Config files: the strict base model of every config contract, and bounded reading.

Every config file (stations.yaml, resolution.yaml, quality.yaml, subscriptions.yaml) is
validated at the edge with pydantic models built on `StrictConfig`, so a bad file fails before
any data moves, with an error (`format_validation_error`) that names the file, the key path
(pydantic's location joined with ".") and what was expected. Files are read bounded: a config
file is small, and a huge, deep or alias-bombed one is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import ConfigError


class StrictConfig(BaseModel):
    """Base of every config model: unknown keys are errors (a typo never passes silently) and a
    validated config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(source: Path | str, err: ValidationError, what: str = "configuration") -> str:
    """One line per problem: the key path and what was expected, under the file's name.

    A container reported empty only because its items failed is left out: the items say more.
    """
    lines = [f"{source}: invalid {what}"]
    errors = err.errors()
    locs = [tuple(e["loc"]) for e in errors]
    for e in errors:
        here = tuple(e["loc"])
        if any(o != here and o[: len(here)] == here for o in locs):
            continue
        loc = ".".join(str(p) for p in here) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


# -- reading config files, bounded: a config file is small; a huge, deep or alias-bombed one is refused ----
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a 943-station stations.yaml or subscriptions.yaml is ~0.5 MB
MAX_YAML_DEPTH = 32  # the contracts need 6 levels
MAX_YAML_NODES = 1_000_000  # nodes once aliases are expanded (943 stations: ~50k)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What and where, without the file's text (PyYAML's snippets quote the document)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = "; ".join(x for x in (exc.context, exc.problem) if x)
        return f"{what or exc.__class__.__name__}{where}"
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def _check_yaml_shape(text: str, *, source: Path | str, max_depth: int, max_nodes: int,
                      error: type[Exception]) -> None:
    """Walk the YAML events (no recursion, nothing built) and refuse a document nested deeper than
    `max_depth` (yaml.safe_load recurses per level: RecursionError) or with more than `max_nodes`
    nodes once aliases are expanded (a billion-laughs alias bomb is tiny on disk but not in
    memory); an alias to a node that is still open (a recursive structure) is refused too."""
    depth = nodes = 0
    open_: list[tuple[str | None, int]] = []
    sizes: dict[str, int] = {}  # anchor -> its node's expanded size
    for ev in yaml.parse(text, Loader=_LOADER):
        if isinstance(ev, yaml.ScalarEvent):
            nodes += 1
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
        elif isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > max_depth:
                raise error(f"{source}: nested deeper than {max_depth} levels (line "
                            f"{ev.start_mark.line + 1}); refused")
            open_.append((ev.anchor, nodes))
            nodes += 1
            if ev.anchor is not None:
                sizes.pop(ev.anchor, None)  # open: an alias to it now would be recursive
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1
            anchor, start = open_.pop()
            if anchor is not None:
                sizes[anchor] = nodes - start
        elif isinstance(ev, yaml.AliasEvent):
            size = sizes.get(ev.anchor)
            if size is None:
                raise error(f"{source}: alias *{ev.anchor} (line {ev.start_mark.line + 1}) refers to no "
                            f"complete node (undefined, or recursive); refused")
            nodes += size
        elif isinstance(ev, yaml.DocumentStartEvent):
            sizes.clear()
        if nodes > max_nodes:
            raise error(f"{source}: more than {max_nodes:,} YAML nodes once aliases are expanded "
                        f"(line {ev.start_mark.line + 1}); refused")


def parse_yaml_bounded(text: str, *, source: Path | str = "<yaml>", max_depth: int = MAX_YAML_DEPTH,
                       max_nodes: int = MAX_YAML_NODES, error: type[Exception] = ConfigError) -> object:
    """yaml.safe_load with bounds on nesting and alias expansion; every YAML problem is `error`
    naming `source`, the line and column (never the document's text)."""
    try:
        _check_yaml_shape(text, source=source, max_depth=max_depth, max_nodes=max_nodes, error=error)
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (CSafeLoader or SafeLoader)
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None


def read_config_bytes(path: Path | str, *, max_bytes: int = MAX_CONFIG_BYTES,
                      error: type[Exception] = ConfigError) -> bytes | None:
    """The file's bytes, or None when there is no file; a file larger than `max_bytes`, not a
    regular file (a FIFO, a device, a folder) or unreadable is `error`."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block us
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror or exc.__class__.__name__}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: not a regular file; refused")
        if st.st_size > max_bytes:
            raise error(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} allowed; refused")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)  # it may have grown since fstat
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror or exc.__class__.__name__}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{path}: more than the {max_bytes:,} bytes allowed; refused")
    return data


def load_yaml(path: Path, error: type[Exception] = ConfigError) -> object:
    """Read a YAML config file (bounded: size, nesting, aliases), turning a missing file, bytes
    that are not UTF-8 or a syntax error into `error` (the caller's config error) with a message
    that names the file."""
    data = read_config_bytes(path, error=error)
    if data is None:
        raise error(f"{path}: file not found")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                    f"save it as UTF-8") from None
    return parse_yaml_bounded(text, source=path, error=error)
