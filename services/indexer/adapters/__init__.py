"""I/O adapters of the indexer service."""
