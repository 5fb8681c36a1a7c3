"""The warehouse: schema, migrations and bulk reads/writes. Imports nothing else of the project."""

from warehouse.store import Warehouse

__all__ = ["Warehouse"]
