"""Entry-point helper shared by every service's `__main__`: settings, logs, bus, run until signalled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from runtime.bus import Bus
from runtime.logs import configure_logging
from runtime.metrics import ServiceMetrics
from runtime.service import Service
from runtime.settings import ServiceSettings, SharedSettings

S = TypeVar("S", bound=ServiceSettings)
Build = Callable[[Bus, S, SharedSettings], Awaitable[Service]]

log = logging.getLogger("trellis.main")
R = TypeVar("R")


def run(main: Coroutine[Any, Any, R], shared: SharedSettings) -> R:
    """Run a process's main coroutine on the event loop `TRELLIS_EVENT_LOOP` names."""
    if shared.event_loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


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
        run(serve_forever(name, settings, shared, build), shared)
    except KeyboardInterrupt:
        pass
