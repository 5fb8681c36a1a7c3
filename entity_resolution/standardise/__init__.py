"""Standardisers: raw station records -> comparable canonical fields, with every defect flagged.

Pure, vectorised functions over Polars frames. Per-string work that Polars cannot express
(OpenCC, pinyin) runs once per distinct value or character, never once per row.
"""

from entity_resolution.standardise.dates import DEFAULT_DATE_FORMATS
from entity_resolution.standardise.organisations import (
    ORGANISATION_COLUMNS,
    ORGANISATION_FIELDS,
    standardise_organisations,
)
from entity_resolution.standardise.persons import (
    PERSON_COLUMNS,
    PERSON_FIELDS,
    standardise_persons,
)

__all__ = [
    "DEFAULT_DATE_FORMATS",
    "ORGANISATION_COLUMNS",
    "ORGANISATION_FIELDS",
    "PERSON_COLUMNS",
    "PERSON_FIELDS",
    "standardise_organisations",
    "standardise_persons",
]
