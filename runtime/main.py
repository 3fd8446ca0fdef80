"""Entry-point helper shared by every service's `__main__`: settings, logs, bus, run until signalled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from runtime.bus import Bus
from runtime.logs import configure_logging
from runtime.metrics import ServiceMetrics
from runtime.service import Service
from runtime.settings import ServiceSettings, SharedSettings

S = TypeVar("S", bound=ServiceSettings)
Build = Callable[[Bus, S, SharedSettings], Awaitable[Service]]

log = logging.getLogger("trellis.main")


async def serve_forever(name: str, settings: S, shared: SharedSettings, build: Build[S]) -> None:
    bus = await Bus.connect(
        shared.resolved_nats_url(),
        source=name,
        service=name,
        metrics=ServiceMetrics(name),
        max_concurrency=settings.request_concurrency,
    )
    try:
        service = await build(bus, settings, shared)
        await service.run_until_signalled()
    finally:
        await bus.close()


def run_service(name: str, settings_type: type[S], build: Build[S]) -> None:
    shared = SharedSettings()
    settings = settings_type()
    configure_logging(name, shared.log_level, shared.log_format)
    try:
        asyncio.run(serve_forever(name, settings, shared, build))
    except KeyboardInterrupt:
        pass
