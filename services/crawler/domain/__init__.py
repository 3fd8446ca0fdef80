"""Pure logic of the crawler service (no bus, no I/O)."""
