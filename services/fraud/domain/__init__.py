"""Pure logic of the fraud service (no bus, no I/O)."""
