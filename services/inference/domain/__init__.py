"""Pure logic of the inference service (no bus, no I/O)."""
