"""Pure logic of the image_builder service (no bus, no I/O)."""
