"""I/O adapters of the gateway service."""
