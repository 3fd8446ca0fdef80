"""I/O adapters of the fraud service."""
