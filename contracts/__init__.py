"""Trellis message contracts: pydantic models, subjects, streams and buckets. No I/O."""
