"""Shared fixtures: a real nats-server with JetStream on a free port, and buses connected to it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest
import uvicorn

from contracts import topology
from runtime.bus import Bus
from runtime.embedded_nats import EmbeddedNats
from runtime.metrics import ServiceMetrics
from runtime.settings import SharedSettings
from runtime.topology import ensure_platform


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on the loop the processes run on (TRELLIS_EVENT_LOOP, uvloop by default)."""
    if SharedSettings().event_loop == "uvloop":
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), port=0)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_url, source="test", metrics=ServiceMetrics("test"))
    await ensure_platform(connected.js)
    yield connected
    await connected.close()


async def forget_models(bus: Bus) -> None:
    """Inference tests share one NATS: drop the model registry so the next service starts empty."""
    for delete in (
        bus.js.delete_key_value(topology.INFERENCE_MODELS.name),
        bus.js.delete_object_store(topology.INFERENCE_ARTIFACTS),
    ):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await delete


@contextlib.asynccontextmanager
async def serving_gateway(bus: Bus, shared: SharedSettings, **settings: Any) -> AsyncIterator[str]:
    """The real gateway app under uvicorn on a free port, in this event loop; yields its URL."""
    from services.gateway.app import build
    from services.gateway.config import BootstrapSettings
    from services.gateway.config import Settings as GatewaySettings

    bus.metrics = bus.metrics or ServiceMetrics("gateway")
    port = free_port()
    app = await build(bus, GatewaySettings(port=port, **settings), shared, BootstrapSettings())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def gateway_client(service: str, url: str, key_id: str, secret: str, **config: Any) -> Any:
    """An unchanged boto3 client of `service` pointed at a Trellis gateway (one try per call)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, **config),
    )


@pytest.fixture
def unique() -> str:
    """A short token that keeps streams, consumers and subjects of one test apart."""
    return uuid.uuid4().hex[:10]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
