"""Wiring of the image_builder service: its runtime, handlers and background work."""

from __future__ import annotations

from runtime.bus import Bus
from runtime.service import Service
from runtime.settings import SharedSettings
from services.image_builder.config import Settings


async def build(bus: Bus, settings: Settings, shared: SharedSettings) -> Service:
    # Its operations arrive with its own issue; until then it answers ping and health.
    return Service("image_builder", bus, settings, shared)
