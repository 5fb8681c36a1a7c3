"""One dynamic partition per station: stations join the network by config, not by code."""

import dagster as dg

stations_partitions = dg.DynamicPartitionsDefinition(name="stations")
