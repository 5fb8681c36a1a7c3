"""Dagster definitions (assets, checks, sensors, resources), the in-process runner and the `enteronce` CLI: thin, each asset calls one domain function."""
