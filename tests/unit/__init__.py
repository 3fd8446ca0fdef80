"""Trellis tests."""
