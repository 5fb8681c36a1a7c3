"""Permissioned subscription feeds back down to the stations.

config (subscriptions.yaml: subscribers, roles, masking rules; deny by default) -> scope (which
events and records are in a subscriber's scope, before or after each change) -> masking (Polars
expressions per rule) -> build (events and snapshots projected and masked per policy) -> delivery:
files (JSON Lines, CSV with BOM, Parquet, manifests) and service (what the HTTP API asks), every
delivery in the append-only audit log (warehouse/feeds.py). Never imports `pipelines`.
"""
