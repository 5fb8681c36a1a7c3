"""Station systems into raw records: stations.yaml, readers, ingest, the synthetic network."""
