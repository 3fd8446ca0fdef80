"""I/O adapters of the tuner service."""
