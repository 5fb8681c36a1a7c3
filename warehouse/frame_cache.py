"""A derived, disposable Parquet copy of a large keyed frame, updated by appending deltas.

Rewriting a million-row cache after every small run cost about a second each time. Here a cached
frame is a base file plus delta files: a delta holds the rows that replace (or add to) rows of
the same key. Reading applies the deltas in order with small anti-joins; after `max_deltas`
deltas the next write folds everything into a new base. A manifest, replaced atomically, says
which files make the frame and what warehouse state it reflects (`meta`), so a reader sees the
old frame or the new one, never half of one, and a cache that does not match the warehouse is
just a miss.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import polars as pl

MANIFEST = "manifest.json"


class FrameCache:
    def __init__(self, folder: Path, key: str, *, max_deltas: int = 12):
        self.folder = folder
        self.key = key
        self.max_deltas = max_deltas

    def _manifest(self) -> dict | None:
        try:
            return json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def meta(self) -> object | None:
        manifest = self._manifest()
        return None if manifest is None else manifest["meta"]

    def schema(self) -> dict[str, pl.DataType]:
        """The cached frame's columns (from the base file's footer; {} when there is none)."""
        manifest = self._manifest()
        try:
            return {} if manifest is None else dict(pl.read_parquet_schema(self.folder / manifest["base"]))
        except Exception:  # noqa: BLE001 - a damaged cache is just a miss
            return {}

    def read(self, schema: dict[str, pl.DataType] | None, *, columns: list[str] | None = None
             ) -> tuple[pl.DataFrame, object] | None:
        """The cached frame and its meta, or None when absent, damaged or of another schema
        (`schema` None: whatever columns it holds, for a reader that checks them itself).
        `columns`: only these are read (each file's others are skipped on disk)."""
        manifest = self._manifest()
        if manifest is None:
            return None
        try:
            frame = pl.read_parquet(self.folder / manifest["base"], columns=columns)
            if schema is not None and dict(frame.schema) != schema:
                return None
            for name in manifest["deltas"]:
                frame = apply_delta(frame, pl.read_parquet(self.folder / name, columns=columns), self.key)
        except Exception:  # noqa: BLE001 - a damaged cache is just a miss
            return None
        return frame, manifest["meta"]

    def write(self, frame: pl.DataFrame, meta: object) -> None:
        """Replace the whole cached frame."""
        self.folder.mkdir(parents=True, exist_ok=True)
        base = self._part(frame)
        self._commit({"base": base, "deltas": [], "meta": meta})

    def append(self, delta: pl.DataFrame, meta: object, *, expect: object, previous: pl.DataFrame) -> None:
        """Record that `delta`'s rows replace those of the same key in `previous`, the frame the
        cache held as of `expect`. When the cache moved on meanwhile (or is gone), or the chain of
        deltas is long, the frame after the delta is written whole instead."""
        manifest = self._manifest()
        if manifest is None or manifest["meta"] != expect or len(manifest["deltas"]) >= self.max_deltas:
            self.write(apply_delta(previous, delta, self.key), meta)
            return
        deltas = manifest["deltas"] if delta.height == 0 else [*manifest["deltas"], self._part(delta)]
        self._commit({**manifest, "deltas": deltas, "meta": meta})

    def _part(self, frame: pl.DataFrame) -> str:
        name = f"{uuid.uuid4().hex}.parquet"
        frame.write_parquet(self.folder / name, statistics=False)
        return name

    def _commit(self, manifest: dict) -> None:
        partial = self.folder / f"{MANIFEST}.{uuid.uuid4().hex[:8]}.partial"
        partial.write_text(json.dumps(manifest), encoding="utf-8")
        partial.replace(self.folder / MANIFEST)
        keep = {MANIFEST, manifest["base"], *manifest["deltas"]}
        for path in self.folder.glob("*.parquet"):  # files of frames no reader can reach any more
            if path.name not in keep:
                path.unlink(missing_ok=True)


def apply_delta(frame: pl.DataFrame, delta: pl.DataFrame, key: str) -> pl.DataFrame:
    # a filter, not an anti-join: the join gathers every column of the million rows it keeps
    return pl.concat([frame.filter(~pl.col(key).is_in(delta[key].implode())), delta.select(frame.columns)])
