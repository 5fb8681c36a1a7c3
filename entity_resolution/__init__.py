"""Standardisation and entity resolution: pure functions over Polars frames (no SQL, no Dagster)."""
