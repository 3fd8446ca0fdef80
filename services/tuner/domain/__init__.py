"""Pure logic of the tuner service (no bus, no I/O)."""
