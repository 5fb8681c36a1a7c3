"""Dagster definitions (assets, checks, sensors, resources), the in-process runner and the `enteronce` CLI: thin, each asset calls one domain function."""

from core.memory import tune_polars_allocator

tune_polars_allocator()  # before anything loads Polars: every entry point imports this package first
