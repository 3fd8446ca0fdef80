"""I/O adapters of the crawler service."""
