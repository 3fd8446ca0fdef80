"""Pure logic of the gateway service (no bus, no I/O)."""
