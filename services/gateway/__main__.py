"""Entry point: `python -m services.gateway` serves HTTP on TRELLIS_GATEWAY_HOST:PORT."""

from __future__ import annotations

import uvicorn

from runtime.bus import Bus
from runtime.heap import freeze_heap
from runtime.logs import configure_logging
from runtime.main import run
from runtime.metrics import ServiceMetrics
from runtime.settings import SharedSettings
from services.gateway.app import build
from services.gateway.config import Settings


async def serve(settings: Settings, shared: SharedSettings) -> None:
    bus = await Bus.connect(
        shared.resolved_nats_url(),
        source="gateway",
        service="gateway",
        metrics=ServiceMetrics("gateway"),
    )
    try:
        app = await build(bus, settings, shared)
        freeze_heap()  # what startup loaded lasts: keep it out of full collections
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=int(settings.drain_timeout_s),
            )
        )
        await server.serve()  # returns after SIGINT/SIGTERM, once in-flight requests finished
    finally:
        await bus.close()


def main() -> None:
    shared = SharedSettings()
    settings = Settings()
    configure_logging("gateway", shared.log_level, shared.log_format)
    run(serve(settings, shared), shared)


if __name__ == "__main__":
    main()
