"""The entity-type registry (core.entity_types) checked against the standardiser library.

Every layer above this one gets its registry here: `load_registry(config_dir)` is the bundled
types plus the project's `entity_types.yaml`, each named standardiser one the library has.
"""

from __future__ import annotations

from pathlib import Path

from core.entity_types import EntityType, Registry, load_entity_types
from entity_resolution.standardise.library import NAMES, output_schema, standardise, validity_flags

__all__ = ["EntityType", "Registry", "load_registry", "output_schema", "standardise", "validity_flags"]


def load_registry(config_dir: Path | str | None = None) -> Registry:
    return load_entity_types(config_dir, standardisers=NAMES)
