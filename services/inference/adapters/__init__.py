"""I/O adapters of the inference service."""
