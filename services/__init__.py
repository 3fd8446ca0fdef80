"""Trellis services: one package each, laid out as DESIGN.md shows."""
