"""Wiring of the crawler service: its runtime, handlers and background work."""

from __future__ import annotations

from runtime.bus import Bus
from runtime.service import Service
from runtime.settings import SharedSettings
from services.crawler.config import Settings


async def build(bus: Bus, settings: Settings, shared: SharedSettings) -> Service:
    # Its operations arrive with its own issue; until then it answers ping and health.
    return Service("crawler", bus, settings, shared)
