"""Asks every live replica for its health over the bus (scatter-gather), bounded by the registry."""

from __future__ import annotations

from nats.js.kv import KeyValue

from contracts import subjects
from contracts.system import HealthPoll, ServiceHealth
from runtime.bus import Bus
from runtime.kv import scan


class Fleet:
    def __init__(self, bus: Bus, registry: KeyValue, window_s: float) -> None:
        self.bus = bus
        self.registry = registry
        self.window_s = window_s

    async def registered(self) -> int:
        return len(await scan(self.registry))

    async def poll(self) -> list[ServiceHealth]:
        """Replies for up to `window_s`; returns early once every registered replica answered."""
        expected = await self.registered()
        return await self.bus.gather(
            subjects.HEALTH_POLL,
            HealthPoll(),
            ServiceHealth,
            window_s=self.window_s,
            expected=expected or None,
        )
