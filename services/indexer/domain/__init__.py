"""Pure logic of the indexer service (no bus, no I/O)."""
