"""I/O adapters of the image_builder service."""
